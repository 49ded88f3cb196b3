//! The etcd `Cluster` service: listing members and changing the cluster's
//! configuration one member at a time (`raft/src/core/membership_change.rs`
//! explains why that is safe).
//!
//! Any member takes any request: a follower forwards a change to the
//! leader, which appends it and answers once it is committed and applied.
//! etcd picks a new member's id itself; so do we (a random id below 2^63,
//! never one in use), unless the request carries the
//! [`MEMBER_ID_METADATA`] header, as `raft_client members add <id>` sends.

use std::sync::Arc;

use raft::node::RequestFailure;
use raft::{MembershipChange, MembershipRefusal, NodeId, Role};
use raft_proto::etcd::etcdserverpb::cluster_client::ClusterClient;
use raft_proto::etcd::etcdserverpb::cluster_server::Cluster;
use raft_proto::etcd::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::server::context::{mark_forwarded, Context, FORWARDED_METADATA};
use crate::server::status::failure_status;
use crate::server::{fnv1a, FNV_OFFSET};

/// How long a change refused for a passing reason is retried.
const TRANSIENT_REFUSAL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// gRPC metadata that chooses the id of a member being added (decimal).
pub const MEMBER_ID_METADATA: &str = "x-rustyraft-member-id";

/// The `Cluster` service of one node.
pub struct ClusterService {
    context: Arc<Context>,
}

impl ClusterService {
    /// The service over `context`.
    pub fn new(context: Arc<Context>) -> ClusterService {
        ClusterService { context }
    }

    /// The leader to forward `request` to, or `None` if this node leads.
    fn forward_to<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Option<ClusterClient<Channel>>, Status> {
        let status = self.context.node.status();
        if status.role == Role::Leader {
            return Ok(None);
        }
        match status.leader {
            Some(leader) if !request.metadata().contains_key(FORWARDED_METADATA) => {
                Ok(Some(ClusterClient::new(self.context.channel_of(leader)?)))
            }
            Some(_) => Err(Status::unavailable("etcdserver: leader changed")),
            None => Err(Status::unavailable("etcdserver: no leader")),
        }
    }

    /// Makes `change` and waits until it is applied here. Refusals that
    /// pass by themselves within a few heartbeats (the previous change is
    /// still committing, a new leader has not committed its first entry)
    /// are retried for up to [`TRANSIENT_REFUSAL_WAIT`], so that clients
    /// that do not retry (`etcdctl`) are not failed for nothing.
    async fn change(&self, change: MembershipChange) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + TRANSIENT_REFUSAL_WAIT;
        loop {
            // Checked before every attempt: a removal of the id may have
            // committed while this change waited.
            if let MembershipChange::AddLearner(id, _) | MembershipChange::AddVoter(id, _) = &change
            {
                if self
                    .context
                    .node
                    .with_membership(|view| view.latest.removed.contains(id))
                {
                    return Err(Status::failed_precondition(format!(
                        "etcdserver: ID removed: member {} was removed from the cluster and its \
                         id is never used again; add the machine under a new id, with an empty \
                         data directory",
                        id.get()
                    )));
                }
            }
            match self.context.node.change_membership(change.clone()).await {
                Ok(_) => return Ok(()),
                Err(RequestFailure::MembershipChangeRefused(
                    MembershipRefusal::LeaderNotReady | MembershipRefusal::ChangeInProgress(_),
                )) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(failure) => return Err(change_status(&failure)),
            }
        }
    }

    /// Every member of the latest configuration.
    fn members(&self) -> Vec<Member> {
        let view = self.context.node.membership();
        let published = self.context.node.read_local(|state| {
            let members = view.latest.voters.iter().chain(&view.latest.learners);
            members
                .filter_map(|id| Some((*id, state.store.client_urls(*id)?.to_vec())))
                .collect::<std::collections::BTreeMap<NodeId, Vec<String>>>()
        });
        let member = |id: NodeId, is_learner: bool| {
            let address = view.addresses.get(&id);
            let peer_urls: Vec<String> = address
                .map(|address| vec![self.context.peer_url(address)])
                .unwrap_or_default();
            // A member that never published its client URLs serves clients
            // at its peer address, on one port; this member knows its own.
            let own = (id == self.context.node.options().id)
                .then(|| self.context.own_client_urls())
                .flatten();
            let client_urls = published.get(&id).cloned().or(own).unwrap_or_else(|| {
                address
                    .map(|address| vec![self.context.client_url(address)])
                    .unwrap_or_default()
            });
            Member {
                id: id.get(),
                name: format!("node-{}", id.get()),
                peer_ur_ls: peer_urls,
                client_ur_ls: client_urls,
                is_learner,
            }
        };
        let voters = view.latest.voters.iter().map(|id| member(*id, false));
        let learners = view.latest.learners.iter().map(|id| member(*id, true));
        voters.chain(learners).collect()
    }

    /// A fresh member id: the one `request` asks for, or a random one.
    fn new_member_id<T>(&self, request: &Request<T>, address: &str) -> Result<NodeId, Status> {
        if let Some(asked) = request.metadata().get(MEMBER_ID_METADATA) {
            return asked
                .to_str()
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .filter(|id| *id != 0)
                .map(NodeId)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "etcdserver: {MEMBER_ID_METADATA} must be a positive integer"
                    ))
                });
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        // Below 2^63, so that shells and signed parsers take it too.
        let positive = |id: u64| id & (u64::MAX >> 1);
        let start = FNV_OFFSET ^ self.context.cluster_id ^ seed;
        let mut candidate = positive(fnv1a(start, address.as_bytes()));
        self.context.node.with_membership(|view| {
            while candidate == 0 || view.knows(NodeId(candidate)) {
                candidate = positive(fnv1a(FNV_OFFSET ^ seed, &candidate.to_le_bytes()));
            }
        });
        Ok(NodeId(candidate))
    }
}

/// The `host:port` of a member's peer URLs: exactly one URL, `http://`
/// (or no scheme), a host and a port, nothing after.
pub fn peer_address(urls: &[String], tls: bool) -> Result<String, Status> {
    let invalid = |reason: String| Err(Status::invalid_argument(format!("etcdserver: {reason}")));
    let [url] = urls else {
        return invalid(format!(
            "give exactly one peer URL (http://host:port); got {}",
            urls.len()
        ));
    };
    let address = match url.split_once("://") {
        Some(("http", rest)) if !tls => rest,
        Some(("https", rest)) if tls => rest,
        Some(("http", _)) => {
            return invalid(format!(
                "peer URL {url:?}: the members speak TLS to each other; use https://"
            ))
        }
        Some(("https", _)) => {
            return invalid(format!(
                "peer URL {url:?}: the members speak plaintext to each other (no peer TLS: \
                 --peer-cert-file is not set); use http://"
            ))
        }
        Some((scheme, _)) => {
            return invalid(format!("peer URL {url:?}: unknown scheme {scheme:?}"))
        }
        None => url.as_str(),
    };
    let address = address.strip_suffix('/').unwrap_or(address);
    let well_formed = address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|port| port != 0)
    });
    if !well_formed || address.len() > raft::storage::MAX_ADDRESS_BYTES {
        return invalid(format!(
            "peer URL {url:?} is not of the form http://host:port"
        ));
    }
    Ok(address.to_string())
}

/// The status of a failed change, as etcd answers it.
fn change_status(failure: &RequestFailure) -> Status {
    match failure {
        RequestFailure::MembershipChangeRefused(MembershipRefusal::NotMember(_)) => {
            Status::not_found(format!("etcdserver: member not found: {failure}"))
        }
        failure => failure_status(failure),
    }
}

fn member_id(id: u64) -> Result<NodeId, Status> {
    if id == 0 {
        return Err(Status::invalid_argument(
            "etcdserver: member id 0 is reserved",
        ));
    }
    Ok(NodeId(id))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let address = peer_address(&request.get_ref().peer_ur_ls, self.context.peer_tls)?;
        let id = self.new_member_id(&request, &address)?;
        if let Some(mut leader) = self.forward_to(&request)? {
            let mut forwarded = mark_forwarded(request.into_inner());
            forwarded.metadata_mut().insert(
                MEMBER_ID_METADATA,
                id.get()
                    .to_string()
                    .parse()
                    .expect("digits are valid metadata"),
            );
            return leader.member_add(forwarded).await;
        }
        let is_learner = request.get_ref().is_learner;
        let change = if is_learner {
            MembershipChange::AddLearner(id, Some(address.clone()))
        } else {
            MembershipChange::AddVoter(id, Some(address.clone()))
        };
        self.change(change).await?;
        let url = self.context.peer_url(&address);
        // With peer ports, where the new member serves clients is known once
        // it publishes it (etcd lists no client URL until then).
        let client_urls = match self.context.client_address {
            Some(_) => Vec::new(),
            None => vec![url.clone()],
        };
        let mut response = MemberAddResponse {
            header: None,
            member: Some(Member {
                id: id.get(),
                name: String::new(),
                peer_ur_ls: vec![url],
                client_ur_ls: client_urls,
                is_learner,
            }),
            members: self.members(),
        };
        self.context.header().fill(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = member_id(request.get_ref().id)?;
        if let Some(mut leader) = self.forward_to(&request)? {
            return leader
                .member_remove(mark_forwarded(request.into_inner()))
                .await;
        }
        self.change(MembershipChange::Remove(id)).await?;
        let mut response = MemberRemoveResponse {
            header: None,
            members: self.members(),
        };
        self.context.header().fill(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let id = member_id(request.get_ref().id)?;
        let address = peer_address(&request.get_ref().peer_ur_ls, self.context.peer_tls)?;
        if let Some(mut leader) = self.forward_to(&request)? {
            return leader
                .member_update(mark_forwarded(request.into_inner()))
                .await;
        }
        self.change(MembershipChange::UpdateAddress(id, address))
            .await?;
        let mut response = MemberUpdateResponse {
            header: None,
            members: self.members(),
        };
        self.context.header().fill(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            // The leader's configuration, after confirming it still leads.
            if let Some(mut leader) = self.forward_to(&request)? {
                return leader
                    .member_list(mark_forwarded(request.into_inner()))
                    .await;
            }
            self.context
                .node
                .read_index()
                .await
                .map_err(|failure| failure_status(&failure))?;
        }
        let mut response = MemberListResponse {
            header: None,
            members: self.members(),
        };
        self.context.header().fill(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = member_id(request.get_ref().id)?;
        if let Some(mut leader) = self.forward_to(&request)? {
            return leader
                .member_promote(mark_forwarded(request.into_inner()))
                .await;
        }
        self.change(MembershipChange::PromoteLearner(id)).await?;
        let mut response = MemberPromoteResponse {
            header: None,
            members: self.members(),
        };
        self.context.header().fill(&mut response.header);
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked() {
        let urls = |list: &[&str]| list.iter().map(|url| url.to_string()).collect::<Vec<_>>();
        assert_eq!(
            peer_address(&urls(&["http://10.0.0.4:2380"]), false).unwrap(),
            "10.0.0.4:2380"
        );
        assert_eq!(
            peer_address(&urls(&["node-4:2380"]), false).unwrap(),
            "node-4:2380"
        );
        assert_eq!(
            peer_address(&urls(&["http://[::1]:2380/"]), false).unwrap(),
            "[::1]:2380"
        );
        assert_eq!(
            peer_address(&urls(&["https://10.0.0.4:2380"]), true).unwrap(),
            "10.0.0.4:2380"
        );
        let plain_with_tls = peer_address(&urls(&["http://10.0.0.4:2380"]), true).unwrap_err();
        assert!(
            plain_with_tls.message().contains("use https://"),
            "{plain_with_tls:?}"
        );
        for bad in [
            &["https://h:1"][..],
            &["ftp://h:1"],
            &["http://h"],
            &["http://h:0"],
            &["http://h:99999"],
            &["http://h:1/path"],
            &[":1"],
            &[],
            &["http://a:1", "http://b:1"],
        ] {
            let status = peer_address(&urls(bad), false).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }
}

//! The one way a request reaches the Raft log or a linearizable read: every
//! etcd service, both sides of forwarding and the member's own proposals
//! (publishing its client URLs) go through a [`Proposer`].
//!
//! A write is validated and encoded where it arrives, then proposed here
//! when this member leads, or sent to the leader over the forwarding stream
//! ([`crate::server::forward::member`]); the leader's side of that stream
//! ([`crate::server::forward::leader`]) proposes it through its own
//! proposer. A linearizable read asks the leader for a read index (here, or
//! over the stream) and waits until this member has applied it. Every
//! answer leaves with this member's header fields filled in, here.

use std::sync::Arc;

use raft::node::RequestFailure;
use raft::{LogIndex, NodeId, Role};
use raft_proto::etcd::etcdserverpb::{RangeRequest, RangeResponse};
use tonic::{Request, Status};

use crate::kv::{Command, CommandResponse, Limits};
use crate::server::context::{Context, FORWARDED_METADATA};
use crate::server::forward::member::{Dial, Forwarder};
use crate::server::status::{failure_status, kv_status};

/// Proposes writes and serves linearizable reads for one member.
pub struct Proposer {
    context: Arc<Context>,
    /// Streams forwarding to the leader.
    forwarder: Forwarder,
}

impl Proposer {
    /// The proposer of the member `context` describes.
    pub fn new(context: Arc<Context>) -> Proposer {
        Proposer {
            context,
            forwarder: Forwarder::default(),
        }
    }

    /// What this member's services share.
    pub fn context(&self) -> &Arc<Context> {
        &self.context
    }

    /// This member's request limits.
    pub fn limits(&self) -> &Limits {
        &self.context.limits
    }

    /// Where a client's write or linearizable read must go: `None` when
    /// this member leads, the leader otherwise. A request that was already
    /// forwarded once (as a call of its own, by an older build), or one
    /// that arrives while no leader is known, fails with `Unavailable`.
    pub fn route<T>(&self, request: &Request<T>) -> Result<Option<NodeId>, Status> {
        self.route_as(request.metadata().contains_key(FORWARDED_METADATA))
    }

    /// Validates and encodes `command`, then writes it here (no `leader`:
    /// this member leads) or at `leader`, and returns what applying it
    /// answered. Bad input is refused by the member that got it.
    pub async fn write(
        &self,
        leader: Option<NodeId>,
        command: Command,
    ) -> Result<CommandResponse, Status> {
        let proposal = command
            .to_proposal(&self.context.limits)
            .map_err(|error| kv_status(&error))?;
        match leader {
            Some(leader) => self.forwarder.write(&*self.context, leader, proposal).await,
            None => self.propose_here(proposal).await,
        }
    }

    /// Writes `command`, which this member made itself (not a client's
    /// request), here if it leads or at the leader it knows.
    pub async fn write_own(&self, command: Command) -> Result<CommandResponse, Status> {
        let leader = self.own_route()?;
        self.write(leader, command).await
    }

    /// Where this member's own request goes: `None` when it leads, the
    /// leader it knows otherwise (`Unavailable` while it knows none).
    fn own_route(&self) -> Result<Option<NodeId>, Status> {
        self.route_as(false)
    }

    /// Where a request goes: `None` when this member leads, the leader it
    /// knows otherwise, unless the request was `forwarded` here already.
    fn route_as(&self, forwarded: bool) -> Result<Option<NodeId>, Status> {
        let status = self.context.node.status();
        if status.role == Role::Leader {
            return Ok(None);
        }
        match status.leader {
            Some(leader) if !forwarded => Ok(Some(leader)),
            leader_hint => Err(failure_status(&RequestFailure::NotLeader { leader_hint })),
        }
    }

    /// Proposes `proposal` (a command encoded with [`Command::to_proposal`],
    /// or checked with [`Command::check_proposal`]) at this member, which
    /// must lead, and waits for what applying it answered.
    pub async fn propose_here(&self, proposal: Vec<u8>) -> Result<CommandResponse, Status> {
        match self.context.node.propose(proposal.into()).await {
            Ok(Ok(mut response)) => {
                response.fill_headers(self.context.header());
                Ok(response)
            }
            Ok(Err(error)) => Err(kv_status(&error)),
            Err(failure) => Err(failure_status(&failure)),
        }
    }

    /// Confirms leadership here (this member must lead) and waits until
    /// the store has applied the read index, which it returns.
    pub async fn read_index_here(&self) -> Result<LogIndex, Status> {
        self.context
            .node
            .read_index()
            .await
            .map_err(|failure| failure_status(&failure))
    }

    /// Waits until a read of this member's store is linearizable: the
    /// leader (here, or `leader` over the forwarding stream) confirms it
    /// still leads and names an index, which this member then applies.
    pub async fn read_barrier(&self, leader: Option<NodeId>) -> Result<(), Status> {
        match leader {
            Some(leader) => {
                let index = self.forwarder.read_index(&*self.context, leader).await?;
                self.context
                    .node
                    .wait_applied(index)
                    .await
                    .map_err(|failure| failure_status(&failure))
            }
            None => self.read_index_here().await.map(|_| ()),
        }
    }

    /// [`Proposer::read_barrier`] for this member's own read, at the
    /// leader it knows.
    pub async fn read_barrier_own(&self) -> Result<(), Status> {
        let leader = self.own_route()?;
        self.read_barrier(leader).await
    }

    /// Why a compaction at `revision` would be refused by this member's
    /// store as it is, if it would: past its revision, or at or before its
    /// compacted revision. After a read barrier, the answer holds for the
    /// whole cluster at that moment.
    pub fn compaction_refusal(&self, revision: i64) -> Result<(), Status> {
        self.context
            .node
            .read_local(|state| state.store.check_compaction(revision))
            .map_err(|error| kv_status(&error))
    }

    /// Reads this member's store as it is, with this member's header.
    pub fn range_here(&self, request: &RangeRequest) -> Result<RangeResponse, Status> {
        let mut response = self
            .context
            .node
            .read_local(|state| state.store.range(request))
            .map_err(|error| kv_status(&error))?;
        self.context.header().fill(&mut response.header);
        Ok(response)
    }
}

/// The forwarder reaches a leader over the member's channel to it, as a
/// member of this cluster, until this member sees it lead no more.
impl Dial for Context {
    fn channel_of(&self, member: NodeId) -> Result<tonic::transport::Channel, Status> {
        Context::channel_of(self, member)
    }

    fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn watch_status(&self) -> tokio::sync::watch::Receiver<raft::node::NodeStatus> {
        self.node.watch_status()
    }
}

//! The etcd `Cluster` service: the member list. Membership changes arrive
//! with the membership issue; until then they answer `Unimplemented`.

use std::sync::Arc;

use raft_proto::etcd::etcdserverpb::cluster_server::Cluster;
use raft_proto::etcd::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::server::context::Context;
use crate::server::status::not_built;

/// The `Cluster` service of one node.
pub struct ClusterService {
    context: Arc<Context>,
}

impl ClusterService {
    /// The service over `context`.
    pub fn new(context: Arc<Context>) -> ClusterService {
        ClusterService { context }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_built("adding members"))
    }

    async fn member_remove(
        &self,
        _request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_built("removing members"))
    }

    async fn member_update(
        &self,
        _request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_built("updating members"))
    }

    async fn member_list(
        &self,
        _request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let members = self
            .context
            .members
            .iter()
            .map(|(id, address)| Member {
                id: id.get(),
                name: format!("node-{}", id.get()),
                peer_ur_ls: vec![format!("http://{address}")],
                client_ur_ls: vec![format!("http://{address}")],
                is_learner: false,
            })
            .collect();
        let mut response = MemberListResponse {
            header: None,
            members,
        };
        self.context.header().fill(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_promote(
        &self,
        _request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_built("promoting learners"))
    }
}

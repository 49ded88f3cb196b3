//! The etcd `Maintenance` service: status, alarms (none are ever raised),
//! hashes of the key space for comparing members, and moving the leader.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use raft::node::TransferFailure;
use raft::{NodeId, Role};
use raft_proto::etcd::etcdserverpb::maintenance_client::MaintenanceClient;
use raft_proto::etcd::etcdserverpb::maintenance_server::Maintenance;
use raft_proto::etcd::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::server::context::{mark_forwarded, Context, FORWARDED_METADATA};
use crate::server::status::not_built;

/// The etcd version whose API this server speaks, as `etcdctl` shows it.
pub const API_VERSION: &str = "3.4.0";

/// The `Maintenance` service of one node.
pub struct MaintenanceService {
    context: Arc<Context>,
}

impl MaintenanceService {
    /// The service over `context`.
    pub fn new(context: Arc<Context>) -> MaintenanceService {
        MaintenanceService { context }
    }
}

/// The gRPC status of a failed leadership transfer, with etcd's messages
/// where etcd has one.
fn transfer_status(failure: &TransferFailure) -> Status {
    match failure {
        TransferFailure::NotLeader { .. } => Status::failed_precondition("etcdserver: not leader"),
        TransferFailure::NotAVoter(target) => Status::failed_precondition(format!(
            "etcdserver: bad leader transferee: {target} is not a voting member"
        )),
        TransferFailure::TimedOut { .. } | TransferFailure::OtherLeader { .. } => {
            Status::unavailable(format!("etcdserver: leader transfer failed: {failure}"))
        }
        TransferFailure::ShuttingDown => Status::unavailable("etcdserver: server stopped"),
    }
}

/// Bytes under `path`, recursively (0 where unreadable).
fn directory_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => directory_size(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        if request.get_ref().action() != AlarmAction::Get {
            return Err(not_built("raising or clearing alarms"));
        }
        let mut response = AlarmResponse {
            header: None,
            alarms: Vec::new(),
        };
        self.context.header().fill(&mut response.header);
        Ok(Response::new(response))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let node = &self.context.node;
        let status = node.status();
        let revision = node.read_local(|state| state.store.revision());
        let size = directory_size(&self.context.data_directory) as i64;
        let mut response = StatusResponse {
            header: None,
            version: API_VERSION.to_string(),
            db_size: size,
            leader: status.leader.map_or(0, |leader| leader.get()),
            raft_index: status.commit_index.get(),
            raft_term: status.term.get(),
            raft_applied_index: node.applied_index().get(),
            errors: Vec::new(),
            db_size_in_use: size,
            is_learner: false,
            db_size_quota: 0,
            storage_version: String::new(),
        };
        self.context.header().fill(&mut response.header);
        if let Some(header) = response.header.as_mut() {
            header.revision = revision;
        }
        Ok(Response::new(response))
    }

    async fn defragment(
        &self,
        _request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Err(not_built("defragmentation"))
    }

    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let hash = self.context.node.read_local(|state| state.store.digest());
        let mut response = HashResponse { header: None, hash };
        self.context.header().fill(&mut response.header);
        Ok(Response::new(response))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let (hash, revision) = self
            .context
            .node
            .read_local(|state| (state.store.digest(), state.store.revision()));
        let asked = request.get_ref().revision;
        if asked != 0 && asked != revision {
            return Err(not_built("hashing the key space at an old revision"));
        }
        let mut response = HashKvResponse {
            header: None,
            hash,
            compact_revision: 0,
            hash_revision: revision,
        };
        self.context.header().fill(&mut response.header);
        if let Some(header) = response.header.as_mut() {
            header.revision = revision;
        }
        Ok(Response::new(response))
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_built("streaming a backup snapshot"))
    }

    /// etcd's `MoveLeader` (`etcdctl move-leader <id>`): hands leadership
    /// to the voter `targetID` and answers once it leads. etcd answers
    /// "not leader" at a follower; here a follower forwards the request to
    /// the leader it knows of.
    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.get_ref().target_id;
        if target == 0 {
            return Err(Status::invalid_argument(
                "etcdserver: bad leader transferee: targetID must name a member (it is 0)",
            ));
        }
        let status = self.context.node.status();
        if status.role != Role::Leader && status.leader != Some(NodeId(target)) {
            return match status.leader {
                Some(leader) if !request.metadata().contains_key(FORWARDED_METADATA) => {
                    let mut leader_client =
                        MaintenanceClient::new(self.context.channel_of(leader)?);
                    leader_client
                        .move_leader(mark_forwarded(request.into_inner()))
                        .await
                }
                _ => Err(Status::failed_precondition("etcdserver: not leader")),
            };
        }
        self.context
            .node
            .transfer_leadership(NodeId(target))
            .await
            .map_err(|failure| transfer_status(&failure))?;
        let mut response = MoveLeaderResponse { header: None };
        self.context.header().fill(&mut response.header);
        Ok(Response::new(response))
    }
}

//! The etcd `KV` service: writes go through the Raft log, linearizable reads
//! through ReadIndex, serializable reads to the local store. A member that
//! is not the leader forwards writes to the leader over its forwarding
//! stream (`server/forward.rs`), and serves linearizable reads itself at a
//! read index the leader gives it over that stream.

use std::sync::Arc;

use raft::node::RequestFailure;
use raft::{NodeId, Role};
use raft_proto::etcd::etcdserverpb::kv_server::Kv;
use raft_proto::etcd::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use crate::kv::validation::validate_range;
use crate::kv::{Command, CommandResponse};
use crate::server::context::{Context, FORWARDED_METADATA};
use crate::server::status::{failure_status, kv_status, not_built};

/// The `KV` service of one node.
pub struct KvService {
    context: Arc<Context>,
}

impl KvService {
    /// The service over `context`.
    pub fn new(context: Arc<Context>) -> KvService {
        KvService { context }
    }

    /// This node's request limits.
    pub(crate) fn limits(&self) -> &crate::kv::Limits {
        &self.context.limits
    }

    /// Proposes a write, validated and encoded with
    /// [`Command::to_proposal`], at this node (the leader) and waits for
    /// its response.
    pub(crate) async fn propose(&self, proposal: Vec<u8>) -> Result<CommandResponse, Status> {
        match self.context.node.propose(proposal.into()).await {
            Ok(Ok(mut response)) => {
                response.fill_headers(self.context.header());
                Ok(response)
            }
            Ok(Err(error)) => Err(kv_status(&error)),
            Err(failure) => Err(failure_status(&failure)),
        }
    }

    /// Where a write or linearizable read must go: `None` when this node
    /// is the leader, the leader otherwise. A request that was already
    /// forwarded once (as a call of its own, by an older build), or one
    /// that arrives while no leader is known, fails with `Unavailable`.
    fn route<T>(&self, request: &Request<T>) -> Result<Option<NodeId>, Status> {
        let status = self.context.node.status();
        if status.role == Role::Leader {
            return Ok(None);
        }
        match status.leader {
            Some(leader) if !request.metadata().contains_key(FORWARDED_METADATA) => {
                Ok(Some(leader))
            }
            leader_hint => Err(failure_status(&RequestFailure::NotLeader { leader_hint })),
        }
    }

    /// Writes `command`, which this node made itself (not a client's
    /// request), here if it leads or at the leader it knows.
    pub(crate) async fn write_own(&self, command: Command) -> Result<CommandResponse, Status> {
        let status = self.context.node.status();
        let leader = match (status.role, status.leader) {
            (Role::Leader, _) => None,
            (_, Some(leader)) => Some(leader),
            (_, None) => {
                return Err(failure_status(&RequestFailure::NotLeader {
                    leader_hint: None,
                }))
            }
        };
        self.write_at(leader, command).await
    }

    /// Confirms leadership here (this node must lead) and waits until the
    /// store has applied the read index, which it returns.
    pub(crate) async fn read_index_here(&self) -> Result<raft::LogIndex, Status> {
        self.context
            .node
            .read_index()
            .await
            .map_err(|failure| failure_status(&failure))
    }

    /// Writes `command` here (no `leader`: this node leads) or at the
    /// leader over the forwarding stream. It is validated here either way,
    /// so that bad input is refused by the member that got it.
    async fn write_at(
        &self,
        leader: Option<NodeId>,
        command: Command,
    ) -> Result<CommandResponse, Status> {
        let proposal = command
            .to_proposal(&self.context.limits)
            .map_err(|error| kv_status(&error))?;
        match leader {
            Some(leader) => {
                let forwarder = &self.context.forwarder;
                forwarder.write(&self.context, leader, proposal).await
            }
            None => self.propose(proposal).await,
        }
    }

    fn local_range(&self, request: &RangeRequest) -> Result<RangeResponse, Status> {
        let mut response = self
            .context
            .node
            .read_local(|state| state.store.range(request))
            .map_err(|error| kv_status(&error))?;
        self.context.header().fill(&mut response.header);
        Ok(response)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let range = request.get_ref();
        validate_range(range).map_err(|error| kv_status(&error))?;
        if range.serializable {
            return self.local_range(range).map(Response::new);
        }
        match self.route(&request)? {
            // The leader confirms it still leads and names the index to
            // read at; this member serves the read once it has applied it.
            Some(leader) => {
                let index = self
                    .context
                    .forwarder
                    .read_index(&self.context, leader)
                    .await?;
                self.context
                    .node
                    .wait_applied(index)
                    .await
                    .map_err(|failure| failure_status(&failure))?;
            }
            None => {
                self.read_index_here().await?;
            }
        }
        self.local_range(request.get_ref()).map(Response::new)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let leader = self.route(&request)?;
        match self
            .write_at(leader, Command::Put(request.into_inner()))
            .await?
        {
            CommandResponse::Put(response) => Ok(Response::new(response)),
            other => Err(Status::internal(format!("a put answered {other:?}"))),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let leader = self.route(&request)?;
        match self
            .write_at(leader, Command::DeleteRange(request.into_inner()))
            .await?
        {
            CommandResponse::DeleteRange(response) => Ok(Response::new(response)),
            other => Err(Status::internal(format!("a delete answered {other:?}"))),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let leader = self.route(&request)?;
        match self
            .write_at(leader, Command::Txn(request.into_inner()))
            .await?
        {
            CommandResponse::Txn(response) => Ok(Response::new(response)),
            other => Err(Status::internal(format!("a txn answered {other:?}"))),
        }
    }

    async fn compact(
        &self,
        _request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Err(not_built(
            "compaction (RustyRaft keeps only the latest revision of each key, so there is no history to compact)",
        ))
    }
}

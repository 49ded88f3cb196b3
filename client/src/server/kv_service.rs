//! The etcd `KV` service: writes go through the Raft log, linearizable reads
//! through ReadIndex, serializable reads to the local store, all through
//! the member's [`Proposer`] (which forwards to the leader when this member
//! does not lead).

use std::sync::Arc;

use raft_proto::etcd::etcdserverpb::kv_server::Kv;
use raft_proto::etcd::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use crate::kv::validation::validate_range;
use crate::kv::{Command, CommandResponse};
use crate::server::proposer::Proposer;
use crate::server::status::kv_status;

/// The `KV` service of one node.
pub struct KvService {
    proposer: Arc<Proposer>,
}

impl KvService {
    /// The service proposing through `proposer`.
    pub fn new(proposer: Arc<Proposer>) -> KvService {
        KvService { proposer }
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
        if !range.serializable {
            let leader = self.proposer.route(&request)?;
            self.proposer.read_barrier(leader).await?;
        }
        self.proposer
            .range_here(request.get_ref())
            .map(Response::new)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let leader = self.proposer.route(&request)?;
        match self
            .proposer
            .write(leader, Command::Put(request.into_inner()))
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
        let leader = self.proposer.route(&request)?;
        match self
            .proposer
            .write(leader, Command::DeleteRange(request.into_inner()))
            .await?
        {
            CommandResponse::DeleteRange(response) => Ok(Response::new(response)),
            other => Err(Status::internal(format!("a delete answered {other:?}"))),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let leader = self.proposer.route(&request)?;
        match self
            .proposer
            .write(leader, Command::Txn(request.into_inner()))
            .await?
        {
            CommandResponse::Txn(response) => Ok(Response::new(response)),
            other => Err(Status::internal(format!("a txn answered {other:?}"))),
        }
    }

    /// Compaction is a log entry, applied at the same point of the history
    /// on every member. A revision that cannot be compacted (a future one,
    /// or one compacted already) is refused before anything is proposed,
    /// after a read barrier so that the check sees every write committed
    /// before the request; the store checks again as it applies. `physical`
    /// changes nothing: the history is dropped when the entry is applied,
    /// before the answer.
    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let leader = self.proposer.route(&request)?;
        self.proposer.read_barrier(leader).await?;
        self.proposer
            .compaction_refusal(request.get_ref().revision)?;
        match self
            .proposer
            .write(leader, Command::Compact(request.into_inner()))
            .await?
        {
            CommandResponse::Compacted(response) => Ok(Response::new(response)),
            other => Err(Status::internal(format!("a compaction answered {other:?}"))),
        }
    }
}

//! The leader's side of forwarding: `KvForward.Forward` proposes each
//! forwarded write as if a client had sent it here and confirms leadership
//! for each read, many in flight, replying in batches as each completes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use prost::Message as _;
use raft_proto::forward::forward_reply::Response as ReplyResponse;
use raft_proto::forward::forwarded_request::Request as ForwardedKind;
use raft_proto::forward::kv_forward_server::KvForward;
use raft_proto::forward::{
    ForwardBatch, ForwardReplies, ForwardReply, ForwardedRequest, ReadIndexRequest,
};
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::{takes_another_batch, BATCH_WRITES, CLUSTER_ID_METADATA};
use crate::kv::{Command, CommandResponse};
use crate::server::proposer::Proposer;
use crate::server::status::kv_status;

/// The leader side of `KvForward`.
pub struct ForwardService {
    proposer: Arc<Proposer>,
}

impl ForwardService {
    /// The service proposing through `proposer`.
    pub fn new(proposer: Arc<Proposer>) -> ForwardService {
        ForwardService { proposer }
    }
}

/// Carries out one forwarded request here and says how it went.
async fn answer(proposer: &Proposer, request: ForwardedRequest) -> ForwardReply {
    let outcome = match request.request {
        // Checked again (the member is trusted only to be of this
        // cluster), then proposed as it came: no decoding and encoding.
        Some(ForwardedKind::Command(command)) => {
            match Command::check_proposal(&command, proposer.limits()) {
                Ok(()) => proposer
                    .propose_here(command)
                    .await
                    .map(|response| match response {
                        CommandResponse::Put(response) => ReplyResponse::Put(response),
                        CommandResponse::DeleteRange(response) => {
                            ReplyResponse::DeleteRange(response)
                        }
                        CommandResponse::Txn(response) => ReplyResponse::Txn(response),
                        CommandResponse::Published(header) => {
                            ReplyResponse::Published(header.unwrap_or_default())
                        }
                        CommandResponse::Compacted(response) => ReplyResponse::Compaction(response),
                    }),
                Err(error) => Err(kv_status(&error)),
            }
        }
        Some(ForwardedKind::ReadIndex(ReadIndexRequest {})) => proposer
            .read_index_here()
            .await
            .map(|index| ReplyResponse::ReadIndex(index.get())),
        None => Err(Status::invalid_argument(
            "a forwarded request without a body",
        )),
    };
    match outcome {
        Ok(response) => ForwardReply {
            id: request.id,
            code: Code::Ok as i32,
            message: String::new(),
            response: Some(response),
        },
        Err(status) => ForwardReply {
            id: request.id,
            code: status.code() as i32,
            message: status.message().to_string(),
            response: None,
        },
    }
}

/// The leader's side of one forwarding stream, as the stream of its
/// replies: polled by the HTTP/2 layer, it takes the member's batches as
/// they come, proposes every write (many in flight, polled here: no task
/// or channel per write, nor between an applied write and its reply) and
/// yields the replies that are ready together. When the member ends its
/// side, or it breaks, what is in flight is still answered (the member may
/// still be reading), then the stream ends.
pub struct Replies {
    proposer: Arc<Proposer>,
    batches: Option<Streaming<ForwardBatch>>,
    /// Each reply with the size of its request.
    in_flight: FuturesUnordered<BoxFuture<'static, (ForwardReply, usize)>>,
    in_flight_bytes: usize,
}

impl Stream for Replies {
    type Item = Result<ForwardReplies, Status>;

    fn poll_next(self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while let Some(batches) = this
            .batches
            .as_mut()
            .filter(|_| takes_another_batch(this.in_flight.len(), this.in_flight_bytes))
        {
            match batches.poll_next_unpin(context) {
                Poll::Ready(Some(Ok(batch))) => {
                    for request in batch.requests {
                        let proposer = this.proposer.clone();
                        let bytes = request.encoded_len();
                        this.in_flight_bytes = this.in_flight_bytes.saturating_add(bytes);
                        this.in_flight
                            .push(async move { (answer(&proposer, request).await, bytes) }.boxed());
                    }
                }
                Poll::Ready(_) => this.batches = None,
                Poll::Pending => break,
            }
        }
        let mut replies = Vec::new();
        while replies.len() < BATCH_WRITES {
            match this.in_flight.poll_next_unpin(context) {
                Poll::Ready(Some((reply, bytes))) => {
                    this.in_flight_bytes = this.in_flight_bytes.saturating_sub(bytes);
                    replies.push(reply);
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if !replies.is_empty() {
            Poll::Ready(Some(Ok(ForwardReplies { replies })))
        } else if this.batches.is_none() && this.in_flight.is_empty() {
            Poll::Ready(None)
        } else {
            // Woken by the next batch or the next write answered (which,
            // when the stream is not read for the bound, frees room).
            Poll::Pending
        }
    }
}

#[tonic::async_trait]
impl KvForward for ForwardService {
    type ForwardStream = Replies;

    async fn forward(
        &self,
        request: Request<Streaming<ForwardBatch>>,
    ) -> Result<Response<Self::ForwardStream>, Status> {
        let theirs = request
            .metadata()
            .get(CLUSTER_ID_METADATA)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let ours = self.proposer.context().cluster_id;
        if theirs != Some(ours) {
            let theirs = theirs.map_or_else(|| "(none named)".to_string(), |id| format!("{id:x}"));
            return Err(Status::failed_precondition(format!(
                "a forwarding stream from cluster {theirs}, but this is cluster {ours:x}"
            )));
        }
        Ok(Response::new(Replies {
            proposer: self.proposer.clone(),
            batches: Some(request.into_inner()),
            in_flight: FuturesUnordered::new(),
            in_flight_bytes: 0,
        }))
    }
}

//! Forwarding clients' writes and reads to the leader over one stream per
//! leader.
//!
//! A member that is not the leader used to forward each request as a gRPC
//! call of its own; under load that doubled the per-request work of HTTP/2
//! (a stream, headers, a task) on both members. Now the member keeps one
//! long-lived `KvForward.Forward` stream to the leader ([`Forwarder`]),
//! sends the requests queued at that moment as one batch, and matches the
//! leader's batched replies to the waiting clients by id. The leader
//! ([`ForwardService`]) proposes each write as if a client had sent it to
//! it and replies as each one is applied; for a linearizable read it
//! confirms its leadership (ReadIndex) and replies with the read index,
//! which the member waits to have applied before it reads its own store.
//! Replies come in any order.
//!
//! A write whose stream fails before its reply arrives gets `Unavailable`
//! saying that it may or may not have taken effect (etcd clients retry),
//! as when a leader is lost under a write sent to it directly.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context as TaskContext, Poll};

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use prost::Message as _;
use raft::node::NodeStatus;
use raft::{LogIndex, NodeId};
use raft_proto::forward::forward_reply::Response as ReplyResponse;
use raft_proto::forward::forwarded_request::Request as ForwardedKind;
use raft_proto::forward::kv_forward_client::KvForwardClient;
use raft_proto::forward::kv_forward_server::KvForward;
use raft_proto::forward::{
    ForwardBatch, ForwardReplies, ForwardReply, ForwardedRequest, ReadIndexRequest,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::kv::{Command, CommandResponse};
use crate::server::context::Context;
use crate::server::kv_service::KvService;
use crate::server::status::kv_status;

/// gRPC metadata naming the forwarding member's cluster id (decimal).
pub const CLUSTER_ID_METADATA: &str = "x-rustyraft-cluster-id";

/// A batch stops growing at this many writes...
const BATCH_WRITES: usize = 1024;
/// ... or once its commands add up to this many bytes (a single write of
/// any allowed size still goes alone).
const BATCH_BYTES: usize = 4 << 20;
/// Writes queued for one leader before callers wait.
const QUEUE_WRITES: usize = 4096;
/// A leader stops reading a forwarding stream while this many of its
/// requests are in flight ...
const MAX_IN_FLIGHT_REQUESTS: usize = 2 * QUEUE_WRITES;
/// ... or while their requests add up to this many bytes, so that a member
/// that sends faster than the leader commits is slowed by HTTP/2 flow
/// control instead of growing the leader's memory.
const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

/// Whether a leader takes another batch from a stream with `requests`
/// requests of `bytes` bytes in flight.
fn takes_another_batch(requests: usize, bytes: usize) -> bool {
    requests < MAX_IN_FLIGHT_REQUESTS && bytes < MAX_IN_FLIGHT_BYTES
}

/// The largest batch a leader accepts: the byte budget plus one write of
/// the largest allowed size, plus framing.
pub fn max_batch_bytes(max_request_bytes: usize) -> usize {
    BATCH_BYTES + max_request_bytes + (1 << 20)
}

/// What the leader answered.
enum Answer {
    /// A write's response.
    Applied(CommandResponse),
    /// A read's index.
    ReadIndex(LogIndex),
}

type Reply = Result<Answer, Status>;

/// A request waiting to be sent, and where its reply goes.
struct Pending {
    request: ForwardedKind,
    reply: oneshot::Sender<Reply>,
}

/// The member side: one stream per leader, opened on first use and again
/// after it fails.
#[derive(Default)]
pub struct Forwarder {
    streams: Mutex<BTreeMap<NodeId, mpsc::Sender<Pending>>>,
}

impl Forwarder {
    /// Sends `command` (validated and encoded by the caller with the
    /// request limits) to `leader` and waits for what applying it returned.
    pub async fn write(
        &self,
        context: &Context,
        leader: NodeId,
        command: Vec<u8>,
    ) -> Result<CommandResponse, Status> {
        match self
            .send(context, leader, ForwardedKind::Command(command))
            .await?
        {
            Answer::Applied(response) => Ok(response),
            Answer::ReadIndex(_) => Err(Status::internal(
                "the leader answered a forwarded write with a read index",
            )),
        }
    }

    /// Asks `leader` to confirm its leadership and returns its commit
    /// index then: a read served once this member has applied it is
    /// linearizable.
    pub async fn read_index(&self, context: &Context, leader: NodeId) -> Result<LogIndex, Status> {
        let request = ForwardedKind::ReadIndex(ReadIndexRequest {});
        match self.send(context, leader, request).await? {
            Answer::ReadIndex(index) => Ok(index),
            Answer::Applied(_) => Err(Status::internal(
                "the leader answered a read-index request with a write's response",
            )),
        }
    }

    async fn send(
        &self,
        context: &Context,
        leader: NodeId,
        request: ForwardedKind,
    ) -> Result<Answer, Status> {
        let queue = self.queue_to(context, leader)?;
        let (reply, replied) = oneshot::channel();
        queue
            .send(Pending { request, reply })
            .await
            .map_err(|_| lost("the stream to the leader closed before the request was sent"))?;
        replied.await.map_err(|_| {
            lost("the stream to the leader failed; a write may or may not have taken effect")
        })?
    }

    /// The queue of the stream to `leader`, starting the stream if there
    /// is none or the last one ended.
    fn queue_to(&self, context: &Context, leader: NodeId) -> Result<mpsc::Sender<Pending>, Status> {
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(queue) = streams.get(&leader) {
            if !queue.is_closed() {
                return Ok(queue.clone());
            }
        }
        let channel = context.channel_of(leader)?;
        let (queue, queued) = mpsc::channel(QUEUE_WRITES);
        let status = context.node.watch_status();
        tokio::spawn(run_stream(
            channel,
            context.cluster_id,
            leader,
            status,
            queued,
        ));
        streams.insert(leader, queue.clone());
        Ok(queue)
    }
}

fn lost(what: &str) -> Status {
    Status::unavailable(format!("etcdserver: {what}"))
}

/// What one stream to the leader shares between its body (which takes the
/// queued requests, in batches, straight from the queue) and the task that
/// reads the leader's replies.
struct Outbox {
    /// The queue; taken (and closed) when the stream fails.
    queued: Option<mpsc::Receiver<Pending>>,
    /// Requests sent and not yet answered, by id.
    waiting: HashMap<u64, oneshot::Sender<Reply>>,
    next_id: u64,
}

fn lock(outbox: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    outbox
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The body of a stream to the leader: a batch of whatever is queued each
/// time the stream can take one, every request registered as waiting before
/// it goes out. Polled by the HTTP/2 layer itself, so a request is on its
/// way without a hand-off to a relay task.
struct Batches(Arc<Mutex<Outbox>>);

impl Stream for Batches {
    type Item = ForwardBatch;

    fn poll_next(self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let mut guard = lock(&self.0);
        let outbox = &mut *guard;
        let Some(queued) = outbox.queued.as_mut() else {
            return Poll::Ready(None);
        };
        let first = ready!(queued.poll_recv(context));
        Poll::Ready(
            first.map(|first| take_batch(first, queued, &mut outbox.next_id, &mut outbox.waiting)),
        )
    }
}

/// Runs one stream to the leader until it fails or this node learns that
/// `leader` no longer leads; then fails every request still waiting (a
/// write's outcome is unknown), and the queue closes so that the next
/// request opens a new stream.
async fn run_stream(
    channel: Channel,
    cluster_id: u64,
    leader: NodeId,
    mut status: watch::Receiver<NodeStatus>,
    queued: mpsc::Receiver<Pending>,
) {
    let outbox = Arc::new(Mutex::new(Outbox {
        queued: Some(queued),
        waiting: HashMap::new(),
        next_id: 0,
    }));
    let mut request = Request::new(Batches(outbox.clone()));
    if let Ok(value) = cluster_id.to_string().parse() {
        request.metadata_mut().insert(CLUSTER_ID_METADATA, value);
    }
    let mut client = KvForwardClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let failure = match client.forward(request).await {
        Err(status) => status,
        Ok(response) => {
            let mut replies = response.into_inner();
            loop {
                tokio::select! {
                    answer = replies.next() => match answer {
                        Some(Ok(answer)) => {
                            let mut outbox = lock(&outbox);
                            for reply in answer.replies {
                                if let Some(waiter) = outbox.waiting.remove(&reply.id) {
                                    let _ = waiter.send(reply_outcome(reply));
                                }
                            }
                        }
                        Some(Err(status)) => break status,
                        // Also how a stream ends when the node shuts down:
                        // the queue closes, the body ends, the leader ends
                        // its side.
                        None => break lost("the leader ended the stream"),
                    },
                    // Without this, requests sent to a leader that stopped
                    // answering would wait for the connection to time out.
                    changed = status.changed() => {
                        let still = changed.is_ok() && status.borrow().leader == Some(leader);
                        if !still {
                            break lost(&format!("node {leader} no longer leads"));
                        }
                    },
                }
            }
        }
    };
    tracing::debug!(%failure, "the stream forwarding to the leader ended");
    let (queued, waiting) = {
        let mut outbox = lock(&outbox);
        (outbox.queued.take(), std::mem::take(&mut outbox.waiting))
    };
    let unknown = lost(&format!(
        "the stream to the leader failed ({}); a write may or may not have taken effect",
        failure.message()
    ));
    for (_, waiter) in waiting {
        let _ = waiter.send(Err(unknown.clone()));
    }
    if let Some(mut queued) = queued {
        queued.close();
        while let Ok(pending) = queued.try_recv() {
            let _ = pending.reply.send(Err(lost(&format!(
                "cannot reach the leader: {}",
                failure.message()
            ))));
        }
    }
}

/// `first` and whatever else is queued now, within the batch limits; each
/// write gets an id and its reply a place to wait.
fn take_batch(
    first: Pending,
    queued: &mut mpsc::Receiver<Pending>,
    next_id: &mut u64,
    waiting: &mut HashMap<u64, oneshot::Sender<Reply>>,
) -> ForwardBatch {
    let mut requests = Vec::new();
    let mut bytes = 0;
    let mut next = Some(first);
    while let Some(pending) = next.take() {
        let id = *next_id;
        *next_id += 1;
        if let ForwardedKind::Command(command) = &pending.request {
            bytes += command.len();
        }
        waiting.insert(id, pending.reply);
        requests.push(ForwardedRequest {
            id,
            request: Some(pending.request),
        });
        if requests.len() < BATCH_WRITES && bytes < BATCH_BYTES {
            next = queued.try_recv().ok();
        }
    }
    ForwardBatch { requests }
}

/// What a reply from the leader means for the client.
fn reply_outcome(reply: ForwardReply) -> Reply {
    match (Code::from_i32(reply.code), reply.response) {
        (Code::Ok, Some(ReplyResponse::Put(response))) => {
            Ok(Answer::Applied(CommandResponse::Put(response)))
        }
        (Code::Ok, Some(ReplyResponse::DeleteRange(response))) => {
            Ok(Answer::Applied(CommandResponse::DeleteRange(response)))
        }
        (Code::Ok, Some(ReplyResponse::Txn(response))) => {
            Ok(Answer::Applied(CommandResponse::Txn(response)))
        }
        (Code::Ok, Some(ReplyResponse::Published(header))) => {
            Ok(Answer::Applied(CommandResponse::Published(Some(header))))
        }
        (Code::Ok, Some(ReplyResponse::ReadIndex(index))) => Ok(Answer::ReadIndex(LogIndex(index))),
        (Code::Ok, None) => Err(Status::internal(
            "the leader answered a forwarded request without a response",
        )),
        (code, _) => Err(Status::new(code, reply.message)),
    }
}

/// The leader side of `KvForward`.
pub struct ForwardService {
    context: Arc<Context>,
    kv: Arc<KvService>,
}

impl ForwardService {
    /// The service over `context`.
    pub fn new(context: Arc<Context>) -> ForwardService {
        ForwardService {
            kv: Arc::new(KvService::new(context.clone())),
            context,
        }
    }
}

/// Carries out one forwarded request here and says how it went.
async fn answer(kv: &KvService, request: ForwardedRequest) -> ForwardReply {
    let outcome = match request.request {
        // Checked again (the member is trusted only to be of this
        // cluster), then proposed as it came: no decoding and encoding.
        Some(ForwardedKind::Command(command)) => {
            match Command::check_proposal(&command, kv.limits()) {
                Ok(()) => kv.propose(command).await.map(|response| match response {
                    CommandResponse::Put(response) => ReplyResponse::Put(response),
                    CommandResponse::DeleteRange(response) => ReplyResponse::DeleteRange(response),
                    CommandResponse::Txn(response) => ReplyResponse::Txn(response),
                    CommandResponse::Published(header) => {
                        ReplyResponse::Published(header.unwrap_or_default())
                    }
                }),
                Err(error) => Err(kv_status(&error)),
            }
        }
        Some(ForwardedKind::ReadIndex(ReadIndexRequest {})) => kv
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
    kv: Arc<KvService>,
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
                        let kv = this.kv.clone();
                        let bytes = request.encoded_len();
                        this.in_flight_bytes = this.in_flight_bytes.saturating_add(bytes);
                        this.in_flight
                            .push(async move { (answer(&kv, request).await, bytes) }.boxed());
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
        if theirs != Some(self.context.cluster_id) {
            let theirs = theirs.map_or_else(|| "(none named)".to_string(), |id| format!("{id:x}"));
            return Err(Status::failed_precondition(format!(
                "a forwarding stream from cluster {theirs}, but this is cluster {:x}",
                self.context.cluster_id
            )));
        }
        Ok(Response::new(Replies {
            kv: self.kv.clone(),
            batches: Some(request.into_inner()),
            in_flight: FuturesUnordered::new(),
            in_flight_bytes: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_stops_reading_a_stream_at_either_bound() {
        assert!(takes_another_batch(0, 0));
        assert!(takes_another_batch(
            MAX_IN_FLIGHT_REQUESTS - 1,
            MAX_IN_FLIGHT_BYTES - 1
        ));
        assert!(!takes_another_batch(MAX_IN_FLIGHT_REQUESTS, 0));
        assert!(!takes_another_batch(0, MAX_IN_FLIGHT_BYTES));
    }
}

//! The member's side of forwarding: one stream per leader, opened on first
//! use and again after it fails; requests queued at one moment go as one
//! batch, and the leader's replies are matched to the waiting callers by id.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context as TaskContext, Poll};

use futures_util::StreamExt;
use raft::node::NodeStatus;
use raft::{LogIndex, NodeId};
use raft_proto::forward::forward_reply::Response as ReplyResponse;
use raft_proto::forward::forwarded_request::Request as ForwardedKind;
use raft_proto::forward::kv_forward_client::KvForwardClient;
use raft_proto::forward::{ForwardBatch, ForwardReply, ForwardedRequest, ReadIndexRequest};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::{BATCH_BYTES, BATCH_WRITES, CLUSTER_ID_METADATA, QUEUE_WRITES};
use crate::kv::CommandResponse;

/// How to open a stream to a leader: what the member knows that the
/// forwarder does not.
pub trait Dial: Sync {
    /// A channel to `member`.
    fn channel_of(&self, member: NodeId) -> Result<Channel, Status>;
    /// This member's cluster, named to the leader.
    fn cluster_id(&self) -> u64;
    /// This member's status as it changes: a stream ends once its leader
    /// is seen to lead no more.
    fn watch_status(&self) -> watch::Receiver<NodeStatus>;
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
        dial: &dyn Dial,
        leader: NodeId,
        command: Vec<u8>,
    ) -> Result<CommandResponse, Status> {
        match self
            .send(dial, leader, ForwardedKind::Command(command))
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
    pub async fn read_index(&self, dial: &dyn Dial, leader: NodeId) -> Result<LogIndex, Status> {
        let request = ForwardedKind::ReadIndex(ReadIndexRequest {});
        match self.send(dial, leader, request).await? {
            Answer::ReadIndex(index) => Ok(index),
            Answer::Applied(_) => Err(Status::internal(
                "the leader answered a read-index request with a write's response",
            )),
        }
    }

    async fn send(
        &self,
        dial: &dyn Dial,
        leader: NodeId,
        request: ForwardedKind,
    ) -> Result<Answer, Status> {
        let queue = self.queue_to(dial, leader)?;
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
    fn queue_to(&self, dial: &dyn Dial, leader: NodeId) -> Result<mpsc::Sender<Pending>, Status> {
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(queue) = streams.get(&leader) {
            if !queue.is_closed() {
                return Ok(queue.clone());
            }
        }
        let channel = dial.channel_of(leader)?;
        let (queue, queued) = mpsc::channel(QUEUE_WRITES);
        let status = dial.watch_status();
        tokio::spawn(run_stream(
            channel,
            dial.cluster_id(),
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
        (Code::Ok, Some(ReplyResponse::Compaction(response))) => {
            Ok(Answer::Applied(CommandResponse::Compacted(response)))
        }
        (Code::Ok, Some(ReplyResponse::ReadIndex(index))) => Ok(Answer::ReadIndex(LogIndex(index))),
        (Code::Ok, None) => Err(Status::internal(
            "the leader answered a forwarded request without a response",
        )),
        (code, _) => Err(Status::new(code, reply.message)),
    }
}

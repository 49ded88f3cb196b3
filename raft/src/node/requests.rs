//! Client requests in flight, shared by the event loop (which learns where a
//! proposal landed in the log, or that it failed) and the applier (which
//! answers a proposal with its state machine response).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::node::error::RequestFailure;
use crate::node::metrics::NodeMetrics;
use crate::types::{LogIndex, RequestId, Term};

/// Where a read's answer goes: the read index once leadership is confirmed.
pub(crate) type ReadReply = oneshot::Sender<Result<LogIndex, RequestFailure>>;
/// Where a proposal's answer goes: the state machine's response.
pub(crate) type ProposalReply<R> = oneshot::Sender<Result<R, RequestFailure>>;

enum Waiter<R> {
    Proposal(ProposalReply<R>),
    Read(ReadReply),
}

struct Inner<R> {
    next_id: u64,
    waiters: HashMap<RequestId, Waiter<R>>,
    /// Accepted proposals by log index: the term they were appended in.
    accepted: BTreeMap<LogIndex, (Term, RequestId)>,
}

/// The registry of requests in flight.
pub(crate) struct Requests<R> {
    inner: Mutex<Inner<R>>,
    metrics: Arc<NodeMetrics>,
}

impl<R> Requests<R> {
    pub(crate) fn new(metrics: Arc<NodeMetrics>) -> Requests<R> {
        Requests {
            metrics,
            inner: Mutex::new(Inner {
                next_id: 1,
                waiters: HashMap::new(),
                accepted: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<R>> {
        // A panic elsewhere cannot leave the maps half-updated: every
        // critical section is a single map operation.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register(&self, waiter: Waiter<R>) -> RequestId {
        let mut inner = self.lock();
        let id = RequestId(inner.next_id);
        inner.next_id += 1;
        inner.waiters.insert(id, waiter);
        id
    }

    /// Registers a proposal and returns its request id.
    pub(crate) fn register_proposal(&self, reply: ProposalReply<R>) -> RequestId {
        self.register(Waiter::Proposal(reply))
    }

    /// Registers a read and returns its request id.
    pub(crate) fn register_read(&self, reply: ReadReply) -> RequestId {
        self.register(Waiter::Read(reply))
    }

    /// The proposal `id` was appended at (`index`, `term`).
    pub(crate) fn accepted(&self, id: RequestId, index: LogIndex, term: Term) {
        let mut inner = self.lock();
        if inner.waiters.contains_key(&id) {
            inner.accepted.insert(index, (term, id));
        }
    }

    /// The read `id` may be served once the state machine reaches
    /// `read_index`.
    pub(crate) fn read_ready(&self, id: RequestId, read_index: LogIndex) {
        if let Some(Waiter::Read(reply)) = self.lock().waiters.remove(&id) {
            let _ = reply.send(Ok(read_index));
        }
    }

    /// The request `id` failed.
    pub(crate) fn fail(&self, id: RequestId, failure: RequestFailure) {
        self.metrics.requests_failed.inc();
        let mut inner = self.lock();
        inner.accepted.retain(|_, (_, accepted)| *accepted != id);
        match inner.waiters.remove(&id) {
            Some(Waiter::Proposal(reply)) => {
                let _ = reply.send(Err(failure));
            }
            Some(Waiter::Read(reply)) => {
                let _ = reply.send(Err(failure));
            }
            None => {}
        }
    }

    /// The entry at (`index`, `term`) was applied: answers the proposal
    /// accepted at `index` with `response` if it was this entry, or with
    /// [`RequestFailure::Lost`] if another entry replaced it.
    pub(crate) fn applied(&self, index: LogIndex, term: Term, response: Option<R>) {
        let mut inner = self.lock();
        let Some((accepted_term, id)) = inner.accepted.remove(&index) else {
            return;
        };
        let Some(Waiter::Proposal(reply)) = inner.waiters.remove(&id) else {
            return;
        };
        drop(inner);
        let answer = match response {
            Some(response) if accepted_term == term => {
                self.metrics.proposals_committed.inc();
                Ok(response)
            }
            _ => {
                self.metrics.requests_failed.inc();
                Err(RequestFailure::Lost)
            }
        };
        let _ = reply.send(answer);
    }

    /// The state machine jumped to a snapshot at `index`: proposals accepted
    /// at or before it can no longer be matched with their entries, so
    /// their outcome is unknown.
    pub(crate) fn skipped_to(&self, index: LogIndex) {
        let mut inner = self.lock();
        let skipped: Vec<LogIndex> = inner.accepted.range(..=index).map(|(at, _)| *at).collect();
        for at in skipped {
            if let Some((_, id)) = inner.accepted.remove(&at) {
                if let Some(Waiter::Proposal(reply)) = inner.waiters.remove(&id) {
                    let _ = reply.send(Err(RequestFailure::Indeterminate));
                }
            }
        }
    }

    /// Fails every request in flight (the node is stopping).
    pub(crate) fn fail_all(&self, failure: RequestFailure) {
        let mut inner = self.lock();
        inner.accepted.clear();
        for (_, waiter) in inner.waiters.drain() {
            match waiter {
                Waiter::Proposal(reply) => {
                    let _ = reply.send(Err(failure.clone()));
                }
                Waiter::Read(reply) => {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
        }
    }
}

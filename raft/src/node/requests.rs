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
/// Where a configuration change's answer goes: the index of its entry,
/// once applied.
pub(crate) type ChangeReply = oneshot::Sender<Result<LogIndex, RequestFailure>>;

enum Waiter<R> {
    /// A proposal, and the log index it was appended at once accepted.
    Proposal {
        reply: ProposalReply<R>,
        at: Option<LogIndex>,
    },
    Read(ReadReply),
    /// A configuration change, and the log index it was appended at.
    Change {
        reply: ChangeReply,
        at: Option<LogIndex>,
    },
}

impl<R> Waiter<R> {
    fn fail(self, failure: RequestFailure) {
        match self {
            Waiter::Proposal { reply, .. } => {
                let _ = reply.send(Err(failure));
            }
            Waiter::Read(reply) | Waiter::Change { reply, .. } => {
                let _ = reply.send(Err(failure));
            }
        }
    }

    fn accepted_at(&self) -> Option<LogIndex> {
        match self {
            Waiter::Proposal { at, .. } | Waiter::Change { at, .. } => *at,
            Waiter::Read(_) => None,
        }
    }
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
        self.register(Waiter::Proposal { reply, at: None })
    }

    /// Registers a configuration change and returns its request id.
    pub(crate) fn register_change(&self, reply: ChangeReply) -> RequestId {
        self.register(Waiter::Change { reply, at: None })
    }

    /// Registers a read and returns its request id.
    pub(crate) fn register_read(&self, reply: ReadReply) -> RequestId {
        self.register(Waiter::Read(reply))
    }

    /// The proposal `id` was appended at (`index`, `term`).
    pub(crate) fn accepted(&self, id: RequestId, index: LogIndex, term: Term) {
        let mut inner = self.lock();
        if let Some(Waiter::Proposal { at, .. } | Waiter::Change { at, .. }) =
            inner.waiters.get_mut(&id)
        {
            *at = Some(index);
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
        let Some(waiter) = inner.waiters.remove(&id) else {
            return;
        };
        if let Some(index) = &waiter.accepted_at() {
            if inner
                .accepted
                .get(index)
                .is_some_and(|(_, accepted)| *accepted == id)
            {
                inner.accepted.remove(index);
            }
        }
        drop(inner);
        waiter.fail(failure);
    }

    /// Entries were applied, each (`index`, `term`) with its state
    /// machine response (none for a no-op): answers each proposal accepted
    /// at one of those indexes with its response if it was this entry, or
    /// with [`RequestFailure::Lost`] if another entry replaced it.
    pub(crate) fn applied(&self, entries: Vec<(LogIndex, Term, Option<R>)>) {
        let mut answers = Vec::new();
        let mut changes = Vec::new();
        {
            let mut inner = self.lock();
            if inner.accepted.is_empty() {
                return;
            }
            for (index, term, response) in entries {
                let Some((accepted_term, id)) = inner.accepted.remove(&index) else {
                    continue;
                };
                match inner.waiters.remove(&id) {
                    Some(Waiter::Proposal { reply, .. }) => {
                        let answer = match response {
                            Some(response) if accepted_term == term => Ok(response),
                            _ => Err(RequestFailure::Lost),
                        };
                        answers.push((reply, answer));
                    }
                    Some(Waiter::Change { reply, .. }) => {
                        // A configuration entry has no state machine
                        // response; it took effect if the entry is ours.
                        let answer = if accepted_term == term {
                            Ok(index)
                        } else {
                            Err(RequestFailure::Lost)
                        };
                        changes.push((reply, answer));
                    }
                    // Only proposals and changes are accepted at an index.
                    Some(Waiter::Read(_)) | None => {}
                }
            }
        }
        for (reply, answer) in changes {
            let _ = reply.send(answer);
        }
        for (reply, answer) in answers {
            match &answer {
                Ok(_) => self.metrics.proposals_committed.inc(),
                Err(_) => self.metrics.requests_failed.inc(),
            };
            let _ = reply.send(answer);
        }
    }

    /// The state machine jumped to a snapshot at `index`: proposals accepted
    /// at or before it can no longer be matched with their entries, so
    /// their outcome is unknown.
    pub(crate) fn skipped_to(&self, index: LogIndex) {
        let mut inner = self.lock();
        let kept = inner.accepted.split_off(&index.next());
        let skipped = std::mem::replace(&mut inner.accepted, kept);
        for (_, id) in skipped.into_values() {
            if let Some(waiter) = inner.waiters.remove(&id) {
                waiter.fail(RequestFailure::Indeterminate);
            }
        }
    }

    /// Fails every request in flight (the node is stopping).
    pub(crate) fn fail_all(&self, failure: RequestFailure) {
        let mut inner = self.lock();
        inner.accepted.clear();
        for (_, waiter) in inner.waiters.drain() {
            waiter.fail(failure.clone());
        }
    }
}

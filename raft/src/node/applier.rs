//! The applier: a thread of its own that applies committed entries to the
//! state machine, so that a slow state machine never delays the event loop
//! (heartbeats, votes, replication).

use std::sync::mpsc;
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc as tokio_mpsc, watch};

use crate::node::event_loop::Event;
use crate::node::requests::Requests;
use crate::state_machine::StateMachine;
use crate::types::{Entry, EntryPayload, LogIndex};

/// Work for the applier, in log order.
pub(crate) enum Work {
    /// Committed entries to apply, in order.
    Apply(Vec<Entry>),
    /// Stop after the work queued before.
    Stop,
}

/// The applier's state.
pub(crate) struct Applier<M: StateMachine> {
    pub(crate) state_machine: Arc<RwLock<M>>,
    pub(crate) requests: Arc<Requests<M::Response>>,
    pub(crate) events: tokio_mpsc::UnboundedSender<Event>,
    pub(crate) applied: watch::Sender<LogIndex>,
    pub(crate) applied_index: LogIndex,
}

impl<M: StateMachine> Applier<M> {
    /// Runs until [`Work::Stop`] or until the event loop is gone.
    pub(crate) fn run(mut self, work: mpsc::Receiver<Work>) {
        let mut batch: Vec<Entry> = Vec::new();
        let mut responses = Vec::new();
        'outer: while let Ok(first) = work.recv() {
            // Take everything queued, to apply it under one lock.
            let mut stop = false;
            let mut next = Some(first);
            while let Some(item) = next.take().or_else(|| work.try_recv().ok()) {
                match item {
                    Work::Apply(entries) => batch.extend(entries),
                    Work::Stop => {
                        stop = true;
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                self.apply(&mut batch, &mut responses);
            }
            if stop {
                break 'outer;
            }
        }
    }

    fn apply(&mut self, batch: &mut Vec<Entry>, responses: &mut Vec<(Entry, Option<M::Response>)>) {
        {
            let mut state_machine = self
                .state_machine
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for entry in batch.drain(..) {
                if entry.index <= self.applied_index {
                    continue;
                }
                let response = match &entry.payload {
                    EntryPayload::Command(command) => {
                        Some(state_machine.apply(entry.index, command))
                    }
                    EntryPayload::Noop => None,
                };
                self.applied_index = entry.index;
                responses.push((entry, response));
            }
        }
        for (entry, response) in responses.drain(..) {
            self.requests.applied(entry.index, entry.term, response);
        }
        self.applied.send_replace(self.applied_index);
        let _ = self.events.send(Event::Applied(self.applied_index));
    }
}

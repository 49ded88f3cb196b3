//! The outputs a node produces between two takes, and the bookkeeping that
//! lets a leader's appends share one storage write: proposals stepped back
//! to back extend the `AppendLog` they started, and the entries appended
//! since the last take become one shared run only when they must (before
//! they are sent or taken).

use super::log::RaftLog;
use super::message::{Message, MessageBody};
use super::output::Output;
use super::validation::Refusal;
use crate::entries::Entries;
use crate::types::{HardState, NodeId, Term};

/// Outputs in the order the driver must carry them out.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    outputs: Vec<Output>,
    /// While proposals arrive back to back: the position in `outputs` of
    /// the `AppendLog` they extend, and the length `outputs` had right after
    /// the last of them. Each proposal also emits a `ProposalAccepted`, so
    /// without this every proposal would need its own write.
    proposal_append: Option<(usize, usize)>,
    /// The position in `outputs` of the `AppendLog` that the entries the
    /// leader appended but has not sealed yet will fill: present exactly
    /// while there are such entries (see [`Outbox::seal`]).
    unsealed_append: Option<usize>,
}

impl Outbox {
    /// Adds an output after the others.
    pub(super) fn push(&mut self, output: Output) {
        self.outputs.push(output);
    }

    /// Sends `body` from `from` to `to`, in `term`.
    pub(super) fn send(&mut self, from: NodeId, to: NodeId, term: Term, body: MessageBody) {
        self.outputs.push(Output::Send(Message {
            from,
            to,
            term,
            body,
        }));
    }

    /// Drops a message that broke a rule, and says so.
    pub(super) fn refuse(&mut self, own: NodeId, from: NodeId, refusal: Refusal) {
        tracing::debug!(node = %own, %from, %refusal, "refusing a message");
        self.outputs.push(Output::MessageRefused { from, refusal });
    }

    /// Saves `hard_state`. A save right after another supersedes it (e.g. a
    /// higher term, then a vote in it): one durable write instead of two.
    pub(super) fn save_hard_state(&mut self, hard_state: HardState) {
        if let Some(Output::SaveHardState(previous)) = self.outputs.last_mut() {
            *previous = hard_state;
        } else {
            self.outputs.push(Output::SaveHardState(hard_state));
        }
    }

    /// The position of the `AppendLog` a leader's next entry joins: the
    /// unsealed entries' append when nothing but acceptances of proposals
    /// came after it, so storage sees one write per batch; otherwise a new
    /// one, after sealing what came before.
    pub(super) fn append_position(&mut self, log: &mut RaftLog) -> usize {
        let extendable = match (self.unsealed_append, self.proposal_append) {
            (Some(position), Some((proposals_position, outputs_len)))
                if proposals_position == position && outputs_len == self.outputs.len() =>
            {
                Some(position)
            }
            (Some(position), _) if position + 1 == self.outputs.len() => Some(position),
            _ => None,
        };
        extendable.unwrap_or_else(|| {
            self.seal(log);
            self.outputs.push(Output::AppendLog {
                entries: Entries::new(),
            });
            let position = self.outputs.len() - 1;
            self.unsealed_append = Some(position);
            position
        })
    }

    /// A proposal's entry went into the `AppendLog` at `append_position`
    /// and its acceptance was pushed: the next proposal may extend it.
    pub(super) fn proposal_appended(&mut self, append_position: usize) {
        self.proposal_append = Some((append_position, self.outputs.len()));
    }

    /// Makes the entries appended since the last call one shared run and
    /// puts it in the `AppendLog` waiting for it. Done before entries are
    /// sent or outputs taken, and when leadership ends.
    #[inline]
    pub(super) fn seal(&mut self, log: &mut RaftLog) {
        // Called before every send: nearly always there is nothing to seal.
        let Some(position) = self.unsealed_append.take() else {
            return;
        };
        let run = log
            .seal()
            .expect("an AppendLog waits only for unsealed entries");
        self.outputs[position] = Output::AppendLog { entries: run };
    }

    /// Appends every output to `into`, in order, after sealing; the next
    /// proposal starts a new append.
    pub(super) fn drain_into(&mut self, log: &mut RaftLog, into: &mut Vec<Output>) {
        self.seal(log);
        self.proposal_append = None;
        into.append(&mut self.outputs);
    }

    /// Takes every output, in order, after sealing; the next proposal
    /// starts a new append.
    pub(super) fn take(&mut self, log: &mut RaftLog) -> Vec<Output> {
        self.seal(log);
        self.proposal_append = None;
        std::mem::take(&mut self.outputs)
    }
}

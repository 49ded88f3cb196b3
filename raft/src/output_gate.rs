//! The ordering rule of the driver contract, as a piece of its own: an
//! output that must be durable before anything after it
//! ([`Output::SaveHardState`], [`Output::RestoreSnapshot`]) holds back every
//! later output until the driver reports it durable.
//!
//! Sans I/O: the gate neither writes nor waits. A driver puts the core's
//! outputs in ([`OutputGate::admit`]), carries out what [`OutputGate::next`]
//! gives, tells the gate how each barrier output was written
//! ([`OutputGate::written_pending`] with the write's sequence number, or
//! [`OutputGate::written_durably`]) and reports durable sequence numbers as
//! they come ([`OutputGate::durable`]). The node's event loop and the
//! simulator both drive their outputs through it, so the code that keeps
//! votes and terms durable before they are acted on is the code the
//! simulator's crashes exercise.
//!
//! The gate refuses to hand out anything after a barrier output until it
//! has been told how that output was written: a driver that forgets stalls
//! (which the simulator's liveness check reports) rather than racing ahead.

use std::collections::VecDeque;

use crate::core::output::Output;

/// Outputs in the order they must be carried out, held while a barrier
/// output is not yet durable.
#[derive(Debug, Default)]
pub struct OutputGate {
    /// Outputs not handed out yet, in order.
    held: VecDeque<Output>,
    /// What the last barrier output handed out waits for.
    barrier: Barrier,
    /// Carries out everything at once, ignoring durability. Only for the
    /// simulator's proof that its checks catch the broken ordering.
    #[cfg(feature = "bug-injection")]
    ignore_durability: bool,
}

/// What keeps the gate closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Barrier {
    /// Nothing: outputs flow.
    #[default]
    Open,
    /// A barrier output was handed out; the driver has not said how it was
    /// written.
    Unwritten,
    /// The write with this sequence number is not durable yet.
    Pending(u64),
}

impl OutputGate {
    /// An open gate with nothing held.
    pub fn new() -> OutputGate {
        OutputGate::default()
    }

    /// A gate that lets every output through at once: the unsafe ordering
    /// the simulator's self-test must catch (a vote sent before it is
    /// durable is forgotten by a crash, and the voter votes twice).
    #[cfg(feature = "bug-injection")]
    pub fn ignoring_durability() -> OutputGate {
        OutputGate {
            ignore_durability: true,
            ..OutputGate::default()
        }
    }

    /// Whether `output` must be durable before any later output is carried
    /// out.
    pub fn is_barrier(output: &Output) -> bool {
        matches!(
            output,
            Output::SaveHardState(_) | Output::RestoreSnapshot { .. }
        )
    }

    /// Queues the core's outputs, in order, after those already held.
    pub fn admit(&mut self, outputs: impl IntoIterator<Item = Output>) {
        self.held.extend(outputs);
    }

    /// The next output to carry out now, or `None` when none is left or a
    /// barrier output is not durable yet. After a barrier output, call
    /// [`OutputGate::written_pending`] or [`OutputGate::written_durably`].
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Output> {
        if self.barrier != Barrier::Open {
            return None;
        }
        let output = self.held.pop_front()?;
        if OutputGate::is_barrier(&output) && !self.ignores_durability() {
            self.barrier = Barrier::Unwritten;
        }
        Some(output)
    }

    /// The barrier output just handed out was submitted as the write
    /// `sequence`: later outputs wait until [`OutputGate::durable`] reaches
    /// it.
    pub fn written_pending(&mut self, sequence: u64) {
        if self.barrier == Barrier::Unwritten {
            self.barrier = Barrier::Pending(sequence);
        }
    }

    /// The barrier output just handed out is durable already: later outputs
    /// may follow.
    pub fn written_durably(&mut self) {
        if self.barrier == Barrier::Unwritten {
            self.barrier = Barrier::Open;
        }
    }

    /// Every write up to `sequence` is durable.
    pub fn durable(&mut self, sequence: u64) {
        if let Barrier::Pending(awaited) = self.barrier {
            if awaited <= sequence {
                self.barrier = Barrier::Open;
            }
        }
    }

    /// Whether outputs wait behind a barrier.
    pub fn is_holding(&self) -> bool {
        self.barrier != Barrier::Open
    }

    /// How many outputs are held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Forgets everything held, as a crash does.
    pub fn clear(&mut self) {
        self.held.clear();
        self.barrier = Barrier::Open;
    }

    fn ignores_durability(&self) -> bool {
        #[cfg(feature = "bug-injection")]
        return self.ignore_durability;
        #[cfg(not(feature = "bug-injection"))]
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::SnapshotMetadata;
    use crate::types::{HardState, LogIndex, NodeId, RequestId, Term};

    fn hard_state(term: u64) -> Output {
        Output::SaveHardState(HardState {
            term: Term(term),
            voted_for: Some(NodeId(1)),
        })
    }

    fn read(id: u64) -> Output {
        Output::ReadReady {
            request_id: RequestId(id),
            read_index: LogIndex(1),
        }
    }

    fn drain(gate: &mut OutputGate) -> Vec<Output> {
        std::iter::from_fn(|| gate.next()).collect()
    }

    #[test]
    fn outputs_flow_in_order_without_a_barrier() {
        let mut gate = OutputGate::new();
        gate.admit([read(1), read(2)]);
        gate.admit([read(3)]);
        assert_eq!(drain(&mut gate), vec![read(1), read(2), read(3)]);
        assert!(!gate.is_holding());
    }

    #[test]
    fn a_hard_state_holds_what_follows_until_its_write_is_durable() {
        let mut gate = OutputGate::new();
        gate.admit([read(1), hard_state(2), read(2), read(3)]);
        assert_eq!(drain(&mut gate), vec![read(1), hard_state(2)]);
        // Not told how it was written: nothing more.
        assert_eq!(gate.next(), None);
        gate.written_pending(7);
        assert_eq!(gate.next(), None);
        gate.durable(6);
        assert_eq!(gate.next(), None, "an earlier write is not enough");
        assert_eq!(gate.held(), 2);
        gate.durable(7);
        assert_eq!(drain(&mut gate), vec![read(2), read(3)]);
    }

    #[test]
    fn a_later_durable_sequence_opens_the_gate_too() {
        let mut gate = OutputGate::new();
        gate.admit([hard_state(2), read(1)]);
        assert_eq!(gate.next(), Some(hard_state(2)));
        gate.written_pending(3);
        gate.durable(9);
        assert_eq!(drain(&mut gate), vec![read(1)]);
    }

    #[test]
    fn a_barrier_written_durably_lets_the_rest_through() {
        let restore = Output::RestoreSnapshot {
            metadata: SnapshotMetadata::default(),
        };
        let mut gate = OutputGate::new();
        gate.admit([restore.clone(), read(1)]);
        assert_eq!(gate.next(), Some(restore));
        assert_eq!(gate.next(), None);
        gate.written_durably();
        assert_eq!(drain(&mut gate), vec![read(1)]);
    }

    #[test]
    fn outputs_admitted_while_holding_wait_behind_the_held_ones() {
        let mut gate = OutputGate::new();
        gate.admit([hard_state(2), read(1)]);
        assert_eq!(gate.next(), Some(hard_state(2)));
        gate.written_pending(1);
        gate.admit([hard_state(3), read(2)]);
        gate.durable(1);
        assert_eq!(drain(&mut gate), vec![read(1), hard_state(3)]);
        gate.written_pending(2);
        assert_eq!(gate.next(), None);
        gate.durable(2);
        assert_eq!(drain(&mut gate), vec![read(2)]);
    }

    #[test]
    fn a_durable_report_before_any_barrier_changes_nothing() {
        let mut gate = OutputGate::new();
        gate.durable(5);
        gate.written_pending(5);
        gate.written_durably();
        gate.admit([hard_state(2), read(1)]);
        assert_eq!(gate.next(), Some(hard_state(2)));
        assert_eq!(gate.next(), None);
    }

    #[test]
    fn a_crash_forgets_what_was_held() {
        let mut gate = OutputGate::new();
        gate.admit([hard_state(2), read(1)]);
        assert_eq!(gate.next(), Some(hard_state(2)));
        gate.clear();
        assert_eq!(gate.next(), None);
        gate.admit([read(2)]);
        assert_eq!(drain(&mut gate), vec![read(2)]);
    }
}

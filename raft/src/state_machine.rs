//! The replicated state machine a user plugs into a node.

use std::io;

use crate::types::LogIndex;

/// The application state that Raft replicates: every node applies the same
/// committed commands in the same order.
pub trait StateMachine: Send + Sync + 'static {
    /// What applying a command returns to its proposer.
    type Response: Send + 'static;

    /// Applies the committed command at `index`. Must be deterministic: the
    /// same commands in the same order give the same state on every node.
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Self::Response;

    /// Writes the whole state, as of the last applied index, to `writer`.
    fn snapshot(&self, writer: &mut dyn io::Write) -> io::Result<()>;

    /// Replaces the whole state with a snapshot read from `reader`.
    fn restore(&mut self, reader: &mut dyn io::Read) -> io::Result<()>;
}

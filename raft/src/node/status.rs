//! What a running node publishes about itself.

use crate::core::Role;
use crate::types::{LogIndex, NodeId, Term};

/// A node's role and position, published whenever they change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of in this term.
    pub leader: Option<NodeId>,
    /// The highest index it knows to be committed.
    pub commit_index: LogIndex,
}

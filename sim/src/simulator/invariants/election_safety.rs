//! Election Safety: at most one leader can be elected in a given term
//! (Raft paper, Figure 3).

use std::collections::BTreeMap;

use raft::{NodeId, Role, Term};

use super::{NodeView, Violation};

/// Remembers the leader of every term ever seen.
#[derive(Debug, Default)]
pub struct ElectionSafety {
    leader_of_term: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// Records current leaders; fails if a term gains a second one.
    pub fn check(&mut self, nodes: &[NodeView<'_>]) -> Result<(), Violation> {
        for node in nodes
            .iter()
            .filter(|node| node.alive && node.role == Role::Leader)
        {
            let leader = *self.leader_of_term.entry(node.term).or_insert(node.id);
            if leader != node.id {
                return Err(Violation {
                    property: "Election Safety",
                    detail: format!(
                        "{} and {} were both leader in {}",
                        leader, node.id, node.term
                    ),
                });
            }
        }
        Ok(())
    }
}

//! Leader Append-Only: a leader never overwrites or deletes entries in its
//! log; it only appends new entries (Raft paper, Figure 3).

use std::collections::BTreeMap;

use raft::{Entry, LogIndex, NodeId, Role, Term};

use super::{NodeView, Violation};
use crate::simulator::log_view::LogView;

/// Remembers where each leader's log ended at the previous step.
#[derive(Debug, Default)]
pub struct LeaderAppendOnly {
    /// Per node: the term it led in, its last index and the chained hash there.
    last_seen: BTreeMap<NodeId, (Term, LogIndex, u64)>,
}

impl LeaderAppendOnly {
    /// A leader's append must start right after its last entry.
    pub fn check_append(
        &mut self,
        node: NodeId,
        role: Role,
        log_before: &LogView,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if role == Role::Leader && first.index <= log_before.last_index() {
            return Err(Violation {
                property: "Leader Append-Only",
                detail: format!(
                    "leader {node} rewrote its log from {} (its last index was {})",
                    first.index,
                    log_before.last_index()
                ),
            });
        }
        Ok(())
    }

    /// A node that stays leader in the same term keeps its earlier log as a
    /// prefix.
    pub fn check(&mut self, nodes: &[NodeView<'_>]) -> Result<(), Violation> {
        for node in nodes {
            if !node.alive || node.role != Role::Leader {
                self.last_seen.remove(&node.id);
                continue;
            }
            if let Some((term, last_index, chain)) = self.last_seen.get(&node.id) {
                if *term == node.term
                    && (node.log.last_index() < *last_index
                        || node.log.chain_at(*last_index) != *chain)
                {
                    return Err(Violation {
                        property: "Leader Append-Only",
                        detail: format!(
                            "leader {} of {} lost or changed entries up to {}",
                            node.id, node.term, last_index
                        ),
                    });
                }
            }
            let last = node.log.last_index();
            self.last_seen
                .insert(node.id, (node.term, last, node.log.chain_at(last)));
        }
        Ok(())
    }
}

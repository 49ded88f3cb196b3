//! State Machine Safety: if a server has applied a log entry at a given
//! index to its state machine, no other server will ever apply a different
//! log entry for the same index (Raft paper, Figure 3). Also checks that no
//! two nodes ever consider different entries committed at one index.

use raft::{Entry, NodeId};

use super::{CommittedLog, NodeView, Violation};
use crate::simulator::log_view::LogView;

/// Checks commits and applies against the committed prefix.
#[derive(Debug, Default)]
pub struct StateMachineSafety;

impl StateMachineSafety {
    /// Each node's committed prefix must agree with the cluster's; a longer
    /// one extends it.
    pub fn check_commits(
        &mut self,
        nodes: &[NodeView<'_>],
        committed: &mut CommittedLog,
    ) -> Result<(), Violation> {
        for node in nodes.iter().filter(|node| node.alive) {
            let common = node.commit_index.min(committed.len());
            if node.log.chain_at(common) != committed.chain_at(common) {
                return Err(Violation {
                    property: "State Machine Safety",
                    detail: format!(
                        "{} committed a different entry at or before {} than the cluster did",
                        node.id, common
                    ),
                });
            }
            if node.commit_index > committed.len() {
                committed.extend(node, node.commit_index);
            }
        }
        Ok(())
    }

    /// Entries handed to a state machine must be the committed ones.
    pub fn check_apply(
        &mut self,
        node: NodeId,
        log: &LogView,
        entries: &[Entry],
        committed: &CommittedLog,
    ) -> Result<(), Violation> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        if last.index > committed.len() && last.index > log.last_index() {
            return Err(Violation {
                property: "State Machine Safety",
                detail: format!("{node} applied {} beyond its log", last.index),
            });
        }
        let common = last.index.min(committed.len());
        if log.chain_at(common) != committed.chain_at(common) {
            return Err(Violation {
                property: "State Machine Safety",
                detail: format!(
                    "{node} applied an entry at or before {common} that differs from the committed one"
                ),
            });
        }
        Ok(())
    }
}

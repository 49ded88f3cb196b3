//! Leader Completeness: if a log entry is committed in a given term, that
//! entry will be present in the logs of the leaders for all higher-numbered
//! terms (Raft paper, Figure 3).

use std::collections::BTreeSet;

use raft::{NodeId, Role, Term};

use super::{CommittedLog, NodeView, Violation};

/// Checks each leader once per term it leads.
#[derive(Debug, Default)]
pub struct LeaderCompleteness {
    checked: BTreeSet<(Term, NodeId)>,
}

impl LeaderCompleteness {
    /// Every leader must hold every entry whose commit was observed in an
    /// earlier term.
    pub fn check(
        &mut self,
        nodes: &[NodeView<'_>],
        committed: &CommittedLog,
    ) -> Result<(), Violation> {
        for node in nodes
            .iter()
            .filter(|node| node.alive && node.role == Role::Leader)
        {
            if !self.checked.insert((node.term, node.id)) {
                continue;
            }
            let required = committed.last_committed_before(node.term);
            if node.log.chain_at(required) != committed.chain_at(required) {
                return Err(Violation {
                    property: "Leader Completeness",
                    detail: format!(
                        "{} became leader of {} without the entries committed up to {}",
                        node.id, node.term, required
                    ),
                });
            }
        }
        Ok(())
    }
}

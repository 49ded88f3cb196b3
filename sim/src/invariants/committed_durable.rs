//! Durability: every committed entry is durable on a majority of the voters,
//! so no crash of a minority can lose it (Raft paper §5.3, §5.4).

use raft::{LogIndex, Role};

use super::{CommittedLog, NodeView, Violation};

/// Checks the highest committed index against the nodes' durable logs.
#[derive(Debug, Default)]
pub struct CommittedDurable;

impl CommittedDurable {
    /// A majority of nodes must hold the committed prefix durably.
    pub fn check(
        &mut self,
        nodes: &[NodeView<'_>],
        committed: &CommittedLog,
    ) -> Result<(), Violation> {
        let index: LogIndex = committed.len();
        if committed.is_empty() {
            return Ok(());
        }
        let chain = committed.chain_at(index);
        let holders = nodes
            .iter()
            .filter(|node| node.durable.chain_at(index) == chain)
            .count();
        if holders * 2 <= nodes.len() {
            let leaders: Vec<String> = nodes
                .iter()
                .filter(|node| node.alive && node.role == Role::Leader)
                .map(|node| node.id.to_string())
                .collect();
            return Err(Violation {
                property: "Committed Entries Are Durable",
                detail: format!(
                    "the entry committed at {index} is durable on only {holders} of {} nodes (leaders: {})",
                    nodes.len(),
                    leaders.join(",")
                ),
            });
        }
        Ok(())
    }
}

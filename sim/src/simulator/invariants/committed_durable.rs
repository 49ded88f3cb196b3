//! Durability: every committed entry is durable on enough voters that every
//! quorum holds it, so no crash of a minority can lose it and no leader
//! without it can be elected (Raft paper §5.3, §5.4). The
//! voters are those of the latest committed configuration: one server
//! apart from the configuration any entry was committed under, and holding
//! the whole committed prefix wherever they hold that configuration's
//! entry.

use raft::{LogIndex, Role};

use super::{CommittedLog, NodeView, Violation};

/// Checks the highest committed index against the nodes' durable logs.
#[derive(Debug, Default)]
pub struct CommittedDurable;

impl CommittedDurable {
    /// Every quorum of the committed configuration's voters must hold the
    /// committed prefix durably.
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
        let voters: Vec<&NodeView<'_>> = nodes
            .iter()
            .filter(|node| {
                committed
                    .voters()
                    .is_none_or(|voters| voters.contains(&node.id))
            })
            .collect();
        let holders = voters
            .iter()
            .filter(|node| node.durable.chain_at(index) == chain)
            .count();
        // Every quorum of the voters must hold it: fewer non-holders than a
        // quorum. (With an even number of voters, half suffices: an entry
        // that the next configuration, one voter larger, committed.)
        let quorum = voters.len() / 2 + 1;
        if voters.len() - holders >= quorum {
            let leaders: Vec<String> = nodes
                .iter()
                .filter(|node| node.alive && node.role == Role::Leader)
                .map(|node| node.id.to_string())
                .collect();
            return Err(Violation {
                property: "Committed Entries Are Durable",
                detail: format!(
                    "the entry committed at {index} is durable on only {holders} of {} voters (leaders: {})",
                    voters.len(),
                    leaders.join(",")
                ),
            });
        }
        Ok(())
    }
}

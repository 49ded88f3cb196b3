//! Log Matching: if two logs contain an entry with the same index and term,
//! then the logs are identical in all entries up through that index (Raft
//! paper, Figure 3). Checked incrementally: every (index, term) ever written
//! anywhere must always come with the same chained hash of its prefix.

use std::collections::HashMap;

use raft::{Entry, LogIndex, NodeId, Term};

use super::Violation;
use crate::simulator::log_view::LogView;

/// The chained hash first seen for every (index, term).
#[derive(Debug, Default)]
pub struct LogMatching {
    // Only looked up, never iterated, so hash order cannot leak into results.
    chain_of: HashMap<(LogIndex, Term), (u64, NodeId)>,
}

impl LogMatching {
    /// Checks the entries just appended to `node`'s log.
    pub fn check(
        &mut self,
        node: NodeId,
        log: &LogView,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        for entry in entries {
            let chain = log.chain_at(entry.index);
            let (first_chain, first_node) = *self
                .chain_of
                .entry((entry.index, entry.term))
                .or_insert((chain, node));
            if first_chain != chain {
                return Err(Violation {
                    property: "Log Matching",
                    detail: format!(
                        "{node} and {first_node} both hold an entry at {} of {} but their logs differ up to it",
                        entry.index, entry.term
                    ),
                });
            }
        }
        Ok(())
    }
}

//! What a run of a local cluster found, printed at the end; its last line
//! is the verdict, `verdict=OK` or `verdict=FAIL <reason>`.

use std::time::Duration;

use super::scale::ChangeReport;
use super::verification::{Convergence, ReadBack};
use super::workload::WriteCounts;

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Cluster size.
    pub nodes: usize,
    /// Puts by outcome.
    pub writes: WriteCounts,
    /// Leaders killed.
    pub kills: usize,
    /// Times leadership passed to a new term, as status polling saw it.
    pub leader_changes: usize,
    /// From each kill of a leader until status polling saw a new one.
    pub election_times: Vec<Duration>,
    /// The stores at the end, when every node agreed.
    pub convergence: Option<Convergence>,
    /// The acknowledged writes read back at the end.
    pub read_back: Option<ReadBack>,
    /// The configuration changes of a `--scale` run.
    pub changes: Vec<ChangeReport>,
    /// Everything that went wrong; empty when the run passed.
    pub failures: Vec<String>,
}

impl Summary {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Records a failure.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.failures.push(reason.into());
    }

    /// The lines to print, the verdict last.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("nodes={}", self.nodes),
            format!(
                "operations ok={} failed={}",
                self.writes.ok, self.writes.failed
            ),
            format!(
                "leader_changes={} leaders_killed={}",
                self.leader_changes, self.kills
            ),
            self.election_line(),
        ];
        lines.extend(self.changes.iter().map(ChangeReport::line));
        if let Some(convergence) = self.convergence {
            lines.push(format!(
                "stores identical: applied_index={} revision={} hash={:#010x}",
                convergence.applied_index, convergence.revision, convergence.hash
            ));
        }
        if let Some(read_back) = self.read_back {
            lines.push(format!(
                "acknowledged writes read back: keys={} (of which {} hold a later put whose answer was lost)",
                read_back.acknowledged_keys, read_back.holding_unacknowledged_value
            ));
        }
        lines.push(self.verdict());
        lines
    }

    fn election_line(&self) -> String {
        let millis: Vec<u128> = self
            .election_times
            .iter()
            .map(Duration::as_millis)
            .collect();
        let (Some(minimum), Some(maximum)) = (millis.iter().min(), millis.iter().max()) else {
            return "election_ms none measured".to_string();
        };
        let average = millis.iter().sum::<u128>() / millis.len() as u128;
        format!(
            "election_ms min={minimum} avg={average} max={maximum} (n={})",
            millis.len()
        )
    }

    /// `verdict=OK`, or `verdict=FAIL` and every reason.
    pub fn verdict(&self) -> String {
        if self.passed() {
            "verdict=OK".to_string()
        } else {
            format!("verdict=FAIL {}", self.failures.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_comes_last_and_names_every_failure() {
        let mut summary = Summary {
            nodes: 3,
            election_times: vec![Duration::from_millis(200), Duration::from_millis(400)],
            ..Summary::default()
        };
        let lines = summary.lines();
        assert_eq!(lines.last().map(String::as_str), Some("verdict=OK"));
        assert!(lines.contains(&"election_ms min=200 avg=300 max=400 (n=2)".to_string()));
        summary.fail("one");
        summary.fail("two");
        assert_eq!(summary.verdict(), "verdict=FAIL one; two");
        assert!(!summary.passed());
    }
}

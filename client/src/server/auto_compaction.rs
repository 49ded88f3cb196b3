//! Automatic compaction, with etcd's flags and rules:
//! `--auto-compaction-mode periodic|revision` and
//! `--auto-compaction-retention` (0, the default, turns it off).
//!
//! - **Periodic** (a duration, in hours when it has no unit: `1`, `30m`,
//!   `5s`): keep that much history. The store's revision is sampled every
//!   tenth of the period (of an hour, for periods over an hour); once a
//!   period has passed, the leader compacts to the revision sampled a period
//!   ago, and again every period (every hour, for periods over an hour).
//! - **Revision** (a number N): every five minutes, the leader compacts to
//!   the current revision minus N, when that moved since the last time.
//!
//! Every member samples, so a member that becomes leader can compact at
//! once; only the leader proposes. A compaction that finds the revision
//! compacted already counts as done. [`Compactor`] holds the rules without
//! a clock (it is told each check), [`run`] drives it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use raft_proto::etcd::etcdserverpb::CompactionRequest;

use crate::kv::Command;
use crate::server::proposer::Proposer;

/// How long the history is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep this much time of history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revisions(i64),
}

/// How often a revision-mode compactor checks.
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);

impl Retention {
    /// Reads etcd's two flags. `None` when compaction is off (a retention
    /// of 0).
    pub fn parse(mode: &str, retention: &str) -> Result<Option<Retention>, String> {
        let retention = retention.trim();
        match mode {
            "periodic" => {
                let period = parse_period(retention)?;
                Ok((!period.is_zero()).then_some(Retention::Periodic(period)))
            }
            "revision" => {
                let revisions: i64 = retention.parse().map_err(|_| {
                    format!(
                        "--auto-compaction-retention {retention:?} is not a number of revisions"
                    )
                })?;
                if revisions < 0 {
                    return Err(format!(
                        "--auto-compaction-retention {revisions} is negative"
                    ));
                }
                Ok((revisions > 0).then_some(Retention::Revisions(revisions)))
            }
            other => Err(format!(
                "--auto-compaction-mode {other:?} is not one of periodic, revision"
            )),
        }
    }

    /// How often the compactor is told the revision.
    pub fn check_interval(self) -> Duration {
        match self {
            Retention::Periodic(period) => period.min(Duration::from_secs(3600)) / 10,
            Retention::Revisions(_) => REVISION_CHECK_INTERVAL,
        }
    }
}

/// A duration as etcd's periodic retention takes it: a number of hours, or
/// a number with a unit (`h`, `m`, `s`, `ms`).
fn parse_period(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("--auto-compaction-retention {text:?} is not a duration (e.g. 1, 1h, 30m, 10s)");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "" | "h" => number * 3600.0,
        "m" => number * 60.0,
        "s" => number,
        "ms" => number / 1000.0,
        _ => return Err(invalid()),
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(invalid());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The rules of one retention, told the store's revision at each check.
#[derive(Debug)]
pub struct Compactor {
    retention: Retention,
    /// Periodic: the revisions sampled, oldest first; the first is the one
    /// a period ago once the window is full.
    samples: VecDeque<i64>,
    /// Periodic: checks since the last compaction (or the start).
    checks_since_compaction: u32,
    /// Periodic: whether the first compaction was made (the first waits a
    /// whole period; later ones the compaction interval).
    compacted_once: bool,
    /// Revision: the last revision compacted to.
    last_target: i64,
}

impl Compactor {
    /// A compactor for `retention`, with nothing sampled.
    pub fn new(retention: Retention) -> Compactor {
        Compactor {
            retention,
            samples: VecDeque::new(),
            checks_since_compaction: 0,
            compacted_once: false,
            last_target: 0,
        }
    }

    /// One check, with the store at `revision`: the revision to compact to
    /// now, if any. Report how it went with [`Compactor::compacted`].
    pub fn check(&mut self, revision: i64) -> Option<i64> {
        match self.retention {
            Retention::Periodic(period) => {
                let window = (period.as_secs_f64() / self.retention.check_interval().as_secs_f64())
                    .round() as usize
                    + 1;
                self.samples.push_back(revision);
                while self.samples.len() > window {
                    self.samples.pop_front();
                }
                self.checks_since_compaction += 1;
                // The first compaction waits a whole period (ten checks of
                // an hour's tenth past an hour); later ones ten checks.
                let wait = if self.compacted_once {
                    10
                } else {
                    window as u32 - 1
                };
                (self.checks_since_compaction >= wait).then(|| self.samples[0])
            }
            Retention::Revisions(keep) => {
                let target = revision - keep;
                (target > 0 && target != self.last_target).then_some(target)
            }
        }
    }

    /// The compaction to `revision` that [`Compactor::check`] asked for is
    /// done (or was done already).
    pub fn compacted(&mut self, revision: i64) {
        self.checks_since_compaction = 0;
        self.compacted_once = true;
        self.last_target = revision;
    }
}

/// Runs the compactor of `retention` for this member until the process
/// ends: checks at its interval, and proposes compactions while this
/// member leads.
pub async fn run(proposer: Arc<Proposer>, retention: Retention) {
    let node = proposer.context().node.clone();
    let mut compactor = Compactor::new(retention);
    let mut checks = tokio::time::interval(retention.check_interval());
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    checks.tick().await;
    loop {
        checks.tick().await;
        let revision = node.read_local(|state| state.store.revision());
        let Some(target) = compactor.check(revision) else {
            continue;
        };
        if node.status().leader != Some(node.options().id) {
            continue;
        }
        let request = CompactionRequest {
            revision: target,
            physical: false,
        };
        match proposer.write_own(Command::Compact(request)).await {
            Ok(_) => {
                tracing::info!(revision = target, ?retention, "automatic compaction");
                compactor.compacted(target);
            }
            Err(status) if status.message().contains("has been compacted") => {
                compactor.compacted(target);
            }
            Err(status) => {
                tracing::warn!(revision = target, %status, "automatic compaction failed; retrying at the next check");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_read_as_etcd_reads_them() {
        let periodic = |text: &str| Retention::parse("periodic", text);
        assert_eq!(periodic("0"), Ok(None));
        assert_eq!(
            periodic("1"),
            Ok(Some(Retention::Periodic(Duration::from_secs(3600))))
        );
        assert_eq!(
            periodic("30m"),
            Ok(Some(Retention::Periodic(Duration::from_secs(1800))))
        );
        assert_eq!(
            periodic("5s"),
            Ok(Some(Retention::Periodic(Duration::from_secs(5))))
        );
        assert!(periodic("soon").is_err());
        assert!(periodic("5d").is_err());
        assert_eq!(
            Retention::parse("revision", "1000"),
            Ok(Some(Retention::Revisions(1000)))
        );
        assert_eq!(Retention::parse("revision", "0"), Ok(None));
        assert!(Retention::parse("revision", "1h").is_err());
        assert!(Retention::parse("revision", "-3").is_err());
        assert!(Retention::parse("hourly", "1").is_err());
    }

    #[test]
    fn checks_come_every_tenth_of_the_period_up_to_an_hour() {
        let interval = |retention| Retention::check_interval(retention);
        assert_eq!(
            interval(Retention::Periodic(Duration::from_secs(50))),
            Duration::from_secs(5)
        );
        assert_eq!(
            interval(Retention::Periodic(Duration::from_secs(72 * 3600))),
            Duration::from_secs(360)
        );
        assert_eq!(interval(Retention::Revisions(10)), REVISION_CHECK_INTERVAL);
    }

    #[test]
    fn periodic_compacts_to_the_revision_of_a_period_ago() {
        // A 10 s period: checks every second, the first compaction after
        // ten checks, to the revision sampled at the start.
        let mut compactor = Compactor::new(Retention::Periodic(Duration::from_secs(10)));
        let mut decisions = Vec::new();
        for second in 1..=25 {
            let revision = 100 + second;
            let decision = compactor.check(revision);
            if let Some(target) = decision {
                compactor.compacted(target);
            }
            decisions.push(decision);
        }
        let compactions: Vec<(usize, i64)> = decisions
            .iter()
            .enumerate()
            .filter_map(|(check, decision)| decision.map(|target| (check + 1, target)))
            .collect();
        assert_eq!(compactions, vec![(10, 101), (20, 110)]);
    }

    #[test]
    fn a_failed_periodic_compaction_is_retried_at_the_next_check() {
        let mut compactor = Compactor::new(Retention::Periodic(Duration::from_secs(10)));
        for revision in 1..10 {
            assert_eq!(compactor.check(revision), None);
        }
        assert_eq!(compactor.check(10), Some(1));
        // Not reported done: asked again, with the window moved on.
        assert_eq!(compactor.check(11), Some(1));
        compactor.compacted(1);
        assert_eq!(compactor.check(12), None);
    }

    #[test]
    fn revision_mode_keeps_the_last_revisions() {
        let mut compactor = Compactor::new(Retention::Revisions(100));
        assert_eq!(compactor.check(50), None, "nothing to drop yet");
        assert_eq!(compactor.check(150), Some(50));
        compactor.compacted(50);
        assert_eq!(compactor.check(150), None, "no new revision");
        assert_eq!(compactor.check(151), Some(51));
    }
}

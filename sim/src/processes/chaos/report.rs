//! What a chaos run found, and the files a failing run leaves behind.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::nemesis::FaultCounts;
use super::network::NetworkMode;
use super::runner::ChaosError;
use super::watch_checks::WatcherLog;
use crate::linearizability::Operation;

/// What a run found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    /// Where the nodes lived.
    pub network: Option<NetworkMode>,
    /// Workload operations (final reads not included).
    pub operations: u64,
    /// Of those, answered.
    pub ok: u64,
    /// Writes and compare-and-sets with no answer: they may have happened.
    pub indeterminate: u64,
    /// Reads with no answer (they have no effect).
    pub failed_reads: u64,
    /// Compare-and-sets answered, and of those the ones that swapped.
    pub cas_answered: u64,
    /// See [`ChaosReport::cas_answered`].
    pub cas_succeeded: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Registers used.
    pub keys: u64,
    /// Watchers that followed the run.
    pub watchers: u64,
    /// Events the watchers were told, over all of them.
    pub watch_events: u64,
    /// Times a watcher's stream broke and was opened again.
    pub watch_reconnects: u64,
    /// Of the violations, the watchers' (events missed, repeated, out of
    /// order or wrong, watchers that never caught up).
    pub watch_violations: u64,
    /// Keys whose history has no linearization, wrong answers, nodes that
    /// died on their own, members that did not converge.
    pub violations: u64,
    /// Keys the checker gave up on (neither proven good nor bad).
    pub undecided: u64,
    /// What the violations and undecided keys were.
    pub problems: Vec<String>,
    /// The applied index, revision and digest every member agreed on.
    pub converged: Option<(u64, i64, u32)>,
    /// The run's folder, when kept.
    pub kept_folder: Option<PathBuf>,
}

impl ChaosReport {
    /// Whether every check passed and every key was decided.
    pub fn passed(&self) -> bool {
        self.violations == 0 && self.undecided == 0
    }

    /// The summary line: `ops=.. ok=.. indeterminate=.. faults=.. keys=..
    /// watchers=.. watch_events=.. violations=..`.
    pub fn last_line(&self) -> String {
        format!(
            "ops={} ok={} indeterminate={} faults={} keys={} watchers={} watch_events={} violations={}",
            self.operations,
            self.ok,
            self.indeterminate,
            self.faults.total(),
            self.keys,
            self.watchers,
            self.watch_events,
            self.violations
        )
    }
}

/// The watchers' logs, one event or reconnection a line.
fn watch_text(watches: &[WatcherLog]) -> String {
    let mut text = String::from(
        "# per watcher: its prefix and span, then one event a line: revision key value\n\
         # (value None: a delete), and 'reconnect from <revision>: <why>' where it reconnected\n",
    );
    for log in watches {
        let _ = writeln!(
            text,
            "watcher {} member {} prefix {:?} from {} told up to {}",
            log.watcher,
            log.member,
            String::from_utf8_lossy(&log.prefix),
            log.start_revision,
            log.covered_up_to()
        );
        for event in &log.events {
            let _ = writeln!(text, "{} {} {:?}", event.revision, event.key, event.value);
        }
        for reconnect in &log.reconnects {
            let _ = writeln!(
                text,
                "reconnect from {}: {}",
                reconnect.from_revision, reconnect.reason
            );
        }
    }
    text
}

/// Writes the history, the watchers' logs, the fault timeline and the report into `folder`,
/// beside the members' logs.
pub(super) fn save(
    folder: &Path,
    history: &[Operation],
    watches: &[WatcherLog],
    timeline: &[String],
    report: &ChaosReport,
) -> Result<(), ChaosError> {
    let write = |name: &str, text: String| {
        std::fs::write(folder.join(name), text).map_err(|source| ChaosError::Io {
            action: format!("write {}", folder.join(name).display()),
            source,
        })
    };
    let mut text = String::from(
        "# one operation per line: client key input call_ns completion_ns output\n\
         # (completion '-' means no answer; client 18446744073709551615 is the final read)\n",
    );
    let mut sorted: Vec<&Operation> = history.iter().collect();
    sorted.sort_by_key(|operation| (operation.key, operation.call_time));
    for operation in sorted {
        let (completion, output) = match operation.completion {
            Some((time, output)) => (time.to_string(), format!("{output:?}")),
            None => ("-".to_string(), "-".to_string()),
        };
        let _ = writeln!(
            text,
            "{} {} {:?} {} {completion} {output}",
            operation.client, operation.key, operation.input, operation.call_time
        );
    }
    write("history.txt", text)?;
    write("watches.txt", watch_text(watches))?;
    write("faults.txt", timeline.join("\n") + "\n")?;
    let mut summary = report.problems.join("\n\n");
    summary.push('\n');
    summary.push_str(&report.last_line());
    summary.push('\n');
    write("report.txt", summary)
}

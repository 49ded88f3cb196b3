//! The check of what the chaos run's watchers were told, against the
//! writes the clients attempted: the properties etcd's robustness tests
//! check of a watch.
//!
//! For each watcher:
//! - its events come in revision order, and no (revision, key) twice;
//! - each event is a write some client attempted (answered or not) on
//!   that key with that value, at the revision its answer named if it was
//!   answered;
//! - nothing is missing: every write known to have happened (answered,
//!   or seen by any watcher) on a key of its prefix, at a revision between
//!   its start and the last revision it was told everything up to, is in
//!   its log with the same value;
//! - once told everything up to the final revision, the last value it saw
//!   of each key is the one the final read returned.
//!
//! And for the writes together: their revisions agree with real time (a
//! write answered before another was called has the smaller revision), and
//! no write shows up at two revisions.
//!
//! The function is pure: the watchers' logs are gathered by
//! [`watchers`](super::watchers) and handed in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::workload::etcd_key;
use crate::linearizability::{Key, KvInput, KvOutput, Operation};

/// One event a watcher was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The revision of the change.
    pub revision: i64,
    /// The register changed.
    pub key: Key,
    /// The value it was given; `None` for a delete.
    pub value: Option<u64>,
}

/// Where a watcher's stream broke and it started again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconnect {
    /// The revision the new stream started from.
    pub from_revision: i64,
    /// Why the old stream ended.
    pub reason: String,
}

/// What one watcher was told, in the order it was told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatcherLog {
    /// The watcher's number in the run.
    pub watcher: usize,
    /// The member it watched through.
    pub member: u64,
    /// The etcd key prefix it watched.
    pub prefix: Vec<u8>,
    /// The first revision it asked for.
    pub start_revision: i64,
    /// Its events.
    pub events: Vec<WatchEvent>,
    /// The highest revision a progress answer said it had been told
    /// everything up to (0: none).
    pub told_up_to: i64,
    /// Where it reconnected.
    pub reconnects: Vec<Reconnect>,
    /// What went wrong in the watcher itself (an event no client could
    /// have written, a cancelled watch, never catching up); each is a
    /// violation.
    pub problems: Vec<String>,
}

impl WatcherLog {
    /// The last revision the watcher is known to have been told everything
    /// up to: events come in revision order, a revision's events together.
    pub fn covered_up_to(&self) -> i64 {
        let last_event = self.events.iter().map(|event| event.revision).max();
        self.told_up_to.max(last_event.unwrap_or(0))
    }

    /// Whether `key` is in the watcher's prefix.
    pub fn covers(&self, key: Key) -> bool {
        etcd_key(key).starts_with(&self.prefix)
    }

    /// Where `event` is in this watcher's log, for a violation.
    fn place(&self, event: &WatchEvent) -> String {
        format!(
            "{}: key {} at revision {}",
            self.name(),
            event.key,
            event.revision
        )
    }

    fn name(&self) -> String {
        format!(
            "watcher {} (member {}, prefix {:?})",
            self.watcher,
            self.member,
            String::from_utf8_lossy(&self.prefix)
        )
    }
}

/// A write some client attempted: a put, or a compare-and-set that was
/// not answered "no swap".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptedWrite {
    /// The register written.
    pub key: Key,
    /// The value written (unique in the run).
    pub value: u64,
    /// When it was called.
    pub call_time: u64,
    /// When it was answered, if it was: then it happened.
    pub completion_time: Option<u64>,
    /// The revision its answer named.
    pub revision: Option<i64>,
}

/// The writes of `history`, with the revisions of the answered ones
/// (`revisions`: revision by value written).
pub fn attempted_writes(
    history: &[Operation],
    revisions: &BTreeMap<u64, i64>,
) -> Vec<AttemptedWrite> {
    history
        .iter()
        .filter_map(|operation| {
            let value = match (operation.input, operation.completion) {
                (KvInput::Put { value }, _) => value,
                (KvInput::Cas { new, .. }, None) => new,
                (KvInput::Cas { new, .. }, Some((_, KvOutput::Cas { succeeded: true }))) => new,
                _ => return None,
            };
            let completion_time = operation.completion.map(|(time, _)| time);
            Some(AttemptedWrite {
                key: operation.key,
                value,
                call_time: operation.call_time,
                completion_time,
                revision: completion_time.and(revisions.get(&value).copied()),
            })
        })
        .collect()
}

/// What the final reads returned, after every write.
#[derive(Clone, Debug, Default)]
pub struct FinalState {
    /// The store's revision when they were made.
    pub revision: Option<i64>,
    /// Each register's value.
    pub values: BTreeMap<Key, Option<u64>>,
}

/// What [`check_watches`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchVerdict {
    /// Events looked at, over every watcher.
    pub events_checked: u64,
    /// One line per violation, naming the watcher, key and revision.
    pub violations: Vec<String>,
}

/// Checks every watcher's log against the attempted writes and the final
/// reads.
pub fn check_watches(
    writes: &[AttemptedWrite],
    logs: &[WatcherLog],
    final_state: &FinalState,
) -> WatchVerdict {
    let mut verdict = WatchVerdict::default();
    let by_value: HashMap<u64, &AttemptedWrite> =
        writes.iter().map(|write| (write.value, write)).collect();
    for log in logs {
        verdict.events_checked += log.events.len() as u64;
        check_order(log, &mut verdict.violations);
        for event in &log.events {
            if let Err(reason) = matches_a_write(event, &by_value) {
                verdict
                    .violations
                    .push(format!("{}: {reason}", log.place(event)));
            }
        }
    }
    let happened = happened(writes, logs, &mut verdict.violations);
    for log in logs {
        check_complete(log, &happened, &mut verdict.violations);
        check_final_values(log, final_state, &mut verdict.violations);
    }
    check_real_time(writes, &happened, &mut verdict.violations);
    verdict
}

/// Revisions never go back, and no (revision, key) comes twice.
fn check_order(log: &WatcherLog, violations: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    let mut previous = log.start_revision;
    for event in &log.events {
        let place = log.place(event);
        if event.revision < previous {
            violations.push(format!("{place}: out of order, after revision {previous}"));
        }
        previous = previous.max(event.revision);
        if !seen.insert((event.revision, event.key)) {
            violations.push(format!("{place}: told twice"));
        }
        if !log.covers(event.key) {
            violations.push(format!("{place}: outside the watched prefix"));
        }
    }
}

/// Whether `event` is a write some client attempted, at the revision its
/// answer named.
fn matches_a_write(
    event: &WatchEvent,
    by_value: &HashMap<u64, &AttemptedWrite>,
) -> Result<(), String> {
    let Some(value) = event.value else {
        return Err("a delete, and no client deletes".to_string());
    };
    let Some(write) = by_value.get(&value) else {
        return Err(format!("value {value}, which no client wrote"));
    };
    if write.key != event.key {
        return Err(format!(
            "value {value}, which was written to key {}",
            write.key
        ));
    }
    match write.revision {
        Some(revision) if revision != event.revision => Err(format!(
            "value {value}, whose write was answered with revision {revision}"
        )),
        _ => Ok(()),
    }
}

/// Every write known to have happened, by (revision, key): the answered
/// ones and the ones any watcher saw. Watchers that disagree on a
/// (revision, key), or put a value at two revisions, are violations.
fn happened(
    writes: &[AttemptedWrite],
    logs: &[WatcherLog],
    violations: &mut Vec<String>,
) -> BTreeMap<(i64, Key), Option<u64>> {
    let mut happened: BTreeMap<(i64, Key), Option<u64>> = writes
        .iter()
        .filter_map(|write| Some(((write.revision?, write.key), Some(write.value))))
        .collect();
    let mut revision_of_value: HashMap<u64, i64> = writes
        .iter()
        .filter_map(|write| Some((write.value, write.revision?)))
        .collect();
    for log in logs {
        for event in &log.events {
            let place = log.place(event);
            let known = *happened
                .entry((event.revision, event.key))
                .or_insert(event.value);
            if known != event.value {
                violations.push(format!(
                    "{place}: value {:?}, where another watcher or the write's answer says {known:?}",
                    event.value
                ));
            }
            if let Some(value) = event.value {
                let revision = *revision_of_value.entry(value).or_insert(event.revision);
                if revision != event.revision {
                    violations.push(format!(
                        "{place}: value {value}, which another watcher saw at revision {revision}"
                    ));
                }
            }
        }
    }
    happened
}

/// Every write that happened on the watcher's prefix within its span is in
/// its log.
fn check_complete(
    log: &WatcherLog,
    happened: &BTreeMap<(i64, Key), Option<u64>>,
    violations: &mut Vec<String>,
) {
    let covered = log.covered_up_to();
    if covered < log.start_revision {
        return;
    }
    let seen: BTreeSet<(i64, Key)> = log
        .events
        .iter()
        .map(|event| (event.revision, event.key))
        .collect();
    let span = (log.start_revision, Key::MIN)..=(covered, Key::MAX);
    for (&(revision, key), value) in happened.range(span) {
        if log.covers(key) && !seen.contains(&(revision, key)) {
            violations.push(format!(
                "{}: key {key} at revision {revision}: missed (value {value:?}), though told everything from {} to {covered}",
                log.name(),
                log.start_revision
            ));
        }
    }
}

/// A watcher told everything up to the final revision ends on the values
/// the final reads returned.
fn check_final_values(log: &WatcherLog, final_state: &FinalState, violations: &mut Vec<String>) {
    let Some(final_revision) = final_state.revision else {
        return;
    };
    if log.covered_up_to() < final_revision || log.start_revision > 1 {
        return;
    }
    let mut last: BTreeMap<Key, (i64, Option<u64>)> = BTreeMap::new();
    for event in &log.events {
        last.insert(event.key, (event.revision, event.value));
    }
    for (&key, &value) in &final_state.values {
        let (revision, seen) = last.get(&key).copied().unwrap_or((0, None));
        if log.covers(key) && seen != value {
            violations.push(format!(
                "{}: key {key} at revision {revision}: last saw {seen:?}, but the final read at revision {final_revision} returned {value:?}",
                log.name()
            ));
        }
    }
}

/// A write answered before another was called has the smaller revision.
fn check_real_time(
    writes: &[AttemptedWrite],
    happened: &BTreeMap<(i64, Key), Option<u64>>,
    violations: &mut Vec<String>,
) {
    let revision_of_value: HashMap<u64, i64> = happened
        .iter()
        .filter_map(|(&(revision, _), value)| Some(((*value)?, revision)))
        .collect();
    let with_revision: Vec<(&AttemptedWrite, i64)> = writes
        .iter()
        .filter_map(|write| Some((write, *revision_of_value.get(&write.value)?)))
        .collect();
    let mut by_completion: Vec<(u64, i64, &AttemptedWrite)> = with_revision
        .iter()
        .filter_map(|&(write, revision)| Some((write.completion_time?, revision, write)))
        .collect();
    by_completion.sort_by_key(|&(time, revision, _)| (time, revision));
    let mut by_call = with_revision;
    by_call.sort_by_key(|&(write, _)| write.call_time);
    let mut completed = by_completion.iter().peekable();
    let mut latest: Option<(i64, &AttemptedWrite)> = None;
    for (write, revision) in by_call {
        while let Some(&&(time, earlier_revision, earlier)) = completed.peek() {
            if time >= write.call_time {
                break;
            }
            if latest.is_none_or(|(highest, _)| earlier_revision > highest) {
                latest = Some((earlier_revision, earlier));
            }
            completed.next();
        }
        if let Some((earlier_revision, earlier)) = latest {
            if earlier_revision >= revision {
                violations.push(format!(
                    "key {} at revision {revision}: value {} was written after key {}'s value {} was answered at revision {earlier_revision}",
                    write.key, write.value, earlier.key, earlier.value
                ));
            }
        }
    }
}

#[cfg(test)]
#[path = "watch_checks_tests.rs"]
mod tests;

//! Pauses that put a node at risk, measured and told to operators, as etcd
//! tells them: an event loop that handles its clock late, a leader's
//! heartbeat that goes out late, a slow fdatasync, a slow apply.
//!
//! A leader whose heartbeats are late by an election timeout loses its
//! followers; before that, each of these shows as a histogram and, past a
//! threshold, as a warning that says how late and the likely cause, and as
//! `raft_stalls{kind}`. The event loop owns a [`StallWatch`]; the WAL's sync
//! observer and the applier share its [`StallReporter`]. Times come in as
//! arguments, so the rules are tested without a clock.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metrics::{NodeMetrics, StallLabels};
use crate::types::{NodeId, Term};

/// etcd's threshold for a slow fdatasync ("slow fdatasync").
pub(crate) const SLOW_FDATASYNC: Duration = Duration::from_secs(1);

/// etcd's threshold for a slow apply ("apply request took too long").
pub(crate) const SLOW_APPLY: Duration = Duration::from_millis(100);

/// The same kind of warning is logged at most once in this long (each one
/// is counted).
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What was late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StallKind {
    /// The event loop handled a tick of its clock late.
    EventLoopLate,
    /// A leader sent a heartbeat round to a peer late.
    HeartbeatLate,
    /// One fdatasync of the WAL took long.
    SlowFdatasync,
    /// The state machine took long to apply a batch of entries.
    SlowApply,
}

impl StallKind {
    const ALL: [StallKind; 4] = [
        StallKind::EventLoopLate,
        StallKind::HeartbeatLate,
        StallKind::SlowFdatasync,
        StallKind::SlowApply,
    ];

    /// The `kind` label of `raft_stalls`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            StallKind::EventLoopLate => "event_loop_late",
            StallKind::HeartbeatLate => "heartbeat_late",
            StallKind::SlowFdatasync => "slow_fdatasync",
            StallKind::SlowApply => "slow_apply",
        }
    }

    fn position(self) -> usize {
        StallKind::ALL
            .iter()
            .position(|kind| *kind == self)
            .unwrap_or(0)
    }
}

/// One pause past its threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stall {
    pub(crate) kind: StallKind,
    /// How long it took, or how late it was.
    pub(crate) took: Duration,
    /// The threshold it passed.
    pub(crate) expected: Duration,
    /// The likely cause, or what it concerned.
    pub(crate) detail: String,
}

impl fmt::Display for Stall {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (took, expected) = (self.took, self.expected);
        match self.kind {
            StallKind::EventLoopLate => write!(
                formatter,
                "the event loop handled its clock {took:?} late (warns above {expected:?}): {}",
                self.detail
            ),
            StallKind::HeartbeatLate => write!(
                formatter,
                "leader failed to send out heartbeat on time: {took:?} later than its interval \
                 (warns above {expected:?}, half an election timeout); {}",
                self.detail
            ),
            StallKind::SlowFdatasync => write!(
                formatter,
                "slow fdatasync: took {took:?}, expected under {expected:?}"
            ),
            StallKind::SlowApply => write!(
                formatter,
                "apply request took too long: {took:?}, expected under {expected:?} ({})",
                self.detail
            ),
        }
    }
}

/// Counts stalls, logs them (at most one of a kind a second) and remembers
/// the slowest recent fdatasync, for the heartbeat warning's cause. Shared
/// by the event loop, the WAL writer's thread and the applier's.
#[derive(Debug)]
pub(crate) struct StallReporter {
    metrics: Arc<NodeMetrics>,
    /// When each kind was last logged, in microseconds after `origin`
    /// (plus one, so that 0 means never).
    last_logged: [AtomicU64; 4],
    origin: Instant,
    /// The slowest fdatasync since the event loop last asked, in µs.
    slowest_sync: AtomicU64,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl StallReporter {
    pub(crate) fn new(metrics: Arc<NodeMetrics>) -> StallReporter {
        StallReporter {
            metrics,
            last_logged: Default::default(),
            origin: Instant::now(),
            slowest_sync: AtomicU64::new(0),
        }
    }

    /// Counts `stall` and logs it unless one of its kind was logged in the
    /// last second.
    pub(crate) fn report(&self, stall: Stall, now: Instant) -> Stall {
        let labels = StallLabels {
            kind: stall.kind.label().to_owned(),
        };
        self.metrics.stalls.get_or_create(&labels).inc();
        let at = micros(now.saturating_duration_since(self.origin)).saturating_add(1);
        let last = &self.last_logged[stall.kind.position()];
        let previous = last.load(Ordering::Relaxed);
        let due = previous == 0 || at.saturating_sub(previous) >= micros(LOG_EVERY);
        if due
            && last
                .compare_exchange(previous, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(kind = stall.kind.label(), "{stall}");
        }
        stall
    }

    /// One fdatasync of the WAL took `took`.
    pub(crate) fn fdatasync(&self, took: Duration, now: Instant) -> Option<Stall> {
        self.slowest_sync.fetch_max(micros(took), Ordering::Relaxed);
        (took > SLOW_FDATASYNC).then(|| {
            let stall = Stall {
                kind: StallKind::SlowFdatasync,
                took,
                expected: SLOW_FDATASYNC,
                detail: String::new(),
            };
            self.report(stall, now)
        })
    }

    /// The state machine applied `entries` entries in `took`.
    pub(crate) fn applied(&self, entries: usize, took: Duration, now: Instant) -> Option<Stall> {
        let seconds = took.as_secs_f64();
        self.metrics.apply_duration_seconds.observe(seconds);
        (took > SLOW_APPLY).then(|| {
            let stall = Stall {
                kind: StallKind::SlowApply,
                took,
                expected: SLOW_APPLY,
                detail: format!("{entries} entries in one batch"),
            };
            self.report(stall, now)
        })
    }

    /// The slowest fdatasync since the last call.
    fn take_slowest_sync(&self) -> Duration {
        Duration::from_micros(self.slowest_sync.swap(0, Ordering::Relaxed))
    }
}

/// The event loop's side: how late its clock and its heartbeats are.
#[derive(Debug)]
pub(crate) struct StallWatch {
    reporter: Arc<StallReporter>,
    heartbeat_interval: Duration,
    /// Half the shortest election timeout: later than this warns.
    late: Duration,
    /// The leader's term these heartbeats belong to, and when the last
    /// round went to each peer.
    heartbeats: (Term, BTreeMap<NodeId, Instant>),
    /// The latest lateness of the clock, for the heartbeat warning's cause.
    last_lag: Duration,
}

impl StallWatch {
    /// For a node whose tick lasts `tick`, with heartbeats every
    /// `heartbeat_ticks` and election timeouts from `election_ticks_min`.
    pub(crate) fn new(
        reporter: Arc<StallReporter>,
        tick: Duration,
        heartbeat_ticks: u32,
        election_ticks_min: u32,
    ) -> StallWatch {
        StallWatch {
            reporter,
            heartbeat_interval: tick.saturating_mul(heartbeat_ticks),
            late: tick.saturating_mul(election_ticks_min) / 2,
            heartbeats: (Term(0), BTreeMap::new()),
            last_lag: Duration::ZERO,
        }
    }

    /// The tick due at `due` was handled at `now`.
    pub(crate) fn tick_handled(&mut self, due: Instant, now: Instant) -> Option<Stall> {
        let lag = now.saturating_duration_since(due);
        let metrics = &self.reporter.metrics;
        metrics.event_loop_lag_seconds.observe(lag.as_secs_f64());
        self.last_lag = lag;
        (lag > self.late).then(|| {
            let stall = Stall {
                kind: StallKind::EventLoopLate,
                took: lag,
                expected: self.late,
                detail: "the process was not scheduled or the loop was busy (an overloaded \
                         CPU, a paused process, or work that blocks the runtime)"
                    .into(),
            };
            self.reporter.report(stall, now)
        })
    }

    /// A leader of `term` sent `to` a new heartbeat round at `now`.
    pub(crate) fn heartbeat_sent(&mut self, to: NodeId, term: Term, now: Instant) -> Option<Stall> {
        if self.heartbeats.0 != term {
            self.heartbeats = (term, BTreeMap::new());
        }
        let previous = self.heartbeats.1.insert(to, now)?;
        let delay = now
            .saturating_duration_since(previous)
            .saturating_sub(self.heartbeat_interval);
        let metrics = &self.reporter.metrics;
        metrics.heartbeat_delay_seconds.observe(delay.as_secs_f64());
        if delay <= self.late {
            return None;
        }
        let slowest_sync = self.reporter.take_slowest_sync();
        let cause = if slowest_sync > self.heartbeat_interval {
            format!("likely a slow disk: an fdatasync took {slowest_sync:?}")
        } else {
            format!(
                "likely an overloaded CPU: the event loop last handled its clock {:?} late",
                self.last_lag
            )
        };
        let stall = Stall {
            kind: StallKind::HeartbeatLate,
            took: delay,
            expected: self.late,
            detail: format!("to {to}, {cause}"),
        };
        Some(self.reporter.report(stall, now))
    }
}

#[cfg(test)]
#[path = "stalls_tests.rs"]
mod tests;

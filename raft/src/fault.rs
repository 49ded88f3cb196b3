//! Panics injected on purpose, so that tests can check that a node whose
//! thread fails stops whole instead of lingering half-dead with its port
//! open.
//!
//! Set `RUSTYRAFT_INJECT_PANIC` to one of `event_loop`, `applier`,
//! `wal_writer` or `snapshot_writer` in a node's environment: that part
//! panics at its first piece of work after the node's first client write
//! (the event loop when it steps that proposal, the applier when it applies
//! it, the WAL writer when it writes the batch after it, the snapshot
//! writer when it saves the first snapshot after it). `wal_io_error` makes
//! the WAL's next batch fail with an I/O error instead, as a full or
//! failing disk would. Without the variable nothing happens; the cost is
//! one load of a flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The environment variable that names the part to fail.
pub const INJECT_PANIC_VARIABLE: &str = "RUSTYRAFT_INJECT_PANIC";

/// A part of a node that a test may make panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultPoint {
    EventLoop,
    Applier,
    WalWriter,
    /// Not a panic: the WAL writer's next batch fails with an I/O error.
    WalIoError,
    SnapshotWriter,
}

impl FaultPoint {
    fn name(self) -> &'static str {
        match self {
            FaultPoint::EventLoop => "event_loop",
            FaultPoint::Applier => "applier",
            FaultPoint::WalWriter => "wal_writer",
            FaultPoint::WalIoError => "wal_io_error",
            FaultPoint::SnapshotWriter => "snapshot_writer",
        }
    }
}

/// Whether a client write has been stepped since the process started.
static ARMED: AtomicBool = AtomicBool::new(false);

fn injected() -> Option<&'static str> {
    static INJECTED: OnceLock<Option<String>> = OnceLock::new();
    INJECTED
        .get_or_init(|| std::env::var(INJECT_PANIC_VARIABLE).ok())
        .as_deref()
}

/// Notes the node's first client write: from now on, injected panics fire.
pub(crate) fn arm() {
    if injected().is_some() {
        ARMED.store(true, Ordering::Release);
    }
}

/// An I/O error if the environment names `point` and the node has seen a
/// client write.
pub(crate) fn io_error_if_injected(point: FaultPoint) -> std::io::Result<()> {
    if ARMED.load(Ordering::Acquire) && injected() == Some(point.name()) {
        return Err(std::io::Error::other(format!(
            "injected I/O error in the {} ({INJECT_PANIC_VARIABLE})",
            point.name()
        )));
    }
    Ok(())
}

/// Panics if the environment names `point` and the node has seen a client
/// write.
pub(crate) fn panic_if_injected(point: FaultPoint) {
    if ARMED.load(Ordering::Acquire) && injected() == Some(point.name()) {
        panic!(
            "injected panic in the {} ({INJECT_PANIC_VARIABLE})",
            point.name()
        );
    }
}

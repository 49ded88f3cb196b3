//! A harness for end-to-end tests: clusters of real `raft_client run`
//! processes on free 127.0.0.1 ports, each with a temporary data directory
//! and a log file, killed when the test ends (or panics).

#![allow(dead_code)] // Each test module uses its own part of the harness.

pub mod cluster;
pub mod process;
pub mod requests;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long a bounded wait lasts before the test fails. Generous: the
/// machine may be busy with other builds; a healthy wait ends far sooner.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often a bounded wait polls.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `check` until it returns `Ok`, for at most [`PATIENCE`]; panics
/// with the last `Err` (saying what was awaited) if it never does.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {PATIENCE:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

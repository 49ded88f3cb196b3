//! Refused peer messages, logged without flooding the log: a flood of bad
//! messages is the point of some attacks, and a log that fills the disk
//! would finish their work.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// At most one line per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Logs refused messages at most once per [`LOG_INTERVAL`], each line
/// saying how many were refused since the last.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    /// Notes that a message was refused for `reason` (a metric label) at
    /// `now`, `detail` saying what and from whom; returns whether a line
    /// was logged.
    pub(crate) fn refused(&mut self, reason: &str, detail: impl Display, now: Instant) -> bool {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            return false;
        }
        tracing::warn!(
            reason,
            refused_since_last_line = self.unlogged,
            "refused: {detail}; it changed nothing (raft_peer_messages_refused counts them all)"
        );
        self.unlogged = 0;
        self.last_logged = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_however_many_are_refused() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        assert!(log.refused("term_too_large", "a message from n2", start));
        for offset in 1..1_000 {
            let now = start + Duration::from_micros(offset);
            assert!(!log.refused("term_too_large", "a message from n2", now));
        }
        assert_eq!(log.unlogged, 999);
        assert!(log.refused("wrong_cluster", "a message from n3", start + LOG_INTERVAL));
        assert_eq!(log.unlogged, 0);
    }
}

//! Refused peer messages, logged without flooding the log: a flood of bad
//! messages is the point of some attacks, and a log that fills the disk
//! would finish their work.

use std::time::{Duration, Instant};

use crate::core::validation::Refusal;
use crate::types::NodeId;

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
    /// Notes that a message from `from` was refused for `refusal` at `now`;
    /// returns whether a line was logged.
    pub(crate) fn refused(&mut self, from: NodeId, refusal: Refusal, now: Instant) -> bool {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            return false;
        }
        tracing::warn!(%from, reason = refusal.reason(), refused = self.unlogged,
            "refused peer messages that break the protocol (a faulty or forged peer); \
             they changed nothing (see raft_peer_messages_refused)");
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
        assert!(log.refused(NodeId(2), Refusal::TermTooLarge, start));
        for offset in 1..1_000 {
            let now = start + Duration::from_micros(offset);
            assert!(!log.refused(NodeId(2), Refusal::TermTooLarge, now));
        }
        assert_eq!(log.unlogged, 999);
        assert!(log.refused(NodeId(3), Refusal::MatchPastLog, start + LOG_INTERVAL));
        assert_eq!(log.unlogged, 0);
    }
}

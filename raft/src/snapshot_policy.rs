//! When a driver takes snapshots, and how it sends them.
//!
//! This is not part of [`crate::Config`]: the core never decides to take a
//! snapshot (the driver does, and tells it with
//! [`crate::Input::SnapshotTaken`]), nor sees how one travels.

use crate::error::ConfigError;
use crate::storage::snapshot::DEFAULT_CHUNK_SIZE_BYTES;
use crate::types::LogIndex;

/// The largest chunk a policy allows: both ends hold a chunk in memory,
/// and a transport limits its message size.
pub const MAX_CHUNK_SIZE_BYTES: usize = 64 << 20;

/// When to snapshot the state machine and in what pieces to send a
/// snapshot to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Take a snapshot once this many entries were applied since the last
    /// one. Larger: less snapshot I/O, a longer log to keep and replay.
    /// Default 10,000.
    pub interval_entries: u64,
    /// The size of the chunks a snapshot is sent in. Default 1 MiB; at most
    /// [`MAX_CHUNK_SIZE_BYTES`].
    pub chunk_size_bytes: usize,
}

impl Default for SnapshotPolicy {
    fn default() -> SnapshotPolicy {
        SnapshotPolicy {
            interval_entries: 10_000,
            chunk_size_bytes: DEFAULT_CHUNK_SIZE_BYTES,
        }
    }
}

impl SnapshotPolicy {
    /// Checks that the policy can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval_entries == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "interval_entries",
            });
        }
        if self.chunk_size_bytes == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "chunk_size_bytes",
            });
        }
        if self.chunk_size_bytes > MAX_CHUNK_SIZE_BYTES {
            return Err(ConfigError::TooLarge {
                field: "chunk_size_bytes",
                value: self.chunk_size_bytes as u64,
                max: MAX_CHUNK_SIZE_BYTES as u64,
            });
        }
        Ok(())
    }

    /// Whether to take a snapshot now that the state machine has applied
    /// up to `applied`, the latest snapshot being at `latest_snapshot`
    /// (`LogIndex(0)` when there is none).
    pub fn should_snapshot(&self, applied: LogIndex, latest_snapshot: LogIndex) -> bool {
        applied.0.saturating_sub(latest_snapshot.0) >= self.interval_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_snapshots_every_ten_thousand_entries() {
        let policy = SnapshotPolicy::default();
        assert_eq!(policy.validate(), Ok(()));
        assert!(!policy.should_snapshot(LogIndex(9_999), LogIndex(0)));
        assert!(policy.should_snapshot(LogIndex(10_000), LogIndex(0)));
        assert!(!policy.should_snapshot(LogIndex(19_999), LogIndex(10_000)));
        assert!(policy.should_snapshot(LogIndex(20_000), LogIndex(10_000)));
        // A snapshot received from the leader may be ahead of the state
        // machine's own applied index for a moment.
        assert!(!policy.should_snapshot(LogIndex(5), LogIndex(50_000)));
    }

    #[test]
    fn rejects_nonsense_naming_the_field() {
        let base = SnapshotPolicy::default();
        let cases = [
            (
                SnapshotPolicy {
                    interval_entries: 0,
                    ..base
                },
                ConfigError::ZeroLimit {
                    field: "interval_entries",
                },
            ),
            (
                SnapshotPolicy {
                    chunk_size_bytes: 0,
                    ..base
                },
                ConfigError::ZeroLimit {
                    field: "chunk_size_bytes",
                },
            ),
            (
                SnapshotPolicy {
                    chunk_size_bytes: MAX_CHUNK_SIZE_BYTES + 1,
                    ..base
                },
                ConfigError::TooLarge {
                    field: "chunk_size_bytes",
                    value: (MAX_CHUNK_SIZE_BYTES + 1) as u64,
                    max: MAX_CHUNK_SIZE_BYTES as u64,
                },
            ),
        ];
        for (policy, expected) in cases {
            assert_eq!(policy.validate(), Err(expected));
        }
        let message = SnapshotPolicy {
            chunk_size_bytes: MAX_CHUNK_SIZE_BYTES + 1,
            ..base
        }
        .validate()
        .expect_err("too large")
        .to_string();
        assert_eq!(
            message,
            "chunk_size_bytes is 67108865; it must be at most 67108864"
        );
    }
}

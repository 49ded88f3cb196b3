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
    /// And wait until the commands applied since the last snapshot add up
    /// to at least this many times that snapshot's size in bytes, so that
    /// writing snapshots costs at most `1 / log_growth_ratio` of what the
    /// log itself writes, however large the state is (the Raft
    /// dissertation's advice in "when to snapshot": snapshot when the log
    /// outgrows the previous snapshot by a factor). The log on disk then
    /// stays under about `log_growth_ratio` times the state's size, which
    /// bounds the replay at restart the same way. 0 turns the rule off
    /// (snapshots by entry count alone). Default 2.
    pub log_growth_ratio: u64,
    /// The size of the chunks a snapshot is sent in. Default 1 MiB; at most
    /// [`MAX_CHUNK_SIZE_BYTES`].
    pub chunk_size_bytes: usize,
    /// The largest snapshot this node takes from a leader, in bytes: a
    /// transfer announcing more is refused before anything is written, and
    /// no transfer may send more than it announced. Default 8 GiB (a node
    /// whose state outgrows it cannot catch up by snapshot: raise it).
    pub max_receive_bytes: u64,
}

/// The default of [`SnapshotPolicy::max_receive_bytes`]: 8 GiB.
pub const DEFAULT_MAX_RECEIVE_BYTES: u64 = 8 << 30;

impl Default for SnapshotPolicy {
    fn default() -> SnapshotPolicy {
        SnapshotPolicy {
            interval_entries: 10_000,
            log_growth_ratio: 2,
            chunk_size_bytes: DEFAULT_CHUNK_SIZE_BYTES,
            max_receive_bytes: DEFAULT_MAX_RECEIVE_BYTES,
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
        if self.max_receive_bytes == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "max_receive_bytes",
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
    /// (`LogIndex(0)` when there is none) and `latest_snapshot_bytes` long
    /// (0 when there is none), with `applied_bytes` of commands applied
    /// since it.
    pub fn should_snapshot(
        &self,
        applied: LogIndex,
        latest_snapshot: LogIndex,
        applied_bytes: u64,
        latest_snapshot_bytes: u64,
    ) -> bool {
        applied.0.saturating_sub(latest_snapshot.0) >= self.interval_entries
            && applied_bytes >= latest_snapshot_bytes.saturating_mul(self.log_growth_ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_snapshots_every_ten_thousand_entries() {
        let policy = SnapshotPolicy::default();
        assert_eq!(policy.validate(), Ok(()));
        assert!(!policy.should_snapshot(LogIndex(9_999), LogIndex(0), 1 << 20, 0));
        assert!(policy.should_snapshot(LogIndex(10_000), LogIndex(0), 0, 0));
        assert!(!policy.should_snapshot(LogIndex(19_999), LogIndex(10_000), 1 << 20, 10));
        assert!(policy.should_snapshot(LogIndex(20_000), LogIndex(10_000), 1 << 20, 10));
        // A snapshot received from the leader may be ahead of the state
        // machine's own applied index for a moment.
        assert!(!policy.should_snapshot(LogIndex(5), LogIndex(50_000), 1 << 20, 10));
    }

    #[test]
    fn a_large_state_is_snapshotted_once_the_log_outgrows_it_by_the_ratio() {
        let policy = SnapshotPolicy::default();
        assert_eq!(policy.log_growth_ratio, 2);
        let snapshot_bytes = 24 << 20;
        // Enough entries, but the log since the snapshot is still smaller
        // than twice the snapshot: writing another would cost more than
        // the log itself wrote.
        let too_early = 2 * snapshot_bytes - 1;
        assert!(!policy.should_snapshot(
            LogIndex(90_000),
            LogIndex(10_000),
            too_early,
            snapshot_bytes
        ));
        assert!(policy.should_snapshot(
            LogIndex(90_000),
            LogIndex(10_000),
            too_early + 1,
            snapshot_bytes
        ));
        // However many bytes, never before the entry interval.
        assert!(!policy.should_snapshot(LogIndex(10_001), LogIndex(10_000), u64::MAX, 1));
        // Ratio 0: entries alone decide.
        let by_entries = SnapshotPolicy {
            log_growth_ratio: 0,
            ..policy
        };
        assert!(by_entries.should_snapshot(LogIndex(20_000), LogIndex(10_000), 0, u64::MAX));
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
                    max_receive_bytes: 0,
                    ..base
                },
                ConfigError::ZeroLimit {
                    field: "max_receive_bytes",
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

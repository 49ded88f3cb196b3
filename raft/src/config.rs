//! Tunable parameters of one Raft node, and their validation.

use crate::error::ConfigError;
use crate::types::NodeId;

/// Parameters of one node. Time is measured in ticks: the driver decides how
/// long a tick lasts (for example 10 ms) and feeds [`crate::Input::Tick`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id. Must not be zero.
    pub id: NodeId,
    /// Lower bound (inclusive) of the randomized election timeout.
    pub election_ticks_min: u32,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_ticks_max: u32,
    /// How often a leader sends heartbeats. Must be below `election_ticks_min`.
    pub heartbeat_ticks: u32,
    /// Run a pre-vote round before a real election, so that a node that was
    /// partitioned away cannot disrupt the cluster by raising the term
    /// (dissertation §9.6).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for an
    /// election timeout, and a follower that heard from a leader within the
    /// minimum election timeout ignores vote requests (dissertation §6.2, §9.6).
    pub check_quorum: bool,
    /// The most append messages a leader keeps in flight to one follower
    /// while replicating optimistically.
    pub max_inflight_messages: usize,
    /// The most entries one append message carries.
    pub max_entries_per_message: usize,
    /// The most payload bytes one append message carries (at least one entry
    /// is always sent, however large).
    pub max_message_bytes: usize,
    /// Entries kept in the log behind a snapshot, so that a briefly slow
    /// follower catches up from the log instead of receiving a snapshot.
    pub snapshot_trailing_entries: u64,
    /// How far behind the leader's last index a learner may be and still
    /// be promoted to voter: a voter that lags would slow every commit
    /// until it caught up.
    pub max_promotion_lag: u64,
    /// Deliberately unsafe variants of the algorithm for the simulator's
    /// self-tests. All off by default.
    #[cfg(feature = "bug-injection")]
    pub bug_injection: BugInjection,
}

/// Switches that break Raft on purpose, so that tests can prove the
/// simulator's safety checks catch such bugs. Each field names a known-unsafe
/// variant; all are off by default.
#[cfg(feature = "bug-injection")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BugInjection {
    /// Grant votes without checking that the candidate's log is at least as
    /// up to date as the voter's (breaks Raft paper §5.4.1).
    pub vote_without_log_check: bool,
    /// Commit an entry of a previous term by counting its replicas (the
    /// unsafe rule of Raft paper §5.4.2, Figure 8).
    pub commit_previous_term_by_counting: bool,
    /// Answer ReadIndex reads without confirming leadership with a quorum
    /// (breaks dissertation §6.4).
    pub read_without_leadership_check: bool,
    /// Take a configuration change while another is uncommitted, or before
    /// the leader's first commit (breaks the one-server-at-a-time rule,
    /// dissertation §4.1).
    pub concurrent_membership_changes: bool,
    /// Act on peer messages without validating them first (the rules of
    /// `core/validation.rs`).
    pub skip_message_validation: bool,
}

impl Config {
    /// A configuration for node `id` with the defaults: elections after 10 to
    /// 20 ticks, heartbeats every 2 ticks, PreVote and CheckQuorum on.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_ticks_min: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            max_inflight_messages: 256,
            max_entries_per_message: 4096,
            max_message_bytes: 1024 * 1024,
            snapshot_trailing_entries: 5_000,
            max_promotion_lag: 1_000,
            #[cfg(feature = "bug-injection")]
            bug_injection: BugInjection::default(),
        }
    }

    /// Checks that the parameters make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NodeId(0) {
            return Err(ConfigError::ZeroNodeId);
        }
        if self.heartbeat_ticks == 0 {
            return Err(ConfigError::ZeroTicks {
                field: "heartbeat_ticks",
            });
        }
        if self.election_ticks_min == 0 {
            return Err(ConfigError::ZeroTicks {
                field: "election_ticks_min",
            });
        }
        if self.election_ticks_min >= self.election_ticks_max {
            return Err(ConfigError::EmptyElectionRange {
                min: self.election_ticks_min,
                max: self.election_ticks_max,
            });
        }
        if self.heartbeat_ticks >= self.election_ticks_min {
            return Err(ConfigError::HeartbeatNotBelowElection {
                heartbeat: self.heartbeat_ticks,
                election_min: self.election_ticks_min,
            });
        }
        if self.max_inflight_messages == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "max_inflight_messages",
            });
        }
        if self.max_entries_per_message == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "max_entries_per_message",
            });
        }
        if self.max_message_bytes == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "max_message_bytes",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new(NodeId(1)).validate(), Ok(()));
    }

    #[test]
    fn rejects_nonsense() {
        let base = Config::new(NodeId(1));
        let cases: Vec<(Config, ConfigError)> = vec![
            (
                Config {
                    id: NodeId(0),
                    ..base.clone()
                },
                ConfigError::ZeroNodeId,
            ),
            (
                Config {
                    heartbeat_ticks: 0,
                    ..base.clone()
                },
                ConfigError::ZeroTicks {
                    field: "heartbeat_ticks",
                },
            ),
            (
                Config {
                    election_ticks_min: 0,
                    ..base.clone()
                },
                ConfigError::ZeroTicks {
                    field: "election_ticks_min",
                },
            ),
            (
                Config {
                    election_ticks_min: 20,
                    election_ticks_max: 20,
                    ..base.clone()
                },
                ConfigError::EmptyElectionRange { min: 20, max: 20 },
            ),
            (
                Config {
                    heartbeat_ticks: 10,
                    ..base.clone()
                },
                ConfigError::HeartbeatNotBelowElection {
                    heartbeat: 10,
                    election_min: 10,
                },
            ),
            (
                Config {
                    max_inflight_messages: 0,
                    ..base.clone()
                },
                ConfigError::ZeroLimit {
                    field: "max_inflight_messages",
                },
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
    }
}

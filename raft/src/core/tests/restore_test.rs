//! `RaftCore::new` refuses restored state that breaks Raft's invariants
//! rather than running on it.

use super::fixture::entry;
use crate::{
    Config, CoreError, HardState, LogIndex, Membership, NodeId, RaftCore, RestoredState, Term,
};

fn restore(term: u64, entries: Vec<crate::Entry>, applied: u64) -> Result<RaftCore, CoreError> {
    let restored = RestoredState {
        hard_state: HardState {
            term: Term(term),
            voted_for: None,
        },
        entries,
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        applied: LogIndex(applied),
        snapshot: None,
    };
    RaftCore::new(Config::new(NodeId(1)), restored, 1)
}

#[test]
fn log_with_a_gap_is_rejected() {
    // Raft paper §5.3: the log is a sequence of entries with consecutive
    // indexes; the Log Matching check on prevLogIndex depends on it.
    let result = restore(2, vec![entry(1, 1), entry(3, 1)], 0);
    assert_eq!(
        result.unwrap_err(),
        CoreError::LogNotContiguous {
            expected: LogIndex(2),
            found: LogIndex(3),
        }
    );
}

#[test]
fn log_not_starting_at_index_one_is_rejected() {
    // Without snapshots the log starts at index 1 (Raft paper Figure 2:
    // "first index is 1").
    let result = restore(2, vec![entry(2, 1)], 0);
    assert_eq!(
        result.unwrap_err(),
        CoreError::LogNotContiguous {
            expected: LogIndex(1),
            found: LogIndex(2),
        }
    );
}

#[test]
fn log_with_decreasing_terms_is_rejected() {
    // Raft paper §5.3: leaders only append, with their own term, and terms
    // only grow, so terms never decrease along a log.
    let result = restore(2, vec![entry(1, 2), entry(2, 1)], 0);
    assert_eq!(
        result.unwrap_err(),
        CoreError::LogTermDecreases {
            index: LogIndex(2),
            term: Term(1),
            previous: Term(2),
        }
    );
}

#[test]
fn log_with_a_term_ahead_of_the_hard_state_is_rejected() {
    // Raft paper §5.1: a server adopts (and persists) a term before it
    // accepts entries of that term, so no entry can be newer than
    // currentTerm.
    let result = restore(2, vec![entry(1, 1), entry(2, 3)], 0);
    assert_eq!(
        result.unwrap_err(),
        CoreError::LogAheadOfTerm {
            found: Term(3),
            term: Term(2),
        }
    );
}

#[test]
fn applied_index_past_the_log_is_rejected() {
    // Raft paper Figure 2: lastApplied <= commitIndex <= the log's last
    // index; a state machine ahead of the log means lost entries.
    let result = restore(1, vec![entry(1, 1), entry(2, 1)], 3);
    assert_eq!(
        result.unwrap_err(),
        CoreError::AppliedPastLog {
            applied: LogIndex(3),
            last: LogIndex(2),
        }
    );
}

#[test]
fn learners_without_voters_are_rejected() {
    // Raft paper §5.2: decisions need a majority of the voters; with none,
    // no election or commit can ever succeed.
    let mut restored = RestoredState::new_cluster([]);
    restored.membership.learners.insert(NodeId(1));
    let result = RaftCore::new(Config::new(NodeId(1)), restored, 1);
    assert_eq!(result.unwrap_err(), CoreError::NoVoters);
}

#[test]
fn a_joining_node_waits_for_a_leader_and_follows_it() {
    // No configuration yet (an empty data directory and `--join`): however
    // long it waits, the node never campaigns.
    let mut core = RaftCore::new(Config::new(NodeId(4)), RestoredState::joining(), 1).unwrap();
    for _ in 0..100 {
        core.step(crate::Input::Tick);
        assert_eq!(core.status().role, crate::Role::Follower);
        assert!(
            core.take_outputs().is_empty(),
            "a joining node sends nothing on its own"
        );
    }
    // The leader's first append carries the configuration that added it; the
    // node takes it and answers.
    let mut membership = crate::Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    membership.learners.insert(NodeId(4));
    membership.addresses.insert(NodeId(4), "h4:1".to_string());
    let entry = crate::Entry {
        index: LogIndex(1),
        term: Term(2),
        payload: crate::EntryPayload::Configuration(membership.clone().into()),
    };
    core.step(crate::Input::Message(crate::Message {
        from: NodeId(1),
        to: NodeId(4),
        term: Term(2),
        body: crate::MessageBody::AppendEntries(crate::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![entry].into(),
            leader_commit: LogIndex(1),
            round: 1,
        }),
    }));
    assert_eq!(core.membership(), &membership);
    assert_eq!(core.status().leader, Some(NodeId(1)));
    // A learner still never campaigns.
    core.take_outputs();
    for _ in 0..100 {
        core.step(crate::Input::Tick);
    }
    assert_eq!(core.status().role, crate::Role::Follower);
}

#[test]
fn state_machine_behind_the_snapshot_is_rejected() {
    // Raft paper §7: entries up to a snapshot's index exist only in the
    // snapshot, so a state machine that has not restored it cannot go on.
    let restored = RestoredState {
        hard_state: HardState {
            term: Term(2),
            voted_for: None,
        },
        entries: vec![entry(6, 2)],
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        applied: LogIndex(3),
        snapshot: Some(crate::SnapshotMetadata {
            index: LogIndex(5),
            term: Term(2),
            membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]).into(),
        }),
    };
    assert_eq!(
        RaftCore::new(Config::new(NodeId(1)), restored, 1).unwrap_err(),
        CoreError::AppliedBeforeSnapshot {
            applied: LogIndex(3),
            snapshot: LogIndex(5),
        }
    );
}

#[test]
fn log_after_a_snapshot_must_continue_from_it() {
    // The log continues right after the snapshot's last included index.
    let snapshot = crate::SnapshotMetadata {
        index: LogIndex(5),
        term: Term(2),
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]).into(),
    };
    let restored = |entries| RestoredState {
        hard_state: HardState {
            term: Term(2),
            voted_for: None,
        },
        entries,
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        applied: LogIndex(5),
        snapshot: Some(snapshot.clone()),
    };
    assert_eq!(
        RaftCore::new(Config::new(NodeId(1)), restored(vec![entry(7, 2)]), 1).unwrap_err(),
        CoreError::LogNotContiguous {
            expected: LogIndex(6),
            found: LogIndex(7),
        }
    );
    let core = RaftCore::new(Config::new(NodeId(1)), restored(vec![entry(6, 2)]), 1).unwrap();
    let status = core.status();
    assert_eq!(
        (status.last_index, status.commit_index),
        (LogIndex(6), LogIndex(5))
    );
}

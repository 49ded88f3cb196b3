//! Snapshots and log compaction (Raft paper §7).

use super::fixture::*;
use crate::core::message::{InstallSnapshotResponse, MessageBody};
use crate::{Input, LogIndex, Membership, NodeId, Output, SnapshotMetadata, Term};

fn metadata(index: u64, term: u64) -> SnapshotMetadata {
    SnapshotMetadata {
        index: LogIndex(index),
        term: Term(term),
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]).into(),
    }
}

fn snapshot_taken(index: u64, term: u64) -> Input {
    Input::SnapshotTaken {
        metadata: metadata(index, term),
    }
}

fn install_snapshot(index: u64, term: u64) -> MessageBody {
    MessageBody::InstallSnapshot(metadata(index, term))
}

fn snapshot_answer(accepted: bool, last_log_index: u64) -> MessageBody {
    MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
        accepted,
        last_log_index: LogIndex(last_log_index),
    })
}

/// Leader of term 2 over ten entries of term 1 (all applied), its no-op at
/// 11 durable, with a snapshot at 10 and nothing kept behind it.
fn leader_with_compacted_log() -> crate::RaftCore {
    let mut core = CoreBuilder::new(1)
        .log(&[1; 10])
        .term(1)
        .applied(10)
        .config(|config| {
            config.snapshot_trailing_entries = 0;
            // Node 3 stays silent in these tests; the leader must not step
            // down for it.
            config.check_quorum = false;
        })
        .leader();
    let term = core.term().0;
    core.step(persisted(11, term));
    assert_eq!(
        step(&mut core, snapshot_taken(10, 1)),
        vec![Output::CompactLog {
            up_to: LogIndex(10)
        }]
    );
    core
}

/// [`leader_with_compacted_log`] after node 2 said its log ends at 3: the
/// snapshot is on its way to it.
fn leader_sending_snapshot_to_2() -> crate::RaftCore {
    let mut core = leader_with_compacted_log();
    deliver(
        &mut core,
        message(2, 1, 2, append_rejected(10, log_too_short(3), 3, 0)),
    );
    core
}

#[test]
fn a_snapshot_compacts_the_log_but_keeps_a_trailing_stretch() {
    // Paper §7: entries a snapshot covers may be discarded; a trailing
    // stretch stays so that a slow follower catches up from the log.
    let mut core = CoreBuilder::new(1)
        .log(&[1; 10])
        .term(1)
        .applied(10)
        .config(|config| config.snapshot_trailing_entries = 3)
        .build();
    assert_eq!(
        step(&mut core, snapshot_taken(8, 1)),
        vec![Output::CompactLog { up_to: LogIndex(5) }]
    );
    // An older snapshot changes nothing.
    assert_eq!(step(&mut core, snapshot_taken(6, 1)), vec![]);
}

fn released_indexes(core: &mut crate::RaftCore) -> Vec<u64> {
    let released = core.take_released_entries();
    let entries = released.iter().flat_map(|run| run.iter());
    entries.map(|entry| entry.index.0).collect()
}

#[test]
fn the_entries_a_compaction_removes_are_handed_to_the_driver_to_free() {
    // Freeing millions of entries takes long; the driver frees them where
    // that holds nothing up.
    let compacted = || {
        let mut core = CoreBuilder::new(1)
            .log(&[1; 10])
            .term(1)
            .applied(10)
            .config(|config| config.snapshot_trailing_entries = 0)
            .build();
        assert_eq!(
            step(&mut core, snapshot_taken(10, 1)),
            vec![Output::CompactLog {
                up_to: LogIndex(10)
            }]
        );
        core
    };
    let mut core = compacted();
    assert_eq!(released_indexes(&mut core), (1..=10).collect::<Vec<_>>());
    assert_eq!(released_indexes(&mut core), Vec::<u64>::new(), "taken once");

    // Not taken by the next time outputs are taken, they are freed then.
    let mut core = compacted();
    assert_eq!(step(&mut core, Input::Tick), vec![]);
    assert_eq!(released_indexes(&mut core), Vec::<u64>::new());
}

#[test]
fn a_snapshot_of_unapplied_entries_is_ignored() {
    // The snapshot must capture applied state; anything else is a driver bug
    // the core refuses to act on.
    let mut core = CoreBuilder::new(1).log(&[1; 10]).term(1).applied(4).build();
    assert_eq!(step(&mut core, snapshot_taken(8, 1)), vec![]);
}

#[test]
fn a_follower_behind_the_compacted_log_gets_the_snapshot_once() {
    // Paper §7: "the leader must occasionally send snapshots to followers
    // that lag behind", here when the follower needs compacted entries.
    let mut core = leader_with_compacted_log();
    assert_eq!(
        deliver(
            &mut core,
            message(2, 1, 2, append_rejected(10, log_too_short(3), 3, 0))
        ),
        vec![send(1, 2, 2, install_snapshot(10, 1))]
    );
    // While it is on its way, heartbeats go out at the log's start, but
    // neither entries nor a second snapshot.
    let heartbeat = tick_times(&mut core, 2);
    assert_eq!(
        heartbeat[0],
        send(1, 2, 2, append_entries((10, 1), vec![], 10, 1))
    );
    assert!(!heartbeat
        .iter()
        .any(|output| matches!(output, Output::Send(m) if matches!(m.body, MessageBody::InstallSnapshot(_)))));
}

#[test]
fn an_installed_snapshot_resumes_replication_after_it() {
    let mut core = leader_sending_snapshot_to_2();
    assert_eq!(
        deliver(&mut core, message(2, 1, 2, snapshot_answer(true, 10))),
        vec![send(
            1,
            2,
            2,
            append_entries((10, 1), vec![noop(11, 2)], 10, 0)
        )]
    );
    assert_eq!(core.status().progress[&NodeId(2)].match_index, LogIndex(10));
}

#[test]
fn a_lost_snapshot_is_sent_again() {
    // The transfer or its answer may be lost: after 20 heartbeat rounds
    // without an answer the leader decides anew and sends it again.
    let mut core = leader_sending_snapshot_to_2();
    let snapshots_sent = |outputs: Vec<Output>| {
        outputs
            .iter()
            .filter(|output| {
                matches!(output, Output::Send(m)
                    if m.to == NodeId(2) && matches!(m.body, MessageBody::InstallSnapshot(_)))
            })
            .count()
    };
    // Rounds 1 to 19: still waiting.
    let waiting: usize = (1..20)
        .map(|_| snapshots_sent(tick_times(&mut core, 2)))
        .sum();
    assert_eq!(waiting, 0);
    // Round 20: sent again, and then again only 20 rounds later.
    assert_eq!(snapshots_sent(tick_times(&mut core, 2)), 1);
    let waiting: usize = (21..40)
        .map(|_| snapshots_sent(tick_times(&mut core, 2)))
        .sum();
    assert_eq!(waiting, 0);
}

#[test]
fn a_follower_that_catches_up_from_the_log_no_longer_waits_for_the_snapshot() {
    // If an append succeeds past the compaction point while a snapshot is on
    // its way, the follower needs no snapshot: replication goes on.
    let mut core = leader_sending_snapshot_to_2();
    assert_eq!(
        deliver(&mut core, message(2, 1, 2, append_accepted(10, 10, 0))),
        vec![send(
            1,
            2,
            2,
            append_entries((10, 1), vec![noop(11, 2)], 10, 0)
        )]
    );
}

#[test]
fn a_follower_installs_a_snapshot_past_its_log() {
    // Paper §7, InstallSnapshot receiver: discard the entire log and reset
    // the state machine from the snapshot; the acknowledgement follows the
    // durable install.
    let mut core = CoreBuilder::new(2).log(&[1, 1]).term(2).follower_of(1);
    assert_eq!(
        deliver(&mut core, message(1, 2, 2, install_snapshot(10, 2))),
        vec![
            Output::RestoreSnapshot {
                metadata: metadata(10, 2)
            },
            send(2, 1, 2, snapshot_answer(true, 10)),
        ]
    );
    let status = core.status();
    assert_eq!(
        (status.last_index, status.commit_index, status.applied_index),
        (LogIndex(10), LogIndex(10), LogIndex(10))
    );
    // Appends continue right after the snapshot.
    assert_eq!(
        deliver(
            &mut core,
            message(1, 2, 2, append_entries((10, 2), vec![entry(11, 2)], 10, 0))
        ),
        vec![append_log(vec![entry(11, 2)])]
    );
}

#[test]
fn a_follower_keeps_its_log_when_it_already_holds_the_snapshot_point() {
    // Paper §7: "If existing log entry has same index and term as
    // snapshot's last included entry, retain log entries following it".
    let mut core = CoreBuilder::new(2)
        .log(&[1, 1, 2, 2])
        .term(2)
        .follower_of(1);
    assert_eq!(
        deliver(&mut core, message(1, 2, 2, install_snapshot(3, 2))),
        vec![send(2, 1, 2, snapshot_answer(false, 4))]
    );
    assert_eq!(core.status().last_index, LogIndex(4));
}

#[test]
fn a_refused_snapshot_from_a_follower_with_a_longer_log_probes_within_the_leaders_log() {
    // The follower already held the snapshot's entries and its log runs
    // past the leader's (entries of an older term that never committed):
    // the leader probes from its own end, not from the follower's (a probe
    // past its log would name an entry it does not have).
    let mut core = leader_sending_snapshot_to_2();
    // Nothing to send at once (the leader has no entry past 11); the next
    // heartbeat probes at the leader's last entry.
    assert_eq!(
        deliver(&mut core, message(2, 1, 2, snapshot_answer(false, 15))),
        vec![]
    );
    let (_, heartbeat) = tick_until_outputs(&mut core);
    assert!(
        heartbeat.contains(&send(1, 2, 2, append_entries((11, 2), vec![], 10, 1))),
        "{heartbeat:?}"
    );
}

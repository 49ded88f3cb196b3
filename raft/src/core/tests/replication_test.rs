//! The leader: proposals, replication, commit, backtracking, flow control,
//! heartbeats and CheckQuorum.

use super::fixture::*;
use crate::{Entries, LogIndex, Message, MessageBody, Output, Role};

#[test]
fn proposal_at_a_follower_fails_with_a_leader_hint() {
    // Raft paper §8: "If the client's first choice is not the leader, that
    // server will reject the client's request and supply information about
    // the most recent leader it has heard from".
    let mut core = CoreBuilder::new(1).term(1).follower_of(2);
    assert_eq!(
        step(&mut core, propose(1, "x=1")),
        vec![failed(1, not_leader(Some(2)))]
    );
}

#[test]
fn proposals_are_appended_and_batched_into_one_append_per_follower() {
    // Raft paper §5.3: "The leader appends the command to its log as a new
    // entry, then issues AppendEntries RPCs in parallel"; proposals stepped
    // before the outputs are taken share one write and one message per
    // follower.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    core.step(propose(1, "a"));
    core.step(propose(2, "b"));
    core.step(propose(3, "c"));
    let new_entries = vec![
        command_entry(2, 1, "a"),
        command_entry(3, 1, "b"),
        command_entry(4, 1, "c"),
    ];
    assert_eq!(
        core.take_outputs(),
        vec![
            append_log(new_entries.clone()),
            accepted(1, 2, 1),
            accepted(2, 3, 1),
            accepted(3, 4, 1),
            send(1, 2, 1, append_entries((1, 1), new_entries.clone(), 1, 0)),
            send(1, 3, 1, append_entries((1, 1), new_entries, 1, 0)),
        ]
    );
}

/// The entries an output or a message carries.
fn carried(output: &Output) -> &Entries {
    match output {
        Output::AppendLog { entries } | Output::Apply { entries } => entries,
        Output::Send(Message {
            body: MessageBody::AppendEntries(append),
            ..
        }) => &append.entries,
        other => panic!("no entries in {other:?}"),
    }
}

#[test]
fn a_batch_is_one_allocation_shared_by_the_write_every_follower_and_the_apply() {
    // Copying entries for each follower and hand-off once cost the core a
    // third of its throughput: every holder shares the leader's one run.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    core.step(propose(1, "a"));
    core.step(propose(2, "b"));
    let outputs = core.take_outputs();
    let written = carried(&outputs[0]);
    assert_eq!(written.len(), 2);
    assert!(carried(&outputs[3]).shares_with(written), "{outputs:?}");
    assert!(carried(&outputs[4]).shares_with(written), "{outputs:?}");
    step(&mut core, persisted(3, 1));
    let outputs = deliver(&mut core, message(2, 1, 1, append_accepted(3, 3, 0)));
    assert!(carried(&outputs[0]).shares_with(written), "{outputs:?}");
}

#[test]
fn a_follower_writes_and_applies_the_entries_it_received_without_copying_them() {
    let mut core = CoreBuilder::new(2).term(1).follower_of(1);
    let received: Entries = vec![command_entry(1, 1, "a"), command_entry(2, 1, "b")].into();
    let mut append = append_entries((0, 0), Vec::new(), 0, 0);
    if let MessageBody::AppendEntries(body) = &mut append {
        body.entries = received.clone();
    }
    let outputs = deliver(&mut core, message(1, 2, 1, append));
    assert!(carried(&outputs[0]).shares_with(&received), "{outputs:?}");
    step(&mut core, persisted(2, 1));
    let commit = append_entries((2, 1), Vec::new(), 2, 0);
    let outputs = deliver(&mut core, message(1, 2, 1, commit));
    let applied = outputs
        .iter()
        .find(|output| matches!(output, Output::Apply { .. }));
    assert!(
        applied.is_some_and(|output| carried(output).shares_with(&received)),
        "{outputs:?}"
    );
}

#[test]
fn leader_counts_itself_toward_commit_only_once_its_entry_is_durable() {
    // Raft paper §5.3: an entry is committed once "replicated it on a
    // majority of the servers"; the leader's own copy counts only once it is
    // on its stable storage (the driver contract lets the leader send before
    // its own write completes).
    let mut core = CoreBuilder::new(1).leader();
    // Node 2 has the no-op, but the leader's copy is not yet durable: one of
    // three is not a majority.
    assert_eq!(
        deliver(&mut core, message(2, 1, 1, append_accepted(1, 1, 0))),
        vec![]
    );
    assert_eq!(core.commit_index(), LogIndex(0));
    assert_eq!(
        step(&mut core, persisted(1, 1)),
        vec![apply(vec![noop(1, 1)])]
    );
    assert_eq!(core.commit_index(), LogIndex(1));
}

#[test]
fn entry_of_a_previous_term_is_not_committed_by_counting_replicas() {
    // Raft paper §5.4.2 / Figure 8: "Raft never commits log entries from
    // previous terms by counting replicas. Only log entries from the
    // leader's current term are committed by counting replicas"; earlier
    // entries then commit indirectly.
    let mut core = CoreBuilder::new(1).log(&[1, 2]).term(2).leader();
    assert_eq!(core.term().0, 3);
    // Entry 2 (term 2) is now on the leader and node 2: a majority.
    let outputs = deliver(&mut core, message(2, 1, 3, append_accepted(2, 2, 0)));
    assert_eq!(
        outputs,
        vec![send(
            1,
            2,
            3,
            append_entries((2, 2), vec![noop(3, 3)], 0, 0)
        )]
    );
    assert_eq!(step(&mut core, persisted(3, 3)), vec![]);
    assert_eq!(core.commit_index(), LogIndex(0));
    // The no-op of term 3 reaches a majority: it commits, and entry 2 with it.
    assert_eq!(
        deliver(&mut core, message(2, 1, 3, append_accepted(3, 3, 0))),
        vec![apply(vec![entry(1, 1), entry(2, 2), noop(3, 3)])]
    );
}

#[test]
fn term_mismatch_unknown_to_the_leader_skips_the_whole_conflicting_run() {
    // Raft paper §5.3: with the conflicting term and the first index the
    // follower stores for it, "the leader can decrement nextIndex to bypass
    // all of the conflicting entries in that term". The leader has no entry
    // of term 2, so it retries just before the follower's run of it.
    let mut core = CoreBuilder::new(1).log(&[1, 1, 1, 4, 4]).term(4).leader();
    let outputs = deliver(
        &mut core,
        message(2, 1, 5, append_rejected(5, term_mismatch(2, 2), 5, 0)),
    );
    let mut resent = entries(2, &[1, 1, 4, 4]);
    resent.push(noop(6, 5));
    assert_eq!(
        outputs,
        vec![send(1, 2, 5, append_entries((1, 1), resent, 0, 0))]
    );
}

#[test]
fn term_mismatch_known_to_the_leader_resumes_after_its_last_entry_of_that_term() {
    // Raft paper §5.3 (fast backtracking): the follower's entries of term 3
    // may match the leader's up to the leader's last entry of term 3, so the
    // next probe is at that entry rather than one index back.
    let mut core = CoreBuilder::new(1).log(&[1, 1, 3, 5, 5]).term(5).leader();
    let outputs = deliver(
        &mut core,
        message(2, 1, 6, append_rejected(5, term_mismatch(3, 3), 6, 0)),
    );
    let mut resent = entries(4, &[5, 5]);
    resent.push(noop(6, 6));
    assert_eq!(
        outputs,
        vec![send(1, 2, 6, append_entries((3, 3), resent, 0, 0))]
    );
}

#[test]
fn log_too_short_resumes_after_the_followers_last_entry() {
    // Raft paper §5.3: nextIndex moves back to where the follower's log can
    // match: just after its last entry, in one round trip.
    let mut core = CoreBuilder::new(1).log(&[1, 1, 1, 1, 1]).term(1).leader();
    let outputs = deliver(
        &mut core,
        message(2, 1, 2, append_rejected(5, log_too_short(2), 2, 0)),
    );
    let mut resent = entries(3, &[1, 1, 1]);
    resent.push(noop(6, 2));
    assert_eq!(
        outputs,
        vec![send(1, 2, 2, append_entries((2, 1), resent, 0, 0))]
    );
}

#[test]
fn full_in_flight_window_pauses_replication_until_an_acknowledgement() {
    // Flow control (dissertation §10.2.1 pipelining): at most
    // max_inflight_messages appends are outstanding per follower; an
    // acknowledgement frees a slot and the next entries go out.
    let mut core = CoreBuilder::new(1)
        .config(|config| {
            config.max_inflight_messages = 2;
            config.max_entries_per_message = 1;
        })
        .leader_in_sync();
    assert_eq!(
        step(&mut core, propose(1, "a")),
        vec![
            append_log(vec![command_entry(2, 1, "a")]),
            accepted(1, 2, 1),
            send(
                1,
                2,
                1,
                append_entries((1, 1), vec![command_entry(2, 1, "a")], 1, 0)
            ),
            send(
                1,
                3,
                1,
                append_entries((1, 1), vec![command_entry(2, 1, "a")], 1, 0)
            ),
        ]
    );
    assert_eq!(
        step(&mut core, propose(2, "b")),
        vec![
            append_log(vec![command_entry(3, 1, "b")]),
            accepted(2, 3, 1),
            send(
                1,
                2,
                1,
                append_entries((2, 1), vec![command_entry(3, 1, "b")], 1, 0)
            ),
            send(
                1,
                3,
                1,
                append_entries((2, 1), vec![command_entry(3, 1, "b")], 1, 0)
            ),
        ]
    );
    // Both windows are full: the entry is only written locally.
    assert_eq!(
        step(&mut core, propose(3, "c")),
        vec![
            append_log(vec![command_entry(4, 1, "c")]),
            accepted(3, 4, 1)
        ]
    );
    // Node 2 acknowledges the first append: its window has room again.
    assert_eq!(
        deliver(&mut core, message(2, 1, 1, append_accepted(2, 2, 0))),
        vec![send(
            1,
            2,
            1,
            append_entries((3, 1), vec![command_entry(4, 1, "c")], 1, 0)
        )]
    );
}

#[test]
fn leader_sends_heartbeats_every_heartbeat_ticks() {
    // Raft paper §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs
    // that carry no log entries) to all followers"; here every
    // heartbeat_ticks (2) ticks, each in a new round, carrying the commit.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    for round in 1..=3 {
        assert_eq!(step(&mut core, crate::Input::Tick), vec![]);
        assert_eq!(
            step(&mut core, crate::Input::Tick),
            vec![
                send(1, 2, 1, append_entries((1, 1), vec![], 1, round)),
                send(1, 3, 1, append_entries((1, 1), vec![], 1, round)),
            ]
        );
    }
}

#[test]
fn check_quorum_leader_that_hears_from_no_one_steps_down() {
    // Dissertation §6.2: "a leader steps down if an election timeout elapses
    // without a successful round of heartbeats to a majority of its
    // cluster". The check runs every election_ticks_min (10) ticks; the
    // first window still counts the peers' answers to the no-op.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    tick_times(&mut core, 19);
    assert_eq!(core.role(), Role::Leader);
    // Tick 20 ends a full window of silence: heartbeat, then step down.
    assert_eq!(
        step(&mut core, crate::Input::Tick),
        vec![
            send(1, 2, 1, append_entries((1, 1), vec![], 1, 10)),
            send(1, 3, 1, append_entries((1, 1), vec![], 1, 10)),
        ]
    );
    assert_eq!(core.role(), Role::Follower);
    assert_eq!(core.leader(), None);
    assert_eq!(core.term().0, 1);
}

#[test]
fn check_quorum_leader_that_hears_from_a_majority_stays() {
    // Dissertation §6.2: answers from one follower make a majority with the
    // leader, so it keeps leading through many CheckQuorum windows.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    for tick in 1..=60 {
        let outputs = step(&mut core, crate::Input::Tick);
        if tick % 2 == 0 {
            let round = tick / 2;
            assert_eq!(
                outputs,
                vec![
                    send(1, 2, 1, append_entries((1, 1), vec![], 1, round)),
                    send(1, 3, 1, append_entries((1, 1), vec![], 1, round)),
                ]
            );
            assert_eq!(
                deliver(&mut core, message(2, 1, 1, append_accepted(1, 1, round))),
                vec![]
            );
        } else {
            assert_eq!(outputs, vec![]);
        }
    }
    assert_eq!(core.role(), Role::Leader);
}

#[test]
fn a_successful_probe_fills_the_whole_in_flight_window() {
    // Dissertation §10.2.1: once the leader knows where a follower's log
    // matches it streams appends without waiting for each answer, so a
    // lagging follower catches up a window of batches per round trip.
    let mut core = CoreBuilder::new(1)
        .log(&[1, 1, 1, 1, 1, 1, 1])
        .term(1)
        .config(|config| {
            config.max_inflight_messages = 3;
            config.max_entries_per_message = 2;
        })
        .leader();
    let term = core.term().0;
    // Node 2 holds only the first entry.
    let outputs = deliver(
        &mut core,
        message(2, 1, term, append_rejected(7, log_too_short(1), 1, 0)),
    );
    assert_eq!(
        outputs,
        vec![send(
            1,
            2,
            term,
            append_entries((1, 1), entries(2, &[1, 1]), 0, 0)
        )]
    );
    // It matches up to 3: three batches go out at once, the window's size.
    let outputs = deliver(&mut core, message(2, 1, term, append_accepted(3, 3, 0)));
    assert_eq!(
        outputs,
        vec![
            send(
                1,
                2,
                term,
                append_entries((3, 1), entries(4, &[1, 1]), 0, 0)
            ),
            send(
                1,
                2,
                term,
                append_entries((5, 1), entries(6, &[1, 1]), 0, 0)
            ),
            send(
                1,
                2,
                term,
                append_entries((7, 1), vec![noop(8, term)], 0, 0)
            ),
        ]
    );
}

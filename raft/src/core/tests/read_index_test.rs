//! Linearizable reads with ReadIndex (dissertation §6.4).

use super::fixture::*;
use crate::{Input, LogIndex};

#[test]
fn read_at_a_follower_fails_with_a_leader_hint() {
    // Dissertation §6.4: only the leader serves ReadIndex reads; like a
    // misdirected proposal (Raft paper §8), the client is told the leader.
    let mut core = CoreBuilder::new(1).term(1).follower_of(3);
    assert_eq!(
        step(&mut core, read(7)),
        vec![failed(7, not_leader(Some(3)))]
    );
}

#[test]
fn read_waits_for_a_quorum_to_acknowledge_a_round_sent_after_it() {
    // Dissertation §6.4 step 3: "the leader needs to make sure it hasn't
    // been superseded by a newer leader of which it is unaware. It issues a
    // new round of heartbeats and waits for their acknowledgments from a
    // majority". An answer to a heartbeat sent before the read arrived
    // proves nothing about the time of the read.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    // Round 1 goes out before the read.
    tick_times(&mut core, 2);
    assert_eq!(
        step(&mut core, read(7)),
        vec![
            send(1, 2, 1, append_entries((1, 1), vec![], 1, 2)),
            send(1, 3, 1, append_entries((1, 1), vec![], 1, 2)),
        ]
    );
    assert_eq!(
        deliver(&mut core, message(2, 1, 1, append_accepted(1, 1, 1))),
        vec![]
    );
    assert_eq!(
        deliver(&mut core, message(3, 1, 1, append_accepted(1, 1, 1))),
        vec![]
    );
    // Round 2 acknowledged by node 2: with the leader, a majority.
    assert_eq!(
        deliver(&mut core, message(2, 1, 1, append_accepted(1, 1, 2))),
        vec![read_ready(7, 1)]
    );
}

#[test]
fn new_leader_holds_reads_until_its_noop_commits() {
    // Dissertation §6.4 step 1: "If the leader has not yet marked an entry
    // from its current term committed, it waits until it has done so" — only
    // then does its commit index cover what earlier leaders committed.
    let mut core = CoreBuilder::new(1).leader();
    assert_eq!(
        step(&mut core, read(7)),
        vec![
            send(1, 2, 1, append_entries((0, 0), vec![], 0, 1)),
            send(1, 3, 1, append_entries((0, 0), vec![], 0, 1)),
        ]
    );
    // Leadership is confirmed, but the read index is not known yet. (The
    // heartbeat's answer also shows node 2 is in step: the no-op follows.)
    assert_eq!(
        deliver(&mut core, message(2, 1, 1, append_accepted(0, 0, 1))),
        vec![send(
            1,
            2,
            1,
            append_entries((0, 0), vec![noop(1, 1)], 0, 1)
        )]
    );
    assert_eq!(step(&mut core, persisted(1, 1)), vec![]);
    // The no-op commits: the read index is 1, served once applied.
    assert_eq!(
        deliver(&mut core, message(2, 1, 1, append_accepted(1, 1, 1))),
        vec![apply(vec![noop(1, 1)])]
    );
    assert_eq!(step(&mut core, applied(1)), vec![read_ready(7, 1)]);
}

#[test]
fn read_is_ready_only_once_the_state_machine_reaches_its_index() {
    // Dissertation §6.4 step 4: "The leader waits for its state machine to
    // advance at least as far as the readIndex".
    let mut core = CoreBuilder::new(1).leader_in_sync();
    core.step(propose(1, "x=1"));
    core.step(persisted(2, 1));
    core.take_outputs();
    assert_eq!(
        deliver(&mut core, message(2, 1, 1, append_accepted(2, 2, 0))),
        vec![apply(vec![command_entry(2, 1, "x=1")])]
    );
    // The read index is 2, but the state machine has applied only 1.
    assert_eq!(
        step(&mut core, read(7)),
        vec![
            send(1, 2, 1, append_entries((2, 1), vec![], 2, 1)),
            send(1, 3, 1, append_entries((2, 1), vec![], 2, 1)),
        ]
    );
    assert_eq!(
        deliver(&mut core, message(3, 1, 1, append_accepted(2, 2, 1))),
        vec![]
    );
    assert_eq!(step(&mut core, applied(2)), vec![read_ready(7, 2)]);
}

#[test]
fn the_core_names_the_applied_index_a_confirmed_read_awaits() {
    // A driver that does not report every applied batch must know when a
    // read waits for the state machine.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    assert_eq!(core.applied_awaited(), None);
    core.step(propose(1, "x=1"));
    core.step(persisted(2, 1));
    deliver(&mut core, message(2, 1, 1, append_accepted(2, 2, 0)));
    core.step(read(7));
    // The heartbeat round that confirms the read goes out (an answer to a
    // round the leader has not sent is refused).
    core.take_outputs();
    // Not yet confirmed by a quorum: nothing to wait for yet.
    assert_eq!(core.applied_awaited(), None);
    deliver(&mut core, message(3, 1, 1, append_accepted(2, 2, 1)));
    assert_eq!(core.applied_awaited(), Some(LogIndex(2)));
    assert_eq!(step(&mut core, applied(2)), vec![read_ready(7, 2)]);
    assert_eq!(core.applied_awaited(), None);
}

#[test]
fn single_node_cluster_serves_reads_once_its_noop_is_applied() {
    // Dissertation §6.4: in a one-server cluster the leader is its own
    // majority, so no heartbeat round is needed; it still waits for an entry
    // of its term to commit and be applied.
    let mut core = CoreBuilder::new(1).voters(&[1]).leader();
    assert_eq!(step(&mut core, read(7)), vec![]);
    assert_eq!(
        step(&mut core, persisted(1, 1)),
        vec![apply(vec![noop(1, 1)])]
    );
    assert_eq!(step(&mut core, applied(1)), vec![read_ready(7, 1)]);
    assert_eq!(step(&mut core, read(8)), vec![read_ready(8, 1)]);
    assert_eq!(step(&mut core, Input::Tick), vec![]);
}

//! The term rules every role shares (Raft paper §5.1).

use super::fixture::*;
use crate::{NodeId, RequestError, Role, Term};

#[test]
fn higher_term_append_makes_a_candidate_follow_the_sender() {
    // Raft paper §5.1: "If a candidate or leader discovers that its term is
    // out of date, it immediately reverts to follower state"; §5.2: the
    // sender of an append of that term is its leader.
    let mut core = CoreBuilder::new(1)
        .term(1)
        .config(|config| config.pre_vote = false)
        .build();
    tick_until_outputs(&mut core);
    assert_eq!(core.role(), Role::Candidate);
    let outputs = deliver(
        &mut core,
        message(3, 1, 3, append_entries((0, 0), vec![], 0, 0)),
    );
    assert_eq!(
        outputs,
        vec![
            save_hard_state(3, None),
            send(1, 3, 3, append_accepted(0, 0, 0))
        ]
    );
    let status = core.status();
    assert_eq!((status.role, status.term), (Role::Follower, Term(3)));
    assert_eq!(status.leader, Some(NodeId(3)));
}

#[test]
fn deposed_leader_fails_its_pending_proposals_and_reads() {
    // Raft paper §5.1: a leader that sees a higher term reverts to follower.
    // Its accepted but unapplied proposals may or may not commit under the
    // new leader (LeadershipLost: outcome unknown); its unconfirmed reads
    // had no effect (NotLeader), and both point at the new leader.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    core.step(propose(1, "x=1"));
    core.step(read(2));
    core.take_outputs();
    let outputs = deliver(
        &mut core,
        message(3, 1, 2, append_entries((1, 1), vec![], 1, 0)),
    );
    assert_eq!(
        outputs,
        vec![
            save_hard_state(2, None),
            failed(
                1,
                RequestError::LeadershipLost {
                    leader_hint: Some(NodeId(3))
                }
            ),
            failed(2, not_leader(Some(3))),
            send(1, 3, 2, append_accepted(1, 2, 0)),
        ]
    );
    assert_eq!(core.role(), Role::Follower);
    assert_eq!(core.leader(), Some(NodeId(3)));
}

#[test]
fn stale_append_is_rejected_with_the_newer_term() {
    // Raft paper Figure 2, AppendEntries rule 1: "Reply false if term <
    // currentTerm"; the reply carries currentTerm so the stale leader steps
    // down (§5.1). It echoes nothing of the stale append (rejected index 0,
    // round 0): node 2 may have been elected again in term 3 by the time
    // the reply arrives, and would take an echo as an answer to its new
    // term's appends (probing past its own log, or counting read rounds).
    let mut core = CoreBuilder::new(1).log(&[1, 3]).term(3).build();
    let outputs = deliver(
        &mut core,
        message(2, 1, 2, append_entries((1, 1), vec![entry(2, 2)], 1, 4)),
    );
    assert_eq!(outputs, vec![send(1, 2, 3, append_rejected(0, None, 2, 0))]);
    assert_eq!(core.term(), Term(3));
    assert_eq!(core.status().last_term, Term(3));
}

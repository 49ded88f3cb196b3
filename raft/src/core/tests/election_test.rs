//! Elections: timeouts, PreVote, candidates and becoming leader.

use std::collections::BTreeSet;

use super::fixture::*;
use crate::{NodeId, Role, Term};

#[test]
fn follower_times_out_within_the_randomized_range() {
    // Raft paper §5.2: "election timeouts are chosen randomly from a fixed
    // interval", here [election_ticks_min, election_ticks_max).
    let mut timeouts = BTreeSet::new();
    for seed in 0..32 {
        let mut core = CoreBuilder::new(1).seed(seed).build();
        let (ticks, outputs) = tick_until_outputs(&mut core);
        assert!(
            (10..20).contains(&ticks),
            "seed {seed}: fired after {ticks} ticks"
        );
        assert_eq!(
            outputs,
            vec![
                send(1, 2, 1, pre_vote_request((0, 0))),
                send(1, 3, 1, pre_vote_request((0, 0))),
            ],
            "seed {seed}"
        );
        timeouts.insert(ticks);
    }
    // The timeout really is drawn per seed, not fixed.
    assert!(
        timeouts.len() > 1,
        "every seed timed out after {timeouts:?}"
    );
}

#[test]
fn pre_vote_asks_for_the_next_term_without_saving_a_hard_state() {
    // Dissertation §9.6: a pre-candidate asks whether it could win an
    // election in term+1 without incrementing its own term.
    let mut core = CoreBuilder::new(1).log(&[1]).term(1).build();
    let (_, outputs) = tick_until_outputs(&mut core);
    assert_eq!(
        outputs,
        vec![
            send(1, 2, 2, pre_vote_request((1, 1))),
            send(1, 3, 2, pre_vote_request((1, 1))),
        ]
    );
    let status = core.status();
    assert_eq!(status.role, Role::PreCandidate);
    assert_eq!((status.term, status.voted_for), (Term(1), None));
}

#[test]
fn pre_candidate_with_a_quorum_saves_its_vote_before_requesting_votes() {
    // Dissertation §9.6: only after a majority grants the pre-vote does the
    // node increment its term and run a normal election. Raft paper Figure
    // 2: currentTerm and votedFor are persisted before answering RPCs, so
    // the self-vote is saved before any vote request goes out.
    let mut core = CoreBuilder::new(1).log(&[1]).term(1).build();
    tick_until_outputs(&mut core);
    let outputs = deliver(&mut core, message(2, 1, 2, pre_vote_response(true)));
    assert_eq!(
        outputs,
        vec![
            save_hard_state(2, Some(1)),
            send(1, 2, 2, vote_request((1, 1))),
            send(1, 3, 2, vote_request((1, 1))),
        ]
    );
    assert_eq!(core.role(), Role::Candidate);
}

#[test]
fn candidate_with_a_quorum_becomes_leader_and_replicates_a_noop() {
    // Raft paper §5.2: "A candidate wins an election if it receives votes
    // from a majority of the servers". §8: each leader commits a blank no-op
    // entry at the start of its term; Figure 2: it then sends AppendEntries
    // to each server.
    let mut core = CoreBuilder::new(1).log(&[1]).term(1).build();
    tick_until_outputs(&mut core);
    deliver(&mut core, message(2, 1, 2, pre_vote_response(true)));
    let outputs = deliver(&mut core, message(3, 1, 2, vote_response(true)));
    assert_eq!(
        outputs,
        vec![
            append_log(vec![noop(2, 2)]),
            send(1, 2, 2, append_entries((1, 1), vec![noop(2, 2)], 0, 0)),
            send(1, 3, 2, append_entries((1, 1), vec![noop(2, 2)], 0, 0)),
        ]
    );
    assert_eq!(core.role(), Role::Leader);
    assert_eq!(core.leader(), Some(NodeId(1)));
}

#[test]
fn single_node_cluster_elects_itself() {
    // Raft paper §5.2: a majority of a one-server cluster is the server
    // itself, so its own vote wins the election at once.
    let mut core = CoreBuilder::new(1).voters(&[1]).build();
    let (_, outputs) = tick_until_outputs(&mut core);
    assert_eq!(
        outputs,
        vec![save_hard_state(1, Some(1)), append_log(vec![noop(1, 1)])]
    );
    assert_eq!(core.role(), Role::Leader);
    // Its own durable copy is a majority: the no-op commits.
    assert_eq!(
        step(&mut core, persisted(1, 1)),
        vec![apply(vec![noop(1, 1)])]
    );
}

#[test]
fn without_pre_vote_a_timeout_starts_a_real_election() {
    // Raft paper §5.2: "a follower increments its current term and
    // transitions to candidate state. It then votes for itself and issues
    // RequestVote RPCs".
    let mut core = CoreBuilder::new(1)
        .log(&[1])
        .term(1)
        .config(|config| config.pre_vote = false)
        .build();
    let (_, outputs) = tick_until_outputs(&mut core);
    assert_eq!(
        outputs,
        vec![
            save_hard_state(2, Some(1)),
            send(1, 2, 2, vote_request((1, 1))),
            send(1, 3, 2, vote_request((1, 1))),
        ]
    );
    assert_eq!(core.role(), Role::Candidate);
}

#[test]
fn candidate_refused_by_a_majority_returns_to_follower() {
    // Raft paper §5.2: a candidate that cannot win waits for a leader or a
    // new timeout; two refusals of three voters end this election.
    let mut core = CoreBuilder::new(1)
        .log(&[1])
        .term(1)
        .config(|config| config.pre_vote = false)
        .build();
    tick_until_outputs(&mut core);
    assert_eq!(
        deliver(&mut core, message(2, 1, 2, vote_response(false))),
        vec![]
    );
    assert_eq!(core.role(), Role::Candidate);
    assert_eq!(
        deliver(&mut core, message(3, 1, 2, vote_response(false))),
        vec![]
    );
    let status = core.status();
    assert_eq!(status.role, Role::Follower);
    // The vote for itself in term 2 stays.
    assert_eq!((status.term, status.voted_for), (Term(2), Some(NodeId(1))));
}

#[test]
fn timeout_now_starts_an_election_at_once_that_voters_in_a_lease_honour() {
    // Dissertation §3.10: on TimeoutNow the transfer target "starts a new
    // election" at once (no pre-vote round: the leader asked for it), and
    // §4.2.3: its requests are marked so voters that just heard from the
    // leader still answer.
    let mut core = CoreBuilder::new(1).log(&[1]).term(1).follower_of(2);
    let outputs = deliver(&mut core, message(2, 1, 1, crate::MessageBody::TimeoutNow));
    assert_eq!(
        outputs,
        vec![
            save_hard_state(2, Some(1)),
            send(1, 2, 2, transfer_vote_request((1, 1))),
            send(1, 3, 2, transfer_vote_request((1, 1))),
        ]
    );
    assert_eq!(core.role(), Role::Candidate);
}

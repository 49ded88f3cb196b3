//! Voting: one vote per term, the log comparison, pre-votes and the
//! CheckQuorum leader lease.

use super::fixture::*;
use crate::{Config, NodeId, Term};

#[test]
fn vote_is_granted_once_per_term_and_saved_before_the_answer() {
    // Raft paper §5.2: "Each server will vote for at most one candidate in a
    // given term". Figure 2: votedFor is persistent state, updated on stable
    // storage before responding to RPCs.
    let mut core = CoreBuilder::new(1).log(&[1]).term(2).build();
    let outputs = deliver(&mut core, message(2, 1, 2, vote_request((1, 1))));
    assert_eq!(
        outputs,
        vec![
            save_hard_state(2, Some(2)),
            send(1, 2, 2, vote_response(true))
        ]
    );
}

#[test]
fn second_candidate_of_the_same_term_is_refused() {
    // Raft paper §5.2: at most one vote per term, first-come-first-served.
    let mut core = CoreBuilder::new(1).log(&[1]).term(2).voted_for(2).build();
    let outputs = deliver(&mut core, message(3, 1, 2, vote_request((1, 1))));
    assert_eq!(outputs, vec![send(1, 3, 2, vote_response(false))]);
    assert_eq!(core.status().voted_for, Some(NodeId(2)));
}

#[test]
fn candidate_with_an_older_last_term_is_refused() {
    // Raft paper §5.4.1: a voter denies its vote if its own log is more
    // up-to-date: "If the logs have last entries with different terms, then
    // the log with the later term is more up-to-date" (however long the
    // other is). The higher term is still adopted (§5.1).
    let mut core = CoreBuilder::new(1).log(&[1, 2]).term(2).build();
    let outputs = deliver(&mut core, message(2, 1, 3, vote_request((5, 1))));
    assert_eq!(
        outputs,
        vec![
            save_hard_state(3, None),
            send(1, 2, 3, vote_response(false))
        ]
    );
}

#[test]
fn candidate_with_a_shorter_log_of_the_same_last_term_is_refused() {
    // Raft paper §5.4.1: "If the logs end with the same term, then whichever
    // log is longer is more up-to-date."
    let mut core = CoreBuilder::new(1).log(&[1, 2, 2]).term(2).build();
    let outputs = deliver(&mut core, message(2, 1, 3, vote_request((2, 2))));
    assert_eq!(
        outputs,
        vec![
            save_hard_state(3, None),
            send(1, 2, 3, vote_response(false))
        ]
    );
}

#[test]
fn pre_vote_grant_changes_no_state_and_answers_with_the_requested_term() {
    // Dissertation §9.6: a pre-vote asks whether the voter *would* vote; the
    // voter neither adopts the term nor records a vote, even when it already
    // voted in its current term.
    let mut core = CoreBuilder::new(1).log(&[1]).term(2).voted_for(3).build();
    let outputs = deliver(&mut core, message(2, 1, 3, pre_vote_request((1, 1))));
    assert_eq!(outputs, vec![send(1, 2, 3, pre_vote_response(true))]);
    let status = core.status();
    assert_eq!((status.term, status.voted_for), (Term(2), Some(NodeId(3))));
}

#[test]
fn follower_in_a_leader_lease_ignores_a_higher_term_vote_request() {
    // Dissertation §4.2.3 / §9.6 (CheckQuorum): "if a server receives a
    // RequestVote request within the minimum election timeout of hearing
    // from a current leader, it does not update its term or grant its vote".
    let mut core = CoreBuilder::new(1).log(&[1]).term(1).follower_of(2);
    let outputs = deliver(&mut core, message(3, 1, 2, vote_request((1, 1))));
    assert_eq!(outputs, vec![]);
    assert_eq!(core.term(), Term(1));
    assert_eq!(core.leader(), Some(NodeId(2)));
}

#[test]
fn follower_in_a_leader_lease_honours_a_leadership_transfer() {
    // Dissertation §3.10 / §4.2.3: a RequestVote from a leadership transfer
    // is expected by the leader, so the lease must not block it.
    let mut core = CoreBuilder::new(1).log(&[1]).term(1).follower_of(2);
    let outputs = deliver(&mut core, message(3, 1, 2, transfer_vote_request((1, 1))));
    // The new term and the vote in it are saved in one write.
    assert_eq!(
        outputs,
        vec![
            save_hard_state(2, Some(3)),
            send(1, 3, 2, vote_response(true)),
        ]
    );
}

#[test]
fn stale_pre_vote_is_refused_with_the_current_term() {
    // Raft paper §5.1: a request with a stale term is rejected, and the
    // answer carries the current term so the sender can catch up. Without an
    // answer a pre-candidate would never learn it is behind (dissertation
    // §9.6 never raises its term).
    let mut core = CoreBuilder::new(1).log(&[1]).term(5).build();
    let outputs = deliver(&mut core, message(2, 1, 3, pre_vote_request((1, 1))));
    assert_eq!(outputs, vec![send(1, 2, 5, pre_vote_response(false))]);
}

#[test]
fn check_quorum_leader_ignores_a_disruptive_vote_request() {
    // Dissertation §4.2.3: a server that believes a current leader exists
    // (here: is that leader) disregards RequestVote, so a node that rejoins
    // from a partition with a high term cannot depose a healthy leader.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    let outputs = deliver(&mut core, message(2, 1, 5, vote_request((9, 4))));
    assert_eq!(outputs, vec![]);
    assert_eq!((core.role(), core.term()), (crate::Role::Leader, Term(1)));
}

/// Node 1, not a voter of its configuration (voters 2 and 3), following
/// `leader` in term 1.
fn non_voter_following(leader: u64) -> crate::RaftCore {
    CoreBuilder::new(1)
        .voters(&[2, 3])
        .log(&[1])
        .term(1)
        .follower_of(leader)
}

#[test]
fn a_node_that_may_not_campaign_forgets_a_silent_leader_and_answers_votes() {
    // A learner, or a voter that has not yet received the entry that
    // promoted it, never stands for election. When its leader has been
    // silent for a whole election timeout it must still stop believing in
    // it: otherwise its CheckQuorum lease is renewed at every timeout and it
    // ignores, for ever, the votes of the voters electing a new leader (the
    // simulator found this: seed 3009538 of 3 nodes, where node 1 was
    // promoted by an entry it never received and its vote was needed).
    let mut core = non_voter_following(2);
    let election_ticks_max = Config::new(NodeId(1)).election_ticks_max;
    assert_eq!(tick_times(&mut core, election_ticks_max), vec![]);
    assert_eq!(core.leader(), None, "the silent leader is forgotten");
    let outputs = deliver(&mut core, message(3, 1, 2, vote_request((1, 1))));
    assert_eq!(
        outputs,
        vec![
            save_hard_state(2, Some(3)),
            send(1, 3, 2, vote_response(true))
        ]
    );
}

#[test]
fn a_node_that_may_not_campaign_keeps_a_leader_it_hears_from() {
    // The counterpart: heartbeats within the election timeout keep the
    // leader known and the lease in force.
    let mut core = non_voter_following(2);
    let election_ticks_min = Config::new(NodeId(1)).election_ticks_min;
    for _ in 0..3 {
        tick_times(&mut core, election_ticks_min - 1);
        assert_eq!(core.leader(), Some(NodeId(2)));
        deliver(
            &mut core,
            message(2, 1, 1, append_entries((1, 1), vec![], 0, 0)),
        );
    }
    assert_eq!(core.leader(), Some(NodeId(2)));
    let outputs = deliver(&mut core, message(3, 1, 2, vote_request((1, 1))));
    assert_eq!(outputs, vec![], "in the lease, the vote request is ignored");
}

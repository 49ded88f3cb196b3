//! Configuration changes one server at a time (dissertation §4.1–§4.2).

use super::fixture::*;
use crate::{
    Entry, EntryPayload, Input, LogIndex, Membership, MembershipChange, MembershipRefusal,
    MessageBody, NodeId, Output, RequestError, RequestId, Role, Term,
};

fn change(request_id: u64, change: MembershipChange) -> Input {
    Input::ChangeMembership {
        request_id: RequestId(request_id),
        change,
    }
}

fn membership(voters: &[u64], learners: &[u64]) -> Membership {
    Membership {
        voters: voters.iter().copied().map(NodeId).collect(),
        learners: learners.iter().copied().map(NodeId).collect(),
        ..Membership::default()
    }
}

fn configuration_entry(index: u64, term: u64, voters: &[u64], learners: &[u64]) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        payload: EntryPayload::Configuration(membership(voters, learners).into()),
    }
}

fn refused(request_id: u64, refusal: MembershipRefusal) -> Output {
    failed(request_id, RequestError::MembershipChangeRefused(refusal))
}

#[test]
fn a_learner_is_added_at_once_but_never_counts() {
    // §4.1: the configuration takes effect as soon as its entry is in the
    // log; a learner receives entries but is not part of any majority.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    let outputs = step(
        &mut core,
        change(7, MembershipChange::AddLearner(NodeId(4), None)),
    );
    assert_eq!(
        outputs[..2],
        [
            append_log(vec![configuration_entry(2, 1, &[1, 2, 3], &[4])]),
            accepted(7, 2, 1),
        ]
    );
    assert!(outputs.contains(&send(
        1,
        4,
        1,
        append_entries(
            (1, 1),
            vec![configuration_entry(2, 1, &[1, 2, 3], &[4])],
            1,
            0
        )
    )));
    assert_eq!(core.membership(), &membership(&[1, 2, 3], &[4]));
    core.step(persisted(2, 1));
    deliver(&mut core, message(4, 1, 1, append_accepted(2, 2, 0)));
    assert_eq!(core.commit_index(), LogIndex(1), "a learner does not count");
    deliver(&mut core, message(2, 1, 1, append_accepted(2, 2, 0)));
    assert_eq!(core.commit_index(), LogIndex(2));
}

#[test]
fn one_change_at_a_time_and_only_after_the_leaders_first_commit() {
    let mut fresh = CoreBuilder::new(1).leader();
    assert_eq!(
        step(
            &mut fresh,
            change(7, MembershipChange::AddLearner(NodeId(4), None))
        ),
        vec![refused(7, MembershipRefusal::LeaderNotReady)]
    );
    let mut core = CoreBuilder::new(1).leader_in_sync();
    step(
        &mut core,
        change(7, MembershipChange::AddLearner(NodeId(4), None)),
    );
    assert_eq!(
        step(
            &mut core,
            change(8, MembershipChange::AddLearner(NodeId(5), None))
        ),
        vec![refused(8, MembershipRefusal::ChangeInProgress(LogIndex(2)))]
    );
    assert_eq!(
        step(&mut core, change(9, MembershipChange::Remove(NodeId(9)))),
        vec![refused(9, MembershipRefusal::ChangeInProgress(LogIndex(2)))]
    );
    core.step(persisted(2, 1));
    deliver(&mut core, message(2, 1, 1, append_accepted(2, 2, 0)));
    let outputs = step(
        &mut core,
        change(10, MembershipChange::AddLearner(NodeId(5), None)),
    );
    assert!(outputs.contains(&accepted(10, 3, 1)), "{outputs:?}");
}

#[test]
fn a_lagging_learner_is_promoted_only_once_caught_up() {
    let mut core = CoreBuilder::new(1)
        .config(|config| config.max_promotion_lag = 2)
        .leader_in_sync();
    step(
        &mut core,
        change(1, MembershipChange::AddLearner(NodeId(4), None)),
    );
    for (request, command) in [(2, "a"), (3, "b"), (4, "c")] {
        step(&mut core, propose(request, command));
    }
    core.step(persisted(5, 1));
    deliver(&mut core, message(2, 1, 1, append_accepted(5, 5, 0)));
    assert_eq!(core.commit_index(), LogIndex(5));
    assert_eq!(
        step(
            &mut core,
            change(5, MembershipChange::PromoteLearner(NodeId(4)))
        ),
        vec![refused(
            5,
            MembershipRefusal::LearnerBehind {
                node: NodeId(4),
                behind: 5,
                allowed: 2
            }
        )]
    );
    deliver(&mut core, message(4, 1, 1, append_accepted(4, 5, 0)));
    let outputs = step(
        &mut core,
        change(6, MembershipChange::PromoteLearner(NodeId(4))),
    );
    assert!(outputs.contains(&accepted(6, 6, 1)), "{outputs:?}");
    assert_eq!(core.membership(), &membership(&[1, 2, 3, 4], &[]));
}

#[test]
fn a_follower_follows_the_latest_configuration_and_undoes_a_truncated_one() {
    let mut core = CoreBuilder::new(2).log(&[1]).term(1).follower_of(1);
    deliver(
        &mut core,
        message(
            1,
            2,
            1,
            append_entries((1, 1), vec![configuration_entry(2, 1, &[1, 2], &[])], 1, 0),
        ),
    );
    assert_eq!(core.membership(), &membership(&[1, 2], &[]));
    // A leader of term 2 replaces the uncommitted change.
    deliver(
        &mut core,
        message(3, 2, 2, append_entries((1, 1), vec![noop(2, 2)], 1, 0)),
    );
    assert_eq!(core.membership(), &membership(&[1, 2, 3], &[]));
}

#[test]
fn a_leader_that_removes_itself_steps_down_once_the_removal_commits() {
    let mut core = CoreBuilder::new(1).leader_in_sync();
    step(&mut core, change(7, MembershipChange::Remove(NodeId(1))));
    core.step(persisted(2, 1));
    assert_eq!(core.role(), Role::Leader);
    // Until it steps down it takes no proposals: its log ends at its
    // removal, so whoever acknowledges the removal holds all of it.
    assert_eq!(
        step(&mut core, propose(8, "late")),
        [Output::RequestFailed {
            request_id: RequestId(8),
            error: RequestError::NotLeader { leader_hint: None },
        }]
    );
    deliver(&mut core, message(2, 1, 1, append_accepted(2, 2, 0)));
    assert_eq!(
        core.commit_index(),
        LogIndex(1),
        "the leader no longer counts itself: {{2, 3}} need both"
    );
    let outputs = deliver(&mut core, message(3, 1, 1, append_accepted(2, 2, 0)));
    assert_eq!(core.commit_index(), LogIndex(2));
    assert_eq!(core.role(), Role::Follower);
    let mut without_the_leader = configuration_entry(2, 1, &[2, 3], &[]);
    if let EntryPayload::Configuration(membership) = &mut without_the_leader.payload {
        std::sync::Arc::make_mut(membership)
            .removed
            .insert(NodeId(1));
    }
    assert!(
        outputs.contains(&apply(vec![without_the_leader])),
        "{outputs:?}"
    );
    // On its way out it tells a voter that holds its whole log to campaign
    // now, rather than leave the others to wait out an election timeout.
    let handed_over: Vec<&Output> = outputs
        .iter()
        .filter(|output| matches!(output, Output::Send(message) if message.body == MessageBody::TimeoutNow))
        .collect();
    assert_eq!(
        handed_over,
        [&send(1, 2, 1, MessageBody::TimeoutNow)],
        "{outputs:?}"
    );
    // It never campaigns again.
    tick_times(&mut core, 100);
    assert_eq!(core.role(), Role::Follower);
}

#[test]
fn a_restored_log_overrides_the_snapshot_configuration() {
    let mut builder = CoreBuilder::new(1);
    builder = builder.log(&[1]).term(1);
    let mut core = builder.build();
    assert_eq!(core.membership(), &membership(&[1, 2, 3], &[]));
    core = CoreBuilder::new(1)
        .term(1)
        .log_entries(vec![entry(1, 1), configuration_entry(2, 1, &[1, 2], &[5])])
        .build();
    assert_eq!(core.membership(), &membership(&[1, 2], &[5]));
    assert_eq!(
        core.membership_at(LogIndex(1)),
        &membership(&[1, 2, 3], &[])
    );
}

#[test]
fn a_leader_removed_by_an_uncommitted_change_may_still_campaign() {
    // Found by the simulator: node 2, leader of {1, 2}, appended its own
    // removal and lost leadership before it committed. Node 1 (config
    // {1, 2}, without the removal) needs node 2's vote, which node 2 denies
    // (its log is longer). Node 2 must be able to lead once more, counting
    // votes in its latest configuration {1}, to commit its removal.
    let mut removed = CoreBuilder::new(2)
        .voters(&[1, 2])
        .term(2)
        .log_entries(vec![noop(1, 1), configuration_entry(2, 2, &[1], &[])])
        .applied(1)
        .build();
    assert!(!removed.membership().is_voter(NodeId(2)));
    let (_, outputs) = tick_until_outputs(&mut removed);
    assert!(
        outputs.contains(&send(2, 1, 3, pre_vote_request((2, 2)))),
        "{outputs:?}"
    );
    // A node removed by a committed change never campaigns.
    let mut gone = CoreBuilder::new(2)
        .voters(&[1, 2])
        .term(2)
        .log_entries(vec![noop(1, 1), configuration_entry(2, 2, &[1], &[])])
        .applied(2)
        .build();
    tick_times(&mut gone, 200);
    assert_eq!(gone.role(), Role::Follower);
    assert_eq!(gone.term(), Term(2));
}

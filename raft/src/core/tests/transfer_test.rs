//! Leadership transfer (dissertation §3.10).

use super::fixture::*;
use crate::{Config, Input, MessageBody, NodeId, Output, RequestError, Role};

fn transfer(target: u64) -> Input {
    Input::TransferLeadership {
        target: NodeId(target),
    }
}

fn refused_for_transfer(request_id: u64, target: u64) -> Output {
    failed(
        request_id,
        RequestError::TransferringLeadership {
            target: NodeId(target),
        },
    )
}

#[test]
fn a_caught_up_target_is_told_to_campaign_at_once() {
    // §3.10 step 2: once the target's log matches, "the prior leader sends
    // a TimeoutNow request to the target server".
    let mut core = CoreBuilder::new(1).leader_in_sync();
    assert_eq!(
        step(&mut core, transfer(2)),
        vec![send(1, 2, 1, MessageBody::TimeoutNow)]
    );
    assert_eq!(core.status().transfer_target, Some(NodeId(2)));
}

#[test]
fn proposals_are_refused_while_leadership_moves() {
    // §3.10: "the prior leader stops accepting new client requests", so its
    // log stops growing and the target can match it. Reads go on.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    step(&mut core, transfer(2));
    assert_eq!(
        step(&mut core, propose(7, "x")),
        vec![refused_for_transfer(7, 2)]
    );
    assert_eq!(core.status().last_index.0, 1, "nothing was appended");
    let outputs = step(&mut core, read(8));
    assert!(
        !outputs
            .iter()
            .any(|output| matches!(output, Output::RequestFailed { .. })),
        "{outputs:?}"
    );
}

#[test]
fn a_lagging_target_is_brought_up_to_date_before_timeout_now() {
    // §3.10 step 1: "the prior leader ... transfers its log entries to the
    // target server using the normal log replication mechanism".
    let mut core = CoreBuilder::new(1).leader_in_sync();
    step(&mut core, propose(7, "a"));
    step(&mut core, persisted(2, 1));
    let outputs = step(&mut core, transfer(3));
    assert!(
        !outputs.contains(&send(1, 3, 1, MessageBody::TimeoutNow)),
        "node 3 has not acknowledged index 2 yet: {outputs:?}"
    );
    let outputs = deliver(&mut core, message(3, 1, 1, append_accepted(2, 2, 0)));
    assert!(
        outputs.contains(&send(1, 3, 1, MessageBody::TimeoutNow)),
        "{outputs:?}"
    );
}

#[test]
fn an_unsuccessful_transfer_is_abandoned_after_an_election_timeout() {
    // §3.10: "If the transfer does not complete within an election timeout,
    // the prior leader aborts the transfer and resumes accepting client
    // requests."
    let election_timeout = Config::new(NodeId(1)).election_ticks_min;
    let mut core = CoreBuilder::new(1).leader_in_sync();
    step(&mut core, propose(6, "a"));
    step(&mut core, persisted(2, 1));
    // Node 3 never answers, so it never catches up.
    step(&mut core, transfer(3));
    tick_times(&mut core, election_timeout - 1);
    assert_eq!(
        step(&mut core, propose(7, "b")),
        vec![refused_for_transfer(7, 3)]
    );
    tick_times(&mut core, 1);
    assert_eq!(core.status().transfer_target, None);
    assert_eq!(core.role(), Role::Leader);
    let outputs = step(&mut core, propose(8, "c"));
    assert!(outputs.contains(&accepted(8, 3, 1)), "{outputs:?}");
}

#[test]
fn timeout_now_is_sent_again_each_heartbeat_interval_while_it_has_no_effect() {
    // A lost TimeoutNow must not stall the transfer until it is abandoned.
    let config = Config::new(NodeId(1));
    let mut core = CoreBuilder::new(1).leader_in_sync();
    step(&mut core, transfer(2));
    let outputs = tick_times(&mut core, config.heartbeat_ticks);
    let sent = outputs
        .iter()
        .filter(|output| **output == send(1, 2, 1, MessageBody::TimeoutNow))
        .count();
    assert_eq!(sent, 1, "{outputs:?}");
}

#[test]
fn transfers_to_self_to_a_stranger_or_by_a_follower_are_ignored() {
    let mut core = CoreBuilder::new(1).leader_in_sync();
    assert_eq!(step(&mut core, transfer(1)), vec![]);
    assert_eq!(step(&mut core, transfer(9)), vec![]);
    assert_eq!(core.status().transfer_target, None);
    let outputs = step(&mut core, propose(7, "x"));
    assert!(outputs.contains(&accepted(7, 2, 1)), "{outputs:?}");

    let mut follower = CoreBuilder::new(2).term(1).follower_of(1);
    assert_eq!(step(&mut follower, transfer(3)), vec![]);
}

#[test]
fn the_old_leader_steps_down_when_the_target_wins() {
    // The target's election raises the term; hearing it, the prior leader
    // becomes a follower and the transfer ends with its leadership.
    let mut core = CoreBuilder::new(1).leader_in_sync();
    step(&mut core, transfer(2));
    deliver(&mut core, message(2, 1, 2, transfer_vote_request((1, 1))));
    assert_eq!(core.role(), Role::Follower);
    assert_eq!(core.status().transfer_target, None);
}

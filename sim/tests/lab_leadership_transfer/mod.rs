//! Leadership transfer (dissertation §3.10) on simulated clusters: the
//! target leads within an election timeout with nothing committed lost, and
//! a transfer that cannot complete is abandoned so the leader serves again.

use raft::Role;
use sim::Cluster;

use crate::lab_support::{after, commit, for_each_seed, one_leader, ELECTION_TICKS};

#[test]
fn leadership_moves_to_the_chosen_follower() {
    for_each_seed(400..405, |seed| {
        let mut cluster = Cluster::scripted(5, seed);
        let first = commit(&mut cluster, 10, 5);
        let leader = one_leader(&mut cluster);
        let target = after(leader, 2, 5);
        let term = cluster.status(leader).unwrap().term;
        cluster.transfer_leadership(leader, target);
        cluster.run_ticks(ELECTION_TICKS).unwrap();
        let status = cluster.status(target).unwrap();
        assert_eq!(
            (status.role, status.term),
            (Role::Leader, raft::Term(term.0 + 1)),
            "seed {seed}: node {target} should lead the next term"
        );
        assert_eq!(cluster.status(leader).unwrap().role, Role::Follower);
        // Nothing committed was lost, and the new leader commits.
        let second = commit(&mut cluster, 11, 5);
        assert!(second > first);
        assert_eq!(cluster.applied_count(first), (5, Some(10)));
    });
}

#[test]
fn a_transfer_to_an_unreachable_follower_is_abandoned() {
    for_each_seed(410..415, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        commit(&mut cluster, 10, 3);
        let leader = one_leader(&mut cluster);
        let target = after(leader, 1, 3);
        cluster.disconnect(target);
        let term = cluster.status(leader).unwrap().term;
        cluster.transfer_leadership(leader, target);
        assert_eq!(
            cluster.propose(leader, 11),
            None,
            "seed {seed}: proposals are refused while leadership moves"
        );
        // Abandoned after an election timeout: the same leader, the same
        // term, and proposals accepted again.
        cluster.run_ticks(ELECTION_TICKS).unwrap();
        let status = cluster.status(leader).unwrap();
        assert_eq!(
            (status.role, status.term),
            (Role::Leader, term),
            "seed {seed}"
        );
        assert_eq!(status.transfer_target, None);
        assert!(cluster.propose(leader, 12).is_some(), "seed {seed}");
        cluster.reconnect(target);
        commit(&mut cluster, 13, 3);
    });
}

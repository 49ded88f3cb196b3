//! Disk faults in scripted clusters: a node whose disk is found corrupt at
//! a restart refuses to start, for good, and the others keep committing.

use sim::Cluster;

use crate::lab_support::{after, commit, for_each_seed, one_leader, ELECTION_TICKS};

/// The leader's disk is damaged while it is down: it refuses to start at
/// every restart, and the two others elect a leader and commit, also across
/// a crash and restart of one of them.
#[test]
fn a_corrupt_node_never_restarts_and_the_other_two_commit() {
    for_each_seed(400..405, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        let leader = one_leader(&mut cluster);
        for value in 1..=5 {
            commit(&mut cluster, value, 3);
        }

        cluster.crash_node(leader);
        let entry = cluster.corrupt_disk(leader);
        assert!(entry.is_some(), "seed {seed}: no record to damage");
        cluster.restart(leader);
        assert!(
            !cluster.is_up(leader),
            "seed {seed}: started on a corrupt disk"
        );
        assert!(cluster.refused_to_start(leader));

        let new_leader = one_leader(&mut cluster);
        assert_ne!(new_leader, leader);
        for value in 6..=10 {
            commit(&mut cluster, value, 2);
        }

        // One of the two crashes and returns; the corrupt one is restarted
        // again and refuses again.
        let survivor = if after(leader, 1, 3) == new_leader {
            after(leader, 2, 3)
        } else {
            after(leader, 1, 3)
        };
        cluster.crash_node(survivor);
        cluster.run_ticks(2 * ELECTION_TICKS).unwrap();
        cluster.restart(survivor);
        cluster.restart(leader);
        assert!(
            !cluster.is_up(leader),
            "seed {seed}: started on a corrupt disk"
        );
        for value in 11..=15 {
            commit(&mut cluster, value, 2);
        }
        assert!(!cluster.is_up(leader));
    });
}

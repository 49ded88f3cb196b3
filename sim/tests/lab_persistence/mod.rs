//! The lab's 3C tests: crashes and restarts (a crashed node keeps only what
//! its disk flushed), the Figure 8 scenarios and churn.

use raft::{LogIndex, NodeId};
use sim::simulator::random::{chance, pick, uniform};
use sim::Cluster;

use crate::lab_support::{
    after, commit, commit_within, for_each_seed, one_leader, test_rng, Proposers, ELECTION_TICKS,
};

/// Restarts every node and reconnects it.
fn restore_all(cluster: &mut Cluster) {
    for node in cluster.node_ids() {
        cluster.restart(node);
        cluster.reconnect(node);
    }
}

/// Panics unless every node applied `value` at `index`.
fn assert_applied_everywhere(cluster: &Cluster, index: LogIndex, value: u64) {
    let nodes = cluster.node_ids().len();
    assert_eq!(
        cluster.applied_count(index),
        (nodes, Some(value)),
        "value {value} is not applied at {index} on all {nodes} nodes"
    );
}

/// Everything committed survives crashing and restarting every node, the
/// leader, and a follower, and the cluster keeps committing each time.
#[test]
fn persist_crash_and_restart() {
    for_each_seed(310..313, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        let mut committed = vec![(commit(&mut cluster, 11, 3), 11)];

        // Every node at once.
        for node in cluster.node_ids() {
            cluster.crash_node(node);
        }
        for node in cluster.node_ids() {
            cluster.restart(node);
        }
        committed.push((commit(&mut cluster, 12, 3), 12));
        for (index, value) in &committed {
            assert_applied_everywhere(&cluster, *index, *value);
        }

        // The leader, restarted at once.
        let leader1 = one_leader(&mut cluster);
        cluster.crash_node(leader1);
        cluster.restart(leader1);
        committed.push((commit(&mut cluster, 13, 3), 13));

        // The leader, kept down while the others commit.
        let leader2 = one_leader(&mut cluster);
        cluster.crash_node(leader2);
        committed.push((commit(&mut cluster, 14, 2), 14));
        cluster.restart(leader2);
        committed.push((commit(&mut cluster, 15, 3), 15));

        // A follower, kept down while the others commit.
        let leader3 = one_leader(&mut cluster);
        let follower = after(leader3, 1, 3);
        cluster.crash_node(follower);
        committed.push((commit(&mut cluster, 16, 2), 16));
        cluster.restart(follower);
        committed.push((commit(&mut cluster, 17, 3), 17));

        for (index, value) in &committed {
            assert_applied_everywhere(&cluster, *index, *value);
        }
    });
}

/// Five nodes, repeatedly: two followers crash, the other three commit;
/// then three crash (the leader among them) and only the first two return,
/// which cannot commit alone; then enough return to commit again.
#[test]
fn persist_more_crashes() {
    for_each_seed(320..323, |seed| {
        let mut cluster = Cluster::scripted(5, seed);
        let mut value = 10;
        let mut committed = Vec::new();
        for _ in 0..5 {
            value += 1;
            committed.push((commit(&mut cluster, value, 5), value));
            let leader = one_leader(&mut cluster);

            cluster.crash_node(after(leader, 1, 5));
            cluster.crash_node(after(leader, 2, 5));
            value += 1;
            committed.push((commit(&mut cluster, value, 3), value));

            for offset in [0, 3, 4] {
                cluster.crash_node(after(leader, offset, 5));
            }
            cluster.restart(after(leader, 1, 5));
            cluster.restart(after(leader, 2, 5));
            cluster.run_ticks(2 * ELECTION_TICKS).unwrap();
            cluster.restart(after(leader, 3, 5));
            value += 1;
            committed.push((commit(&mut cluster, value, 3), value));

            cluster.restart(after(leader, 4, 5));
            cluster.restart(leader);
        }
        commit(&mut cluster, 1000, 5);
        for (index, value) in committed {
            assert_applied_everywhere(&cluster, index, value);
        }
    });
}

/// A follower cut off while the others commit; then the two that have the
/// new entry crash and only one returns, beside the stale follower: the
/// entry must survive in that one and commit onward.
#[test]
fn persist_partitioned_follower_and_crashes() {
    for_each_seed(330..333, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        commit(&mut cluster, 101, 3);

        let leader = one_leader(&mut cluster);
        let stale = after(leader, 2, 3);
        cluster.disconnect(stale);
        let index = commit(&mut cluster, 102, 2);

        cluster.crash_node(leader);
        cluster.crash_node(after(leader, 1, 3));
        cluster.reconnect(stale);
        cluster.restart(leader);
        commit(&mut cluster, 103, 2);

        cluster.restart(after(leader, 1, 3));
        commit(&mut cluster, 104, 3);
        assert_applied_everywhere(&cluster, index, 102);
    });
}

/// Raft paper Figure 8: leaders crash right after proposing, again and
/// again, with a majority always up, so entries of old terms are often
/// present on a majority without being committable. The safety checks run
/// throughout; at the end everyone is back and a value reaches all.
#[test]
fn figure_8_reliable() {
    for_each_seed(340..345, |seed| {
        let mut cluster = Cluster::scripted(5, seed);
        let mut rng = test_rng(seed);
        let nodes = cluster.node_ids();
        commit(&mut cluster, 1, 1);

        let mut value = 100;
        for _ in 0..500 {
            let mut leader = None;
            for node in &nodes {
                value += 1;
                if cluster.propose(*node, value).is_some() {
                    leader = Some(*node);
                }
            }
            // Mostly quick turns (the entries half replicated), sometimes long
            // enough for an election.
            let ticks = if chance(&mut rng, 0.1) {
                uniform(&mut rng, 1, ELECTION_TICKS + 1)
            } else {
                uniform(&mut rng, 1, 3)
            };
            cluster.run_ticks(ticks).unwrap();

            if let Some(leader) = leader {
                if chance(&mut rng, 0.7) {
                    cluster.crash_node(leader);
                }
            }
            let up = nodes.iter().filter(|node| cluster.is_up(**node)).count();
            if up < 3 {
                let node = pick(&mut rng, &nodes);
                cluster.restart(node);
            }
        }

        restore_all(&mut cluster);
        commit_within(&mut cluster, 1_000_000, 5, 50 * ELECTION_TICKS);
    });
}

/// Figure 8 on a lossy, duplicating, reordering network, with leaders cut
/// off instead of crashed; at the end the network is reliable again and a
/// value reaches all five.
#[test]
fn figure_8_unreliable() {
    for_each_seed(350..355, |seed| {
        let mut cluster = Cluster::scripted(5, seed);
        let mut rng = test_rng(seed);
        let nodes = cluster.node_ids();
        cluster.set_unreliable(true);
        commit(&mut cluster, 1, 1);

        let mut value = 100;
        let mut connected = nodes.len();
        let mut cut: Vec<NodeId> = Vec::new();
        for _ in 0..500 {
            let mut leader = None;
            for node in &nodes {
                value += 1;
                if cluster.propose(*node, value).is_some() && !cut.contains(node) {
                    leader = Some(*node);
                }
            }
            let ticks = if chance(&mut rng, 0.1) {
                uniform(&mut rng, 1, ELECTION_TICKS / 2 + 1)
            } else {
                uniform(&mut rng, 1, 3)
            };
            cluster.run_ticks(ticks).unwrap();

            if let Some(leader) = leader {
                if chance(&mut rng, 0.5) {
                    cluster.disconnect(leader);
                    cut.push(leader);
                    connected -= 1;
                }
            }
            if connected < 3 {
                let node = pick(&mut rng, &nodes);
                if let Some(position) = cut.iter().position(|cut_node| *cut_node == node) {
                    cluster.reconnect(node);
                    cut.remove(position);
                    connected += 1;
                }
            }
        }

        cluster.set_unreliable(false);
        restore_all(&mut cluster);
        commit_within(&mut cluster, 1_000_000, 5, 50 * ELECTION_TICKS);
    });
}

/// Several proposers keep offering values while nodes are cut off,
/// reconnected, crashed and restarted at random, with an occasional
/// `commit_one`. At the end, with everyone back, a value reaches all nodes,
/// and every value seen committed earlier is at its index on every node.
fn churn(seed: u64, unreliable: bool) {
    let mut cluster = Cluster::scripted(5, seed);
    let mut rng = test_rng(seed);
    let nodes = cluster.node_ids();
    cluster.set_unreliable(unreliable);
    let mut proposers = Proposers::new(3, 10_000);
    let mut one_value = 1_000_000;

    let mut tick = 0;
    for _ in 0..40 {
        if chance(&mut rng, 0.2) {
            cluster.disconnect(pick(&mut rng, &nodes));
        }
        if chance(&mut rng, 0.5) {
            let node = pick(&mut rng, &nodes);
            cluster.restart(node);
            cluster.reconnect(node);
        }
        if chance(&mut rng, 0.2) {
            cluster.crash_node(pick(&mut rng, &nodes));
        }
        for _ in 0..uniform(&mut rng, ELECTION_TICKS / 2, 2 * ELECTION_TICKS) {
            proposers.step(&mut cluster, &mut rng, tick);
            cluster.run_ticks(1).unwrap();
            tick += 1;
        }
        // Now and then the lab's one() too, content with one node applying.
        if chance(&mut rng, 0.3) {
            one_value += 1;
            if let Some(index) = cluster
                .commit_one(one_value, 1, 2 * ELECTION_TICKS)
                .unwrap()
            {
                proposers.confirmed.push((index, one_value));
            }
        }
    }

    cluster.set_unreliable(false);
    restore_all(&mut cluster);
    let last = commit_within(&mut cluster, 2_000_000, 5, 50 * ELECTION_TICKS);
    // Proposals still pending may land now; record what they see.
    proposers.step(&mut cluster, &mut rng, tick);

    assert!(
        !proposers.confirmed.is_empty(),
        "seed {seed}: nothing committed during the churn"
    );
    for (index, value) in &proposers.confirmed {
        assert!(*index < last);
        assert_applied_everywhere(&cluster, *index, *value);
    }
}

/// Churn on a reliable network.
#[test]
fn reliable_churn() {
    for_each_seed(360..365, |seed| churn(seed, false));
}

/// Churn on a lossy, duplicating, reordering network.
#[test]
fn unreliable_churn() {
    for_each_seed(370..375, |seed| churn(seed, true));
}

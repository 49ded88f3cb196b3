//! Scenario tests equivalent to the MIT 6.5840 Raft lab suite (3A
//! elections, 3B agreement, 3C persistence), run in the simulator's
//! simulated time with every safety check on at every step. Each test
//! follows what the lab checks, in this harness's terms: node ids are
//! 1..=N, a "crash" also loses log writes not yet flushed, and a new leader
//! first appends a no-op entry, so indexes are one higher than the lab's.
//!
//! The `simulation_checks` module tests the randomized simulator itself:
//! determinism, healthy seeds, and that each injected bug is caught; the
//! `run_n_clients` module runs the local cluster runner, real processes and
//! all, and the `chaos` module the chaos harness. (One test binary for the
//! crate keeps linking fast.)

mod chaos;
mod lab_disk_faults;
mod lab_leadership_transfer;
mod lab_persistence;
mod lab_support;
mod run_n_clients;
mod simulation_checks;

use std::collections::BTreeSet;

use raft::{LogIndex, NodeId, Term};
use sim::simulator::random::{pick, uniform};
use sim::Cluster;

use lab_support::{
    after, agreed_term, assert_no_leader, commit, conflicting_terms, for_each_seed,
    highest_applied, one_leader, test_rng, wait_applied, ELECTION_TICKS, HEARTBEAT_TICKS,
};

// ---- 3A: elections ----

/// A leader is elected, every node agrees on its term, and with no failures
/// neither the leader nor the term changes.
#[test]
fn initial_election() {
    for_each_seed(10..15, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        let nodes = cluster.node_ids();
        let leader = one_leader(&mut cluster);
        // Followers learn the term from the first heartbeat.
        cluster.run_ticks(HEARTBEAT_TICKS * 2).unwrap();
        let term = agreed_term(&cluster, &nodes);
        assert!(term.0 >= 1, "seed {seed}: term {term:?} after an election");

        cluster.run_ticks(10 * ELECTION_TICKS).unwrap();
        assert_eq!(
            agreed_term(&cluster, &nodes),
            term,
            "seed {seed}: term changed"
        );
        assert_eq!(
            cluster.leaders(),
            vec![(leader, term)],
            "seed {seed}: leader changed"
        );
    });
}

/// Losing the leader elects another; the old leader's return does not
/// disturb it; with no majority connected nobody leads; a majority elects
/// again.
#[test]
fn reelection() {
    for_each_seed(20..23, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        let leader1 = one_leader(&mut cluster);

        cluster.disconnect(leader1);
        let leader2 = one_leader(&mut cluster);
        assert_ne!(
            leader2, leader1,
            "seed {seed}: the cut-off leader was re-elected"
        );

        // The old leader rejoins: one leader, and everyone in its term.
        cluster.reconnect(leader1);
        cluster.run_ticks(2 * ELECTION_TICKS).unwrap();
        let leader3 = one_leader(&mut cluster);
        assert_eq!(
            cluster.leaders().len(),
            1,
            "seed {seed}: {:?}",
            cluster.leaders()
        );
        agreed_term(&cluster, &cluster.node_ids());

        // No quorum: the remaining node must not become leader.
        let alone = after(leader3, 2, 3);
        cluster.disconnect(leader3);
        cluster.disconnect(after(leader3, 1, 3));
        cluster.run_ticks(4 * ELECTION_TICKS).unwrap();
        assert_no_leader(&cluster, &[alone]);
        // CheckQuorum: the cut-off leader stepped down as well.
        assert_no_leader(&cluster, &cluster.node_ids());

        // A quorum again: a leader.
        cluster.reconnect(after(leader3, 1, 3));
        one_leader(&mut cluster);

        // Everyone back: still one leader.
        cluster.reconnect(leader3);
        cluster.run_ticks(2 * ELECTION_TICKS).unwrap();
        one_leader(&mut cluster);
        assert_eq!(
            cluster.leaders().len(),
            1,
            "seed {seed}: {:?}",
            cluster.leaders()
        );
    });
}

/// Seven nodes, three of them cut off at random again and again: whenever a
/// majority is connected there is a leader.
#[test]
fn many_elections() {
    for_each_seed(110..113, |seed| {
        let mut cluster = Cluster::scripted(7, seed);
        let mut rng = test_rng(seed);
        let nodes = cluster.node_ids();
        one_leader(&mut cluster);
        for _ in 0..10 {
            let mut cut = BTreeSet::new();
            while cut.len() < 3 {
                cut.insert(pick(&mut rng, &nodes));
            }
            for node in &cut {
                cluster.disconnect(*node);
            }
            // The leader may be among the cut: a new one must take over.
            let leader = one_leader(&mut cluster);
            assert!(!cut.contains(&leader));
            cluster
                .run_ticks(uniform(&mut rng, 0, ELECTION_TICKS))
                .unwrap();
            one_leader(&mut cluster);
            for node in &cut {
                cluster.reconnect(*node);
            }
        }
        one_leader(&mut cluster);
    });
}

// ---- 3B: agreement ----

/// Values commit one after another at consecutive indexes, and nothing is
/// applied before it is proposed.
#[test]
fn basic_agreement() {
    for_each_seed(210..213, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        one_leader(&mut cluster);
        let mut previous: Option<LogIndex> = None;
        for value in 101..=105 {
            let before = highest_applied(&cluster);
            if let Some(previous) = previous {
                assert_eq!(before, previous, "applied past {previous} before proposing");
            }
            let index = commit(&mut cluster, value, 3);
            if let Some(previous) = previous {
                assert_eq!(
                    index,
                    previous.next(),
                    "value {value} not at the next index"
                );
            }
            previous = Some(index);
        }
    });
}

/// Agreement continues without one follower, and stops without both.
#[test]
fn follower_failure() {
    for_each_seed(220..223, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        commit(&mut cluster, 101, 3);

        let leader1 = one_leader(&mut cluster);
        cluster.disconnect(after(leader1, 1, 3));
        commit(&mut cluster, 102, 2);
        cluster.run_ticks(ELECTION_TICKS).unwrap();
        let committed = commit(&mut cluster, 103, 2);

        // The leader loses its last follower: its proposal cannot commit.
        let leader2 = one_leader(&mut cluster);
        cluster.disconnect(after(leader2, 1, 3));
        cluster.disconnect(after(leader2, 2, 3));
        let index = cluster.propose(leader2, 104).expect("the leader accepts");
        assert_eq!(index, committed.next());
        cluster.run_ticks(4 * ELECTION_TICKS).unwrap();
        assert_eq!(
            cluster.applied_count(index).0,
            0,
            "committed without a majority"
        );

        for node in cluster.node_ids() {
            cluster.reconnect(node);
        }
        commit(&mut cluster, 105, 3);
    });
}

/// Agreement continues after the leader is cut off; with a second leader
/// cut off nothing new commits, whoever is asked; with everyone back it does.
#[test]
fn leader_failure() {
    for_each_seed(230..233, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        commit(&mut cluster, 101, 3);

        let leader1 = one_leader(&mut cluster);
        cluster.disconnect(leader1);
        commit(&mut cluster, 102, 2);
        cluster.run_ticks(ELECTION_TICKS).unwrap();
        commit(&mut cluster, 103, 2);

        let leader2 = one_leader(&mut cluster);
        cluster.disconnect(leader2);
        let before = highest_applied(&cluster);
        for node in cluster.node_ids() {
            cluster.propose(node, 104);
        }
        cluster.run_ticks(4 * ELECTION_TICKS).unwrap();
        assert_eq!(
            highest_applied(&cluster),
            before,
            "committed without a majority"
        );

        cluster.reconnect(leader1);
        cluster.reconnect(leader2);
        commit(&mut cluster, 105, 3);
    });
}

/// A follower cut off while values commit catches up when it returns.
#[test]
fn fail_agree() {
    for_each_seed(240..243, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        commit(&mut cluster, 101, 3);

        let leader = one_leader(&mut cluster);
        let follower = after(leader, 1, 3);
        cluster.disconnect(follower);
        let missed: Vec<(LogIndex, u64)> = (102..=105)
            .map(|value| (commit(&mut cluster, value, 2), value))
            .collect();
        cluster.run_ticks(ELECTION_TICKS).unwrap();

        cluster.reconnect(follower);
        commit(&mut cluster, 106, 3);
        commit(&mut cluster, 107, 3);
        for (index, value) in missed {
            assert_eq!(cluster.applied_count(index), (3, Some(value)));
        }
    });
}

/// With three of five cut off, the leader's new entry is applied nowhere;
/// after they return the cluster goes on, the entry at most overwritten.
#[test]
fn fail_no_agree() {
    for_each_seed(250..253, |seed| {
        let mut cluster = Cluster::scripted(5, seed);
        commit(&mut cluster, 10, 5);

        let leader = one_leader(&mut cluster);
        for offset in 1..=3 {
            cluster.disconnect(after(leader, offset, 5));
        }
        let index = cluster.propose(leader, 20).expect("the leader accepts");
        cluster.run_ticks(4 * ELECTION_TICKS).unwrap();
        assert_eq!(
            cluster.applied_count(index).0,
            0,
            "committed without a majority"
        );

        for offset in 1..=3 {
            cluster.reconnect(after(leader, offset, 5));
        }
        // The new leader appends its no-op at `index` (losing the old entry)
        // or after it (keeping it), then the proposal.
        let leader2 = one_leader(&mut cluster);
        let index2 = cluster
            .propose(leader2, 30)
            .expect("the new leader accepts");
        assert!(
            (index.next()..=LogIndex(index.0 + 2)).contains(&index2),
            "new proposal at {index2}, old one was at {index}"
        );
        commit(&mut cluster, 1000, 5);
    });
}

/// Proposals stepped back to back at the leader, with no time passing, get
/// distinct consecutive indexes in the order accepted and all commit.
#[test]
fn concurrent_proposals() {
    for_each_seed(260..263, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        commit(&mut cluster, 1, 3);
        let leader = one_leader(&mut cluster);
        let term = cluster.status(leader).unwrap().term;

        let values: Vec<u64> = (100..105).collect();
        let indexes: Vec<LogIndex> = values
            .iter()
            .map(|value| cluster.propose(leader, *value).expect("the leader accepts"))
            .collect();
        for pair in indexes.windows(2) {
            assert_eq!(pair[1], pair[0].next(), "indexes {indexes:?}");
        }
        for (index, value) in indexes.iter().zip(&values) {
            assert!(wait_applied(
                &mut cluster,
                *index,
                *value,
                3,
                5 * ELECTION_TICKS
            ));
        }
        assert_eq!(
            cluster.status(leader).unwrap().term,
            term,
            "leadership changed"
        );
    });
}

/// A leader cut off keeps accepting proposals that can never commit; after
/// it rejoins, those entries are replaced and new values commit.
#[test]
fn rejoin_of_partitioned_leader() {
    for_each_seed(270..273, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        commit(&mut cluster, 101, 3);

        let leader1 = one_leader(&mut cluster);
        cluster.disconnect(leader1);
        let stranded: Vec<(LogIndex, u64)> = (9102..=9104)
            .map(|value| (cluster.propose(leader1, value).expect("still leads"), value))
            .collect();

        commit(&mut cluster, 103, 2);
        let leader2 = one_leader(&mut cluster);
        cluster.disconnect(leader2);
        cluster.reconnect(leader1);
        commit(&mut cluster, 104, 2);

        cluster.reconnect(leader2);
        commit(&mut cluster, 105, 3);
        for (index, value) in stranded {
            let (count, applied) = cluster.applied_count(index);
            assert_eq!(count, 3, "index {index} not applied everywhere");
            assert_ne!(
                applied,
                Some(value),
                "stranded value {value} committed at {index}"
            );
        }
    });
}

/// Lagging logs with long uncommitted runs are repaired quickly: leaders
/// skip a whole conflicting term per rejection instead of one entry.
///
/// Five nodes: the leader and one follower keep 50 proposals that cannot
/// commit while the other three commit 50; then two of those three keep 50
/// more that cannot commit while the original pair and the third commit 50;
/// finally everyone reconnects and a value reaches all five.
#[test]
fn backup_of_long_conflicting_logs() {
    for_each_seed(280..283, |seed| {
        let mut cluster = Cluster::scripted(5, seed);
        let nodes = cluster.node_ids();
        let mut rng = test_rng(seed);
        commit(&mut cluster, 1, 5);

        // Leader 1 and one follower, alone, accept 50 proposals.
        let leader1 = one_leader(&mut cluster);
        let partner1 = after(leader1, 1, 5);
        for offset in 2..=4 {
            cluster.disconnect(after(leader1, offset, 5));
        }
        for value in 1000..1050 {
            cluster.propose(leader1, value);
        }
        cluster.run_ticks(ELECTION_TICKS / 2).unwrap();

        // The other three commit 50.
        cluster.disconnect(leader1);
        cluster.disconnect(partner1);
        for offset in 2..=4 {
            cluster.reconnect(after(leader1, offset, 5));
        }
        for value in 2000..2050 {
            commit(&mut cluster, value, 3);
        }

        // Their leader and one other, alone, accept 50 proposals.
        let leader2 = one_leader(&mut cluster);
        let third = pick(
            &mut rng,
            &[2, 3, 4]
                .map(|offset| after(leader1, offset, 5))
                .into_iter()
                .filter(|node| *node != leader2)
                .collect::<Vec<_>>(),
        );
        cluster.disconnect(third);
        for value in 3000..3050 {
            cluster.propose(leader2, value);
        }
        cluster.run_ticks(ELECTION_TICKS / 2).unwrap();
        let partner2 = nodes
            .iter()
            .copied()
            .find(|node| ![leader1, partner1, leader2, third].contains(node))
            .expect("five nodes");

        // The original pair and the third commit 50: the pair must first throw
        // away their 50 stranded entries.
        for node in &nodes {
            cluster.disconnect(*node);
        }
        let pair1 = [leader1, partner1];
        let before1: Vec<(Vec<Term>, u64)> = pair1
            .iter()
            .map(|node| {
                (
                    cluster.log_terms(*node),
                    cluster.append_rejections_sent(*node),
                )
            })
            .collect();
        for node in [leader1, partner1, third] {
            cluster.reconnect(node);
        }
        for value in 4000..4050 {
            commit(&mut cluster, value, 3);
        }
        let reference = cluster.log_terms(third);
        for (node, (log, rejections)) in pair1.iter().zip(&before1) {
            assert_catch_up_cost(&cluster, *node, log, &reference, *rejections);
        }

        // Everyone: the second pair throws away its 50 stranded entries.
        let pair2 = [leader2, partner2];
        let before2: Vec<(Vec<Term>, u64)> = pair2
            .iter()
            .map(|node| {
                (
                    cluster.log_terms(*node),
                    cluster.append_rejections_sent(*node),
                )
            })
            .collect();
        for node in &nodes {
            cluster.reconnect(*node);
        }
        commit(&mut cluster, 5000, 5);
        let reference = cluster.log_terms(leader1);
        for (node, (log, rejections)) in pair2.iter().zip(&before2) {
            assert_catch_up_cost(&cluster, *node, log, &reference, *rejections);
        }
    });
}

/// Append rejections a lagging node may send while its log is repaired,
/// beyond one per conflicting term: one "log too short" answer to the
/// leader's first guess (when the leader's log outgrew the lagging one), and
/// one heartbeat that reached the node with the same stale guess while a
/// probe was out (heartbeats go out every 2 ticks, and the whole repair
/// takes a few round trips of well under a tick each). Seen at most one
/// over the number of terms across hundreds of seeds.
const CATCH_UP_SLACK: u64 = 2;

fn assert_catch_up_cost(
    cluster: &Cluster,
    node: NodeId,
    log_before: &[Term],
    reference: &[Term],
    rejections_before: u64,
) {
    let conflicts = conflicting_terms(log_before, reference);
    let conflicting_entries = log_before
        .iter()
        .enumerate()
        .filter(|(position, term)| reference.get(*position) != Some(*term))
        .count();
    assert!(
        conflicting_entries >= 50,
        "{node} had only {conflicting_entries} stray entries"
    );
    let rejections = cluster.append_rejections_sent(node) - rejections_before;
    assert!(
        rejections <= conflicts.len() as u64 + CATCH_UP_SLACK,
        "{node} sent {rejections} rejections to repair {conflicting_entries} entries of terms {conflicts:?}"
    );
}

/// Message budgets: an election, agreement on N entries and an idle leader
/// each cost a bounded number of messages (requests and responses).
#[test]
fn message_budgets() {
    for_each_seed(30..35, |seed| {
        let mut cluster = Cluster::scripted(3, seed);
        let leader = one_leader(&mut cluster);
        let election = cluster.messages_sent();
        // Pre-vote and vote requests and answers to two peers are 8; the
        // rest allows for a split vote and the first appends.
        assert!(
            election <= 30,
            "seed {seed}: {election} messages to elect a leader"
        );

        commit(&mut cluster, 1, 3);
        assert_eq!(one_leader(&mut cluster), leader);
        let followers = 2;

        // N proposals stepped one by one: one append per proposal per
        // follower, then at most three more (the append that carries the
        // commit, and heartbeats while waiting), each answered.
        let proposals = 10;
        let before = cluster.messages_sent();
        let placed: Vec<(LogIndex, u64)> = (100..100 + proposals)
            .map(|value| (cluster.propose(leader, value).expect("leads"), value))
            .collect();
        for (index, value) in placed {
            assert!(wait_applied(
                &mut cluster,
                index,
                value,
                3,
                2 * HEARTBEAT_TICKS
            ));
        }
        let agreement = cluster.messages_sent() - before;
        let bound = (proposals + 3) * followers * 2;
        assert!(
            agreement <= bound,
            "seed {seed}: {agreement} messages to agree on {proposals} entries (bound {bound})"
        );

        // Idle: heartbeats only, one per follower per heartbeat interval.
        let idle_ticks = 200;
        let before = cluster.messages_sent();
        cluster.run_ticks(idle_ticks).unwrap();
        let idle = cluster.messages_sent() - before;
        let bound = (idle_ticks / HEARTBEAT_TICKS + 2) * followers * 2;
        assert!(
            idle <= bound,
            "seed {seed}: {idle} messages in {idle_ticks} idle ticks (bound {bound})"
        );
        assert_eq!(cluster.leaders().len(), 1);
        assert_eq!(
            one_leader(&mut cluster),
            leader,
            "seed {seed}: leader changed while idle"
        );
    });
}

//! Replication, leader loss, restarts, snapshots, backpressure and
//! failure of real nodes.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use raft::node::metrics::PeerLabels;
use raft::node::{Node, NodeOptions, RequestFailure};
use raft::ClusterId;
use raft::{LogIndex, NodeId, Role, SnapshotMetadata, StateMachine};

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_survive_leader_loss_and_restart() {
    let mut cluster = Cluster::new(3).await;
    for value in 0..50 {
        propose(&cluster, &format!("a{value}")).await;
    }
    // A linearizable read at the leader sees all 50.
    let leader = cluster.leader().await;
    let seen = cluster
        .node(leader)
        .read(|journal| journal.commands.len())
        .await
        .expect("read");
    assert_eq!(seen, 50);
    // The leader's transport counted its messages to each follower: at
    // least one per proposal, once every follower has received them all
    // (a commit waits for one follower only; a message is counted as it
    // leaves, which may be after the other follower's answer committed it).
    let target = cluster.node(leader).applied_index();
    for peer in cluster.running.keys().filter(|id| **id != leader) {
        tokio::time::timeout(LIMIT, cluster.node(*peer).wait_applied(target))
            .await
            .expect("every follower catches up")
            .expect("running");
    }
    for peer in cluster.running.keys().filter(|id| **id != leader) {
        let labels = PeerLabels { peer: peer.0 };
        let counters = &cluster.node(leader).metrics().peers;
        assert!(
            counters.sent.get_or_create(&labels).get() >= 50,
            "sent to {peer}"
        );
        assert!(
            counters.connects.get_or_create(&labels).get() >= 1,
            "connected to {peer}"
        );
    }
    // A follower refuses reads and proposals with a hint to the leader.
    let follower = *cluster.running.keys().find(|id| **id != leader).unwrap();
    assert_eq!(
        cluster.node(follower).read_index().await,
        Err(RequestFailure::NotLeader {
            leader_hint: Some(leader)
        })
    );

    // Kill the leader: the other two elect a new one and keep committing.
    cluster.stop(leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    for value in 0..20 {
        propose(&cluster, &format!("b{value}")).await;
    }
    // The old leader restarts from its WAL and catches up.
    cluster.start(leader).await;
    let target = cluster.node(new_leader).applied_index();
    tokio::time::timeout(LIMIT, cluster.node(leader).wait_applied(target))
        .await
        .expect("the restarted node catches up")
        .expect("running");
    let journals: Vec<Vec<Vec<u8>>> = cluster
        .running
        .values()
        .map(|member| member.node.read_local(|journal| journal.commands.clone()))
        .collect();
    for journal in &journals {
        assert_eq!(journal.len(), 70);
        assert_eq!(
            journal, &journals[0],
            "every node applied the same commands"
        );
    }

    // Stop everything, restart everything: the state comes back from disk.
    cluster.restart_all_and_expect(&journals[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_compacted_log_catches_up_by_a_streamed_snapshot() {
    // Snapshots every 20 entries, 5 kept behind, sent in 64-byte chunks.
    let mut cluster = Cluster::with_snapshots(3, Some((20, 5))).await;
    propose(&cluster, "first").await;
    let leader = cluster.leader().await;
    let lagging = *cluster.running.keys().find(|id| **id != leader).unwrap();
    cluster.stop(lagging).await;
    for value in 0..150 {
        propose(&cluster, &format!("value-{value}")).await;
    }
    // The leader compacted its log far past where the stopped node is.
    let leader = cluster.leader().await;
    let snapshot_directory = cluster.data(leader).join("snapshots");
    let snapshot_files = std::fs::read_dir(&snapshot_directory)
        .expect("snapshot directory")
        .count();
    assert!(snapshot_files >= 1, "the leader took snapshots");

    cluster.start(lagging).await;
    let target = cluster.node(leader).applied_index();
    tokio::time::timeout(LIMIT, cluster.node(lagging).wait_applied(target))
        .await
        .expect("the lagging node catches up")
        .expect("running");
    let expected = cluster
        .node(leader)
        .read_local(|journal| journal.commands.clone());
    let caught_up = cluster
        .node(lagging)
        .read_local(|journal| journal.commands.clone());
    assert_eq!(caught_up, expected);
    assert_eq!(expected.len(), 151);
    // It caught up by a snapshot: the leader's log no longer held what it
    // missed.
    let installed = cluster.node(lagging).metrics().snapshots_installed.get();
    assert!(installed >= 1, "the lagging node installed a snapshot");

    // A full restart restores every node from its snapshot plus its log.
    cluster.restart_all_and_expect(&expected).await;
}

/// A one-node cluster that snapshots every 10 entries under `ratio`.
async fn one_node_snapshotting_every_10_entries(ratio: u64) -> Cluster {
    let mut cluster = Cluster::with_snapshots(1, Some((10, 5))).await;
    // Restarted (before any entry) with the ratio under test.
    cluster.stop(NodeId(1)).await;
    cluster.log_growth_ratio = Some(ratio);
    cluster.start(NodeId(1)).await;
    cluster
}

/// Proposes the commands numbered `values`, 16 bytes each.
async fn propose_numbered(cluster: &Cluster, values: std::ops::Range<u64>) {
    for value in values {
        propose(cluster, &format!("value-{value:010}")).await;
    }
}

fn snapshots_taken(cluster: &Cluster) -> u64 {
    cluster.node(NodeId(1)).metrics().snapshots_taken.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_a_growing_state_wait_until_the_log_outgrows_the_last_one() {
    // By entries alone: one snapshot per 10 entries. (Each is waited for,
    // since one still being written when the next is due is skipped.)
    let cluster = one_node_snapshotting_every_10_entries(0).await;
    for group in 1..=20 {
        propose_numbered(&cluster, (group - 1) * 10..group * 10).await;
        tokio::time::timeout(LIMIT, async {
            while snapshots_taken(&cluster) < group {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no snapshot after {} entries", group * 10));
    }
    let by_entries = snapshots_taken(&cluster);
    assert_eq!(by_entries, 20, "snapshots by entry count");
    // With ratio 2 each snapshot (20 bytes per command, plus a header)
    // waits until the commands applied since the previous one (16 bytes
    // each) add up to twice its size, so the gaps grow geometrically: three
    // snapshots at most in 200 entries (skips would only make fewer), and
    // the first is due at 10 entries, when none is being written.
    let cluster = one_node_snapshotting_every_10_entries(2).await;
    propose_numbered(&cluster, 0..200).await;
    let by_size = snapshots_taken(&cluster);
    assert!(
        (1..=3).contains(&by_size),
        "{by_size} snapshots with the log growth ratio (against {by_entries} by entries)"
    );
}

/// A state machine whose `apply` waits while its gate is closed.
#[derive(Clone, Default)]
struct Gated {
    gate: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    applied: LogIndex,
}

impl Gated {
    fn set_open(&self, open: bool) {
        let (lock, changed) = &*self.gate;
        *lock.lock().unwrap() = open;
        changed.notify_all();
    }
}

impl StateMachine for Gated {
    type Response = ();
    type Error = io::Error;
    type Snapshot = Journal;

    fn apply(&mut self, index: LogIndex, _command: &[u8]) -> io::Result<()> {
        let (lock, changed) = &*self.gate;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
        self.applied = index;
        Ok(())
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&self) -> io::Result<Journal> {
        Ok(Journal {
            commands: Vec::new(),
            applied: self.applied,
        })
    }

    fn restore(
        &mut self,
        _reader: &mut dyn io::Read,
        metadata: &SnapshotMetadata,
    ) -> io::Result<()> {
        self.applied = metadata.index;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_state_machine_holds_back_new_requests_instead_of_queueing_without_bound() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let members = BTreeMap::from([(NodeId(1), "127.0.0.1:1".to_string())]);
    let mut options = NodeOptions::new(NodeId(1), ClusterId(7), members, directory.path().into());
    options.max_apply_backlog = 4;
    let machine = Gated::default();
    machine.set_open(true);
    let node = Node::start(options, machine.clone()).expect("start");
    let mut status = node.watch_status();
    tokio::time::timeout(LIMIT, status.wait_for(|status| status.role == Role::Leader))
        .await
        .expect("a lone voter leads")
        .expect("running");
    node.propose("warm-up".into())
        .await
        .expect("a first proposal");

    // Stall the state machine, then ask for far more than the backlog.
    machine.set_open(false);
    const PROPOSALS: u64 = 3000;
    let proposals: Vec<_> = (0..PROPOSALS)
        .map(|number| {
            let node = node.clone();
            tokio::spawn(async move { node.propose(format!("p{number}").into()).await })
        })
        .collect();
    // Commits stop once the applier is the backlog behind (plus at most one
    // batch of requests taken before the loop saw it).
    let stalled_at = tokio::time::timeout(LIMIT, async {
        loop {
            let commit = node.status().commit_index;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if node.status().commit_index == commit {
                return commit;
            }
        }
    })
    .await
    .expect("commits stop growing");
    assert!(
        stalled_at.0 < PROPOSALS / 2,
        "commit ran on to {stalled_at} while the state machine was stalled"
    );

    // Open the gate: every proposal goes through.
    machine.set_open(true);
    for proposal in proposals {
        tokio::time::timeout(LIMIT, proposal)
            .await
            .expect("the proposal completes")
            .expect("task")
            .expect("committed");
    }
    assert_eq!(node.applied_index(), LogIndex(PROPOSALS + 2));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_failure_stops_the_node_and_says_why() {
    let cluster = Cluster::new(1).await;
    propose(&cluster, "fine").await;
    let node = cluster.node(NodeId(1)).clone();
    let outcome = tokio::time::timeout(LIMIT, node.propose(POISON.to_vec().into())).await;
    assert!(
        matches!(outcome, Ok(Err(_))),
        "the poisoned proposal fails: {outcome:?}"
    );
    let reason = tokio::time::timeout(LIMIT, node.failed())
        .await
        .expect("the node reports its failure");
    assert!(
        reason.contains("the state machine failed to apply entry"),
        "{reason}"
    );
}

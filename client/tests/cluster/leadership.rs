//! Moving leadership: etcd's `Maintenance.MoveLeader` (through any member),
//! `raft_client transfer-leader`, and the hand-off of a leader stopped with
//! SIGTERM.

use raft_proto::etcd::etcdserverpb::MoveLeaderRequest;
use tonic::Code;

use crate::support::cluster::Cluster;
use crate::support::eventually;
use crate::support::requests::put_request;

/// Waits until every running member names `expected` as leader.
async fn wait_until_leader_is(cluster: &Cluster, expected: u64) {
    eventually(&format!("node {expected} to lead"), || async {
        let leader = cluster.wait_for_leader().await;
        if leader == expected {
            Ok(())
        } else {
            Err(format!("node {leader} leads"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_on_request_and_before_a_graceful_stop() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let target = cluster.follower_of(leader);
    let other = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != target)
        .unwrap();

    // MoveLeader sent to the member that is neither leader nor target: it
    // forwards to the leader, which answers once the target leads.
    let mut maintenance = cluster.clients(other).maintenance;
    let moved = maintenance
        .move_leader(MoveLeaderRequest { target_id: target })
        .await
        .expect("move-leader through a follower");
    let header = moved.into_inner().header.expect("a header");
    assert!(
        header.raft_term >= 2,
        "a transfer is an election: {header:?}"
    );
    wait_until_leader_is(&cluster, target).await;
    cluster
        .clients(other)
        .kv
        .put(put_request("after-move", "1"))
        .await
        .expect("writes go on under the new leader");

    // Refusals: no such voter, no member at all.
    let stranger = maintenance
        .move_leader(MoveLeaderRequest { target_id: 9 })
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::FailedPrecondition, "{stranger:?}");
    assert!(
        stranger.message().contains("not a voting member"),
        "{stranger:?}"
    );
    let zero = maintenance
        .move_leader(MoveLeaderRequest { target_id: 0 })
        .await
        .unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument, "{zero:?}");

    // The command line, back to the first leader.
    let endpoints = cluster.addresses();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_raft_client"))
            .args([
                "transfer-leader",
                &leader.to_string(),
                "--endpoints",
                &endpoints,
            ])
            .output()
            .expect("run raft_client transfer-leader")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(&format!("member {leader} leads now")),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_until_leader_is(&cluster, leader).await;

    // SIGTERM to the leader: it hands leadership over before it stops.
    assert!(cluster.terminate(leader).success());
    assert!(
        cluster.log(leader).contains("leadership handed over"),
        "{}",
        cluster.log(leader)
    );
    let successor = cluster.wait_for_leader().await;
    assert_ne!(successor, leader);
    cluster
        .clients(successor)
        .kv
        .put(put_request("after-stop", "1"))
        .await
        .expect("writes go on after the leader stopped");
}

//! Changing the cluster's members while it serves writes: etcd's
//! `MemberAdd` (a learner), `MemberPromote`, `MemberRemove`, `MemberUpdate`
//! and `MemberList` through tonic; a node started with `--join`; a removed
//! node restarted with its old data; and the refusals, each with its code.

use raft_proto::etcd::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, MoveLeaderRequest,
};
use tonic::Code;

use crate::support::cluster::Cluster;
use crate::support::eventually;
use crate::support::process::run_to_exit;
use crate::support::requests::{prefix_request, put_request, range};
use crate::{assert_all_acknowledged, Writer};

/// A `MemberAdd` request for `address` that asks for member id `id`.
fn add_request(id: u64, address: &str, is_learner: bool) -> tonic::Request<MemberAddRequest> {
    let mut request = tonic::Request::new(MemberAddRequest {
        peer_ur_ls: vec![format!("http://{address}")],
        is_learner,
    });
    request
        .metadata_mut()
        .insert("x-rustyraft-member-id", id.to_string().parse().unwrap());
    request
}

/// Member ids and whether each is a learner, as member `via` lists them.
async fn listed(cluster: &Cluster, via: u64) -> Vec<(u64, bool)> {
    let mut members: Vec<(u64, bool)> = cluster
        .clients(via)
        .cluster
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("member list")
        .into_inner()
        .members
        .iter()
        .map(|member| (member.id, member.is_learner))
        .collect();
    members.sort();
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_promoted_and_removed_while_writes_go_on() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let writer_via = cluster.follower_of(leader);
    let writer = Writer::start(&cluster, writer_via);
    let count = || writer.count();

    // Add node 4 as a learner, through a follower (which forwards).
    let address = cluster.prepare_joining(4);
    let added = cluster
        .clients(writer_via)
        .cluster
        .member_add(add_request(4, &address, true))
        .await
        .expect("member add")
        .into_inner();
    let member = added.member.expect("the new member");
    assert_eq!((member.id, member.is_learner), (4, true));
    assert_eq!(member.peer_ur_ls, [format!("http://{address}")]);
    assert_eq!(added.members.len(), 4);
    assert_eq!(
        listed(&cluster, leader).await,
        [(1, false), (2, false), (3, false), (4, true)]
    );

    // A learner far behind cannot be promoted... it has not even started.
    // (With the default lag allowance a fresh cluster may be close enough,
    // so only a refusal's code is checked, if one comes.)
    cluster.start_node(4);
    eventually("node 4 to catch up as a learner", || async {
        let leader_status = cluster.status(leader).await?;
        let learner = cluster.status(4).await?;
        if learner.raft_applied_index + 10 >= leader_status.raft_applied_index
            && learner.leader == leader
        {
            Ok(())
        } else {
            Err(format!(
                "learner applied {} of {}",
                learner.raft_applied_index, leader_status.raft_applied_index
            ))
        }
    })
    .await;
    let mut promote = cluster.clients(4).cluster;
    eventually("the promotion of node 4", || {
        let mut promote = promote.clone();
        async move {
            match promote.member_promote(MemberPromoteRequest { id: 4 }).await {
                Ok(_) => Ok(()),
                Err(status) if status.code() == Code::FailedPrecondition => {
                    Err(status.message().to_string())
                }
                Err(status) => panic!("promotion failed: {status}"),
            }
        }
    })
    .await;
    assert_eq!(
        listed(&cluster, 4).await,
        [(1, false), (2, false), (3, false), (4, false)]
    );
    let refused = promote
        .member_promote(MemberPromoteRequest { id: 4 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
    assert!(refused.message().contains("not a learner"), "{refused}");

    // Move leadership to the new member, then remove the old leader.
    cluster
        .clients(writer_via)
        .maintenance
        .move_leader(MoveLeaderRequest { target_id: 4 })
        .await
        .expect("move leader to node 4");
    assert_eq!(cluster.wait_for_leader().await, 4);
    let writes_before_removal = count();
    cluster
        .clients(writer_via)
        .cluster
        .member_remove(MemberRemoveRequest { id: leader })
        .await
        .expect("remove the old leader");
    let remaining: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    assert_eq!(
        listed(&cluster, 4).await,
        remaining.iter().map(|id| (*id, false)).collect::<Vec<_>>()
    );
    // It learns of its removal if the entry reached it before the leader
    // stopped sending to it; otherwise from the members, which refuse it
    // once it times out and asks for votes.
    eventually("the removed node to say so", || async {
        let log = cluster.log(leader);
        let told = log.contains("this node was removed from the cluster");
        let refused = log.contains(&format!("node {leader} is not a member of this cluster"));
        if told || refused {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    assert!(cluster.terminate(leader).success());
    eventually("writes to go on after the removal", || async {
        match count() {
            n if n >= writes_before_removal + 20 => Ok(()),
            n => Err(format!(
                "{n} writes, {writes_before_removal} before the removal"
            )),
        }
    })
    .await;

    // Change where node 4 is reached: to the same address, the only one it
    // listens on (a move would need a restart); the change goes through.
    cluster
        .clients(writer_via)
        .cluster
        .member_update(MemberUpdateRequest {
            id: 4,
            peer_ur_ls: vec![format!("http://{address}")],
        })
        .await
        .expect("member update");

    let (acknowledged, failures) = writer.finish().await;
    eprintln!(
        "{} writes acknowledged, {failures} failed",
        acknowledged.len()
    );
    assert!(acknowledged.len() > writes_before_removal);
    for id in cluster.running() {
        let read = range(&mut cluster.clients(id).kv, prefix_request("ack/")).await;
        assert_all_acknowledged(id, &read, &acknowledged);
    }
    let hashes = cluster.converged_hashes().await;
    let distinct: std::collections::BTreeSet<(u32, i64)> = hashes
        .values()
        .map(|(_, hash, revision)| (*hash, *revision))
        .collect();
    assert_eq!(distinct.len(), 1, "members agree: {hashes:?}");

    // The removed node, restarted with its old data directory, is refused
    // and says why; the cluster does not notice.
    let term_before = cluster.status(4).await.unwrap().header.unwrap().raft_term;
    cluster.start_node(leader);
    eventually("the removed node to log its refusal", || async {
        let log = cluster.log(leader);
        let said_removed = log.contains("not in the cluster's configuration in its log");
        let refused = log.contains(&format!("node {leader} is not a member of this cluster"));
        if said_removed || refused {
            Ok(())
        } else {
            Err("no refusal in its log yet".to_string())
        }
    })
    .await;
    cluster
        .clients(4)
        .kv
        .put(put_request("after-rejoin-attempt", "ok"))
        .await
        .expect("the cluster still writes");
    let new_leader = cluster.wait_for_leader_among(&remaining).await;
    assert!(remaining.contains(&new_leader));
    let term_after = cluster.status(4).await.unwrap().header.unwrap().raft_term;
    assert_eq!(
        term_before, term_after,
        "the removed node disrupted no term"
    );
}

#[tokio::test]
async fn refused_changes_answer_with_their_reason() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let mut members = cluster.clients(cluster.follower_of(leader)).cluster;
    let taken = cluster.node(2).address.clone();

    let cases: Vec<(&str, tonic::Status, Code, &str)> = vec![
        (
            "an id already present",
            members
                .member_add(add_request(2, "127.0.0.1:1", false))
                .await
                .unwrap_err(),
            Code::FailedPrecondition,
            "already a member",
        ),
        (
            "an address already present",
            members
                .member_add(add_request(7, &taken, false))
                .await
                .unwrap_err(),
            Code::FailedPrecondition,
            "already member 2's",
        ),
        (
            "a malformed peer URL",
            members
                .member_add(tonic::Request::new(MemberAddRequest {
                    peer_ur_ls: vec!["https://127.0.0.1:1".to_string()],
                    is_learner: false,
                }))
                .await
                .unwrap_err(),
            Code::InvalidArgument,
            "TLS",
        ),
        (
            "an unknown member",
            members
                .member_remove(MemberRemoveRequest { id: 9 })
                .await
                .unwrap_err(),
            Code::NotFound,
            "member not found",
        ),
        (
            "promoting a voter",
            members
                .member_promote(MemberPromoteRequest { id: 3 })
                .await
                .unwrap_err(),
            Code::FailedPrecondition,
            "not a learner",
        ),
    ];
    for (what, status, code, reason) in cases {
        assert_eq!(status.code(), code, "{what}: {status}");
        assert!(status.message().contains(reason), "{what}: {status}");
    }
    assert_eq!(listed(&cluster, leader).await.len(), 3, "nothing changed");

    // Shrink to one voter; removing it too is refused.
    for id in cluster.ids() {
        if id != leader {
            members = cluster.clients(leader).cluster;
            members
                .member_remove(MemberRemoveRequest { id })
                .await
                .expect("remove a follower");
            cluster.terminate(id);
        }
    }
    let last = members
        .member_remove(MemberRemoveRequest { id: leader })
        .await
        .unwrap_err();
    assert_eq!(last.code(), Code::FailedPrecondition, "{last}");
    assert!(last.message().contains("last voter"), "{last}");

    // A removed id is never used again, even for the same machine.
    let removed = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let address = cluster.node(removed).address.clone();
    let reused = members
        .member_add(add_request(removed, &address, true))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition, "{reused}");
    assert!(reused.message().contains("ID removed"), "{reused}");

    // A node that was never added cannot join.
    let address = cluster.prepare_joining(5);
    let mut arguments = cluster.run_arguments(5);
    arguments[3] = format!("{leader}={}", cluster.node(leader).address);
    let finished = run_to_exit(
        &arguments,
        cluster.scratch(),
        std::time::Duration::from_secs(30),
    );
    assert!(!finished.status.success(), "{address}: {}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("node 5 is not a member of the cluster"),
        "{}",
        finished.stderr
    );
}

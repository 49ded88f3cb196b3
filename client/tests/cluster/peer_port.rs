//! Members with a port for peers of their own (`--peer-address`, etcd's
//! peer URLs): peer RPCs are refused on the client port, clients are not
//! served on the peer port, each member publishes its client URL through
//! the log so that `MemberList` (and `etcdctl endpoint status --cluster`)
//! names it, and peers may speak TLS while clients do not.

use raft_client::connect::endpoints::{channel, Clients};
use raft_client::pki::ThrowawayPki;
use raft_proto::etcd::etcdserverpb::kv_client::KvClient;
use raft_proto::etcd::etcdserverpb::{Member, MemberAddRequest, MemberListRequest};
use raft_proto::forward::kv_forward_client::KvForwardClient;
use raft_proto::forward::ForwardBatch;
use raft_proto::raft as wire;
use raft_proto::raft::raft_peer_client::RaftPeerClient;

use crate::etcdctl::{etcdctl, find_tool};
use crate::support::cluster::Cluster;
use crate::support::eventually;
use crate::support::requests::{get_request, put, put_request, range, values};

/// Each member's (peer URLs, client URLs) as member `via` lists them.
async fn listed_urls(cluster: &Cluster, via: u64) -> Result<Vec<(u64, Member)>, String> {
    let mut clients = cluster.clients(via);
    let response = clients
        .cluster
        .member_list(MemberListRequest { linearizable: true })
        .await
        .map_err(|status| format!("member list through {via}: {status}"))?;
    Ok(response
        .into_inner()
        .members
        .into_iter()
        .map(|member| (member.id, member))
        .collect())
}

/// Waits until every member lists every member at `peer_scheme://` its
/// peer address and `client_scheme://` its client address.
async fn wait_for_published_urls(cluster: &Cluster, peer_scheme: &str, client_scheme: &str) {
    for via in cluster.ids() {
        eventually(
            &format!("member {via} to list every client URL"),
            || async {
                let listed = listed_urls(cluster, via).await?;
                let expected: Vec<(u64, Vec<String>, Vec<String>)> = cluster
                    .ids()
                    .into_iter()
                    .map(|id| {
                        let node = cluster.node(id);
                        let peer = node.peer_address.as_ref().expect("peer ports");
                        (
                            id,
                            vec![format!("{peer_scheme}://{peer}")],
                            vec![format!("{client_scheme}://{}", node.address)],
                        )
                    })
                    .collect();
                let found: Vec<(u64, Vec<String>, Vec<String>)> = listed
                    .into_iter()
                    .map(|(id, member)| (id, member.peer_ur_ls, member.client_ur_ls))
                    .collect();
                if found == expected {
                    Ok(())
                } else {
                    Err(format!("listed {found:?}, expected {expected:?}"))
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_rpcs_stay_off_the_client_port_and_members_publish_their_client_urls() {
    let mut cluster = Cluster::new(3).with_peer_ports();
    cluster.start_all();
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);

    // A write through a follower is forwarded to the leader's peer port.
    put(&mut cluster.clients(follower).kv, "split", "ports").await;
    for id in cluster.ids() {
        let read = range(&mut cluster.clients(id).kv, get_request("split")).await;
        assert_eq!(values(&read), ["ports"], "read through member {id}");
    }
    wait_for_published_urls(&cluster, "http", "http").await;

    // The client port knows no peer RPC.
    let client_port = cluster.url(leader);
    let vote = wire::PeerMessage {
        body: Some(wire::peer_message::Body::RequestVote(
            wire::RequestVoteRequest {
                header: Some(wire::Header {
                    cluster_id: 0,
                    from: follower,
                    to: leader,
                    term: u64::MAX >> 2,
                }),
                last_log_index: u64::MAX >> 2,
                last_log_term: u64::MAX >> 2,
                pre_vote: false,
                leadership_transfer: true,
            },
        )),
    };
    let refused = RaftPeerClient::new(channel(&client_port))
        .stream(tokio_stream::iter(vec![vote]))
        .await
        .expect_err("no Raft messages on the client port");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
    let refused = KvForwardClient::new(channel(&client_port))
        .forward(tokio_stream::iter(Vec::<ForwardBatch>::new()))
        .await
        .expect_err("no forwarding stream on the client port");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");

    // The peer port serves no client.
    let peer_port = format!(
        "http://{}",
        cluster
            .node(leader)
            .peer_address
            .as_ref()
            .expect("a peer port")
    );
    let refused = KvClient::new(channel(&peer_port))
        .put(put_request("through", "the peer port"))
        .await
        .expect_err("no KV on the peer port");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");

    // The refused vote changed nothing: same leader, same data.
    assert_eq!(cluster.wait_for_leader().await, leader);
    let read = range(&mut cluster.clients(leader).kv, get_request("through")).await;
    assert_eq!(read.count, 0);

    // etcdctl finds every member's client URL from one endpoint.
    if let Some(program) = find_tool("etcdctl", "install it with `apt-get install etcd-client`") {
        let output = etcdctl(
            &program,
            cluster.scratch(),
            &cluster.url(follower),
            &["endpoint", "status", "--cluster"],
            "",
        );
        assert!(
            output.success,
            "endpoint status --cluster: {}",
            output.stderr
        );
        for id in cluster.ids() {
            let url = cluster.url(id);
            assert!(
                output.stdout.contains(&url),
                "{url} missing from:\n{}",
                output.stdout
            );
        }
        assert_eq!(output.stdout.lines().count(), 3, "{}", output.stdout);
    }

    // A restarted member keeps serving at the URLs it published.
    let status = cluster.terminate(follower);
    assert!(status.success(), "{status}");
    cluster.start_node(follower);
    cluster.wait_for_leader().await;
    wait_for_published_urls(&cluster, "http", "http").await;

    // A member added at its peer URL joins through the peer ports, and
    // publishes where its clients reach it.
    let peer_address = cluster.prepare_joining(4);
    assert_eq!(
        Some(&peer_address),
        cluster.node(4).peer_address.as_ref(),
        "added at its peer address"
    );
    let mut request = tonic::Request::new(MemberAddRequest {
        peer_ur_ls: vec![format!("http://{peer_address}")],
        is_learner: true,
    });
    request
        .metadata_mut()
        .insert("x-rustyraft-member-id", "4".parse().expect("metadata"));
    let added = cluster
        .clients(follower)
        .cluster
        .member_add(request)
        .await
        .expect("member add")
        .into_inner()
        .member
        .expect("the new member");
    assert!(
        added.client_ur_ls.is_empty(),
        "no client URL before it publishes one: {added:?}"
    );
    assert_eq!(added.id, 4);
    cluster.start_node(4);
    wait_for_published_urls(&cluster, "http", "http").await;
    let hashes = cluster.converged_hashes().await;
    assert_eq!(hashes.len(), 4, "{hashes:?}");

    // Back on one port (its peer address), a member is listed there for
    // clients too: the URL it published before does not outlive the move.
    let status = cluster.terminate(4);
    assert!(status.success(), "{status}");
    cluster.move_to_one_port(4);
    cluster.start_node(4);
    let one_port = vec![format!("http://{peer_address}")];
    eventually("member 4 to be listed at its one port", || async {
        let listed = listed_urls(&cluster, leader).await?;
        let (_, member) = listed
            .iter()
            .find(|(id, _)| *id == 4)
            .ok_or("member 4 is not listed")?;
        if member.peer_ur_ls == one_port && member.client_ur_ls == one_port {
            Ok(())
        } else {
            Err(format!("member 4 is listed as {member:?}"))
        }
    })
    .await;
    let read = range(&mut cluster.clients(4).kv, get_request("split")).await;
    assert_eq!(values(&read), ["ports"], "read through member 4's one port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_speak_tls_on_their_port_while_clients_speak_plaintext() {
    let cluster = Cluster::new(3).with_peer_ports();
    let pki = ThrowawayPki::create(&cluster.scratch().join("pki")).expect("PKI");
    let path = |path: &std::path::Path| path.display().to_string();
    let peer_tls = [
        "--peer-cert-file".to_string(),
        path(&pki.member.certificate),
        "--peer-key-file".to_string(),
        path(&pki.member.key),
        "--peer-trusted-ca-file".to_string(),
        path(&pki.ca),
    ];
    let mut cluster = cluster.with_arguments(&peer_tls);
    cluster.start_all();
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);
    put(&mut cluster.clients(follower).kv, "over", "tls").await;
    wait_for_published_urls(&cluster, "https", "http").await;

    // The peer port takes no connection without a peer certificate.
    let config = raft::transport::tls::Reloading::new(vec![pki.ca.clone()], {
        let roots = vec![pki.ca.clone()];
        move || raft::transport::tls::client_config(None, &roots)
    })
    .expect("client TLS");
    let connect = raft::transport::tls::TlsConnect::new(
        std::sync::Arc::new(config),
        std::time::Duration::from_secs(2),
    );
    let peer_port = format!(
        "https://{}",
        cluster
            .node(leader)
            .peer_address
            .as_ref()
            .expect("a peer port")
    );
    let endpoint = tonic::transport::Endpoint::from_shared(peer_port).expect("endpoint");
    let refused = match connect.channel(endpoint).await {
        Err(error) => error.to_string(),
        Ok(channel) => {
            let mut forward = KvForwardClient::new(channel);
            let status = forward
                .forward(tokio_stream::iter(Vec::<ForwardBatch>::new()))
                .await
                .expect_err("a connection without a certificate is refused");
            status.to_string()
        }
    };
    // The client sees the alert or just the connection closing, as the
    // race goes; the member says why.
    eventually("the leader to log the refused handshake", || async {
        let log = cluster.log(leader);
        if log.contains("refused a TLS connection at the handshake") {
            Ok(())
        } else {
            Err(format!(
                "the client saw {refused}; the leader logged nothing"
            ))
        }
    })
    .await;

    // Plaintext clients of every member see the same data.
    for id in cluster.ids() {
        let read = range(&mut cluster.clients(id).kv, get_request("over")).await;
        assert_eq!(values(&read), ["tls"], "read through member {id}");
    }
    let clients = Clients::new(&cluster.url(leader));
    assert!(clients.endpoint.starts_with("http://"));
}

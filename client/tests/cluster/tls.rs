//! A cluster with mutual TLS, driven by etcdctl and `raft_client` with
//! certificates: it serves those of its CA and refuses everyone else at the
//! handshake; a peer RPC without a peer certificate is refused before it is
//! read; a certificate that cannot be used stops a node at start.

use std::path::Path;
use std::process::Command;

use raft::transport::tls::{client_config, Reloading, TlsConnect};
use raft_client::pki::ThrowawayPki;
use raft_proto::raft as wire;
use raft_proto::raft::raft_peer_client::RaftPeerClient;
use tonic::transport::Endpoint;

use crate::etcdctl::{etcdctl, find_tool, Output};
use crate::support::cluster::Cluster;

fn path(path: &Path) -> String {
    path.display().to_string()
}

/// A started 3-member cluster with mutual TLS from a fresh PKI.
async fn tls_cluster(require_client_certificates: bool) -> (Cluster, ThrowawayPki) {
    let cluster = Cluster::new(3);
    let pki = ThrowawayPki::create(&cluster.scratch().join("pki")).expect("PKI");
    let mut cluster = cluster.with_tls(&pki, require_client_certificates);
    cluster.start_all();
    cluster.wait_for_leader().await;
    (cluster, pki)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_certified_clients_and_refuses_the_others_at_the_handshake() {
    let Some(program) = find_tool("etcdctl", "install it with `apt-get install etcd-client`")
    else {
        return;
    };
    let (cluster, pki) = tls_cluster(true).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);
    let ca = path(&pki.ca);
    let as_member = |identity: &raft::transport::tls::Identity| {
        vec![
            "--cacert".to_string(),
            ca.clone(),
            "--cert".to_string(),
            path(&identity.certificate),
            "--key".to_string(),
            path(&identity.key),
        ]
    };
    let run = |endpoint: &str, arguments: &[&str], credentials: &[String]| -> Output {
        let mut all: Vec<&str> = arguments.to_vec();
        all.extend(credentials.iter().map(String::as_str));
        etcdctl(&program, cluster.scratch(), endpoint, &all, "")
    };
    let member = as_member(&pki.member);
    let ok = |endpoint: &str, arguments: &[&str]| {
        let output = run(endpoint, arguments, &member);
        assert!(output.success, "etcdctl {arguments:?}: {}", output.stderr);
        output.stdout
    };
    let at_leader = cluster.url(leader);
    let at_follower = cluster.url(follower);

    assert_eq!(ok(&at_leader, &["put", "greeting", "hello"]).trim(), "OK");
    assert_eq!(ok(&at_follower, &["get", "greeting"]), "greeting\nhello\n");
    let mut txn_arguments = vec!["txn"];
    txn_arguments.extend(member.iter().map(String::as_str));
    let txn = etcdctl(
        &program,
        cluster.scratch(),
        &at_follower,
        &txn_arguments,
        "value(\"greeting\") = \"hello\"\n\nput greeting bye\n\nput greeting lost\n\n",
    );
    assert_eq!(txn.stdout, "SUCCESS\n\nOK\n", "{}", txn.stderr);
    assert_eq!(ok(&at_leader, &["get", "greeting"]), "greeting\nbye\n");
    let members = ok(&at_follower, &["member", "list"]);
    assert_eq!(members.matches("https://").count(), 6, "{members}");
    let status = ok(&at_follower, &["endpoint", "status", "--cluster"]);
    let listed: Vec<&str> = status
        .lines()
        .map(|line| line.split(", ").next().unwrap_or_default())
        .collect();
    let urls: Vec<String> = cluster
        .ids()
        .into_iter()
        .map(|id| cluster.url(id))
        .collect();
    assert_eq!(listed, urls, "{status}");

    // raft_client's commands take the same flags.
    let output = Command::new(env!("CARGO_BIN_EXE_raft_client"))
        .args(["get", "greeting", "--endpoints", &at_follower])
        .args(&member)
        .output()
        .expect("run raft_client get");
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("bye"),
        "{output:?}"
    );

    // No certificate, another CA's, an expired one, or no TLS at all:
    // refused, and nothing written.
    let quick = ["--dial-timeout=2s", "--command-timeout=3s"];
    let cases: [(&str, Vec<String>, String); 4] = [
        (
            "no client certificate",
            vec!["--cacert".to_string(), ca.clone()],
            at_leader.clone(),
        ),
        (
            "a certificate of another CA",
            as_member(&pki.stranger),
            at_leader.clone(),
        ),
        (
            "an expired certificate",
            as_member(&pki.expired),
            at_leader.clone(),
        ),
        (
            "plaintext",
            Vec::new(),
            at_leader.replace("https://", "http://"),
        ),
    ];
    for (case, credentials, endpoint) in cases {
        let mut arguments = vec!["put", "intruder", case];
        arguments.extend(quick);
        let refused = run(&endpoint, &arguments, &credentials);
        assert!(!refused.success, "{case}: {}", refused.stdout);
    }
    assert_eq!(ok(&at_leader, &["get", "intruder"]), "");
    assert!(
        cluster
            .log(leader)
            .contains("refused a TLS connection at the handshake"),
        "the refusal is logged with its reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_rpc_without_a_peer_certificate_is_refused_and_changes_nothing() {
    // Client certificates optional: a client without one gets through the
    // handshake, but not into a peer RPC.
    let (cluster, pki) = tls_cluster(false).await;
    let leader = cluster.wait_for_leader().await;
    let before = cluster.converged_hashes().await;
    let config = Reloading::new(vec![pki.ca.clone()], {
        let roots = vec![pki.ca.clone()];
        move || client_config(None, &roots)
    })
    .expect("client TLS");
    let connect = TlsConnect::new(
        std::sync::Arc::new(config),
        std::time::Duration::from_secs(2),
    );
    let follower = cluster.follower_of(leader);
    let endpoint = Endpoint::from_shared(cluster.url(follower)).expect("endpoint");
    let channel = connect
        .channel(endpoint)
        .await
        .expect("the handshake needs no certificate");
    // A vote request for a huge term "from the leader": refused unread.
    let forged = wire::PeerMessage {
        body: Some(wire::peer_message::Body::RequestVote(
            wire::RequestVoteRequest {
                header: Some(wire::Header {
                    cluster_id: 0,
                    from: leader,
                    to: follower,
                    term: u64::MAX,
                }),
                last_log_index: u64::MAX,
                last_log_term: u64::MAX,
                pre_vote: false,
                leadership_transfer: true,
            },
        )),
    };
    let refused = RaftPeerClient::new(channel)
        .stream(tokio_stream::iter(vec![forged]))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    // The cluster still serves, at the same term, with the same data.
    assert_eq!(cluster.wait_for_leader().await, leader);
    assert_eq!(cluster.converged_hashes().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_cannot_be_used_stops_the_node_with_status_2() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let pki = ThrowawayPki::create(&scratch.path().join("pki")).expect("PKI");
    let missing = scratch.path().join("missing.crt");
    let cases = [
        (
            "a missing certificate",
            path(&missing),
            path(&pki.member.key),
            "missing.crt",
        ),
        (
            "a key of another certificate",
            path(&pki.member.certificate),
            path(&pki.stranger.key),
            "member.crt",
        ),
    ];
    for (case, certificate, key, named) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_raft_client"))
            .args(["run", "1", "127.0.0.1:0", "1=127.0.0.1:1", "--data-dir"])
            .arg(scratch.path().join("data"))
            .args(["--peer-cert-file", &certificate, "--peer-key-file", &key])
            .args(["--peer-trusted-ca-file", &path(&pki.ca)])
            .output()
            .expect("run raft_client");
        assert_eq!(output.status.code(), Some(2), "{case}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{case}: {stderr}");
    }
}

//! The load generator, `raft_client bench`, against a 3-node cluster: its
//! puts land on every member with the value size asked for, its reads find
//! them, and it reports what it did in its summary line. It runs against
//! etcd too (skipped when `etcd` is not installed, unless
//! `RUSTYRAFT_REQUIRE_TOOLS=1`).

use std::process::Command;

use crate::support::cluster::Cluster;
use crate::support::process::BINARY;
use crate::support::requests::prefix_request;

/// Runs `raft_client bench` for one second with `extra` arguments and
/// returns its standard output.
async fn bench(cluster: &Cluster, extra: &[&str]) -> String {
    bench_at(&cluster.addresses(), extra).await
}

/// Runs `raft_client bench` against `endpoints` for one second (unless
/// `extra` says how long) with `extra` arguments and returns its standard output.
async fn bench_at(endpoints: &str, extra: &[&str]) -> String {
    let mut arguments: Vec<String> = [
        "bench",
        "--endpoints",
        endpoints,
        "--clients",
        "6",
        "--conns",
        "3",
        "--value-size",
        "100",
    ]
    .iter()
    .map(|argument| argument.to_string())
    .collect();
    if !extra.contains(&"--secs") {
        arguments.extend(["--secs".to_string(), "1".to_string()]);
    }
    arguments.extend(extra.iter().map(|argument| argument.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BINARY)
            .args(&arguments)
            .output()
            .expect("run raft_client bench")
    })
    .await
    .expect("the bench thread");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The value of `name=` in `line`.
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_puts_through_every_member_and_reads_back() {
    let cluster = Cluster::start(3).await;
    let output = bench(&cluster, &[]).await;
    let lines: Vec<&str> = output.lines().collect();
    let summary = lines.last().expect("a summary line");
    assert!(lines.contains(&"errors=0"), "{output}");
    let operations = field(summary, "ops");
    assert!(operations > 0, "{output}");
    assert!(field(summary, "p50_us") > 0, "{output}");
    assert!(
        field(summary, "p99_us") >= field(summary, "p50_us"),
        "{output}"
    );

    // Each client writes its own keys, bench/<client>/<n>, with the value
    // size asked for; every member holds the same ones.
    let mut seen = None;
    for id in cluster.ids() {
        let mut kv = cluster.clients(id).kv;
        let answer = kv
            .range(prefix_request("bench/"))
            .await
            .expect("a linearizable range")
            .into_inner();
        assert!(!answer.kvs.is_empty());
        let mut clients = std::collections::BTreeSet::new();
        for pair in &answer.kvs {
            assert_eq!(pair.value, vec![b'v'; 100]);
            let key = String::from_utf8(pair.key.clone()).expect("a text key");
            let client: usize = key.split('/').nth(1).unwrap().parse().unwrap();
            clients.insert(client);
        }
        assert_eq!(clients, (0..6).collect(), "every client wrote");
        let keys: Vec<Vec<u8>> = answer.kvs.iter().map(|pair| pair.key.clone()).collect();
        let revision = answer.header.expect("a header").revision;
        assert!(revision >= operations as i64, "{revision} < {operations}");
        match &seen {
            None => seen = Some(keys),
            Some(first) => assert_eq!(first, &keys, "member {id} holds other keys"),
        }
    }

    for reads in [&["--read"][..], &["--read", "--serializable"][..]] {
        let output = bench(&cluster, reads).await;
        let summary = output.lines().last().expect("a summary line");
        assert!(output.lines().any(|line| line == "errors=0"), "{output}");
        assert!(field(summary, "ops") > 0, "{reads:?}: {output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_cycles_through_the_keys_per_client_asked_for() {
    let cluster = Cluster::start(3).await;
    let output = bench(&cluster, &["--keys-per-client", "2"]).await;
    assert!(output.lines().any(|line| line == "errors=0"), "{output}");
    let leader = cluster.ids()[0];
    let answer = cluster
        .clients(leader)
        .kv
        .range(prefix_request("bench/"))
        .await
        .expect("a linearizable range")
        .into_inner();
    let keys: std::collections::BTreeSet<String> = answer
        .kvs
        .iter()
        .map(|pair| String::from_utf8(pair.key.clone()).expect("a text key"))
        .collect();
    let expected = (0..6).flat_map(|client| (0..2).map(move |n| format!("bench/{client}/{n}")));
    assert_eq!(keys, expected.collect(), "{output}");

    let refused = Command::new(BINARY)
        .args(["bench", "--keys-per-client", "0", "--secs", "1"])
        .output()
        .expect("run raft_client bench");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--keys-per-client"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_refuses_serializable_without_reads() {
    let output = Command::new(BINARY)
        .args(["bench", "--serializable", "--secs", "1"])
        .output()
        .expect("run raft_client bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--read"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_counts_failures_when_no_member_answers() {
    let cluster = crate::support::cluster::Cluster::new(3);
    // Nothing runs at these addresses: every request fails and is counted,
    // none is reported as done.
    let output = bench(&cluster, &[]).await;
    let summary = output.lines().last().expect("a summary line");
    assert_eq!(field(summary, "ops"), 0, "{output}");
    let errors = output
        .lines()
        .find_map(|line| line.strip_prefix("errors="))
        .and_then(|count| count.parse::<u64>().ok())
        .expect("an errors= line");
    assert!(errors > 0, "{output}");
    // Every failure is told by kind: here, all the same kind.
    let kinds: Vec<&str> = output
        .lines()
        .filter(|line| line.starts_with("error count="))
        .collect();
    assert_eq!(kinds.len(), 1, "{output}");
    assert_eq!(field(kinds[0], "count"), errors, "{output}");
    assert!(
        kinds[0].contains("kind=cannot connect to http://"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_writes_each_key_once_and_stops() {
    let cluster = Cluster::start(3).await;
    let output = bench(
        &cluster,
        &["--once", "--keys-per-client", "5", "--secs", "60"],
    )
    .await;
    assert!(output.lines().any(|line| line == "errors=0"), "{output}");
    let summary = output.lines().last().expect("a summary line");
    assert_eq!(field(summary, "ops"), 30, "{output}");
    let answer = cluster
        .clients(cluster.ids()[0])
        .kv
        .range(prefix_request("bench/"))
        .await
        .expect("a linearizable range")
        .into_inner();
    assert_eq!(answer.kvs.len(), 30, "{output}");
    assert!(answer.kvs.iter().all(|pair| pair.version == 1), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_runs_against_etcd_itself() {
    let Some(etcd) = crate::etcdctl::find_tool("etcd", "apt-get install etcd-server") else {
        return;
    };
    let cluster = Cluster::new(1);
    let ports = crate::support::cluster::free_ports(2);
    let client_url = format!("http://127.0.0.1:{}", ports[0]);
    let peer_url = format!("http://127.0.0.1:{}", ports[1]);
    let log = std::fs::File::create(cluster.scratch().join("etcd.log")).expect("etcd log");
    let mut command = Command::new(etcd);
    command
        .args(["--name", "bench", "--data-dir"])
        .arg(cluster.scratch().join("etcd-data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let _etcd = crate::support::process::ChildGuard::start(command);
    let endpoint = client_url.clone();
    crate::support::eventually("etcd to answer", || {
        let endpoint = endpoint.clone();
        async move {
            let mut kv = raft_client::connect::endpoints::Clients::new(&endpoint).kv;
            kv.put(crate::support::requests::put_request("ready", "yes"))
                .await
                .map_err(|status| status.to_string())
        }
    })
    .await;
    for extra in [&[][..], &["--read"][..], &["--read", "--serializable"][..]] {
        let output = bench_at(&client_url, extra).await;
        let summary = output.lines().last().expect("a summary line");
        assert!(output.lines().any(|line| line == "errors=0"), "{output}");
        assert!(field(summary, "ops") > 0, "{output}");
    }
}

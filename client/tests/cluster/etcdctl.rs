//! etcd's own command-line client, `etcdctl` (API v3), against a 3-node
//! cluster. Skipped with a message when `etcdctl` is not on PATH, unless
//! `RUSTYRAFT_REQUIRE_TOOLS=1` (as in CI), which makes a missing tool fail.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::cluster::Cluster;
use crate::support::process::{read_log, ChildGuard};

/// Set to `1` to make a missing external tool fail the tests that use it.
pub const REQUIRE_TOOLS: &str = "RUSTYRAFT_REQUIRE_TOOLS";

/// How long one `etcdctl` command may run (its own timeouts are shorter).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `RUSTYRAFT_REQUIRE_TOOLS=1`.
pub fn tools_required() -> bool {
    std::env::var(REQUIRE_TOOLS).is_ok_and(|value| value == "1")
}

/// `name` on PATH; `None` (after saying why the test is skipped) when it is
/// missing and tools are not required; a panic when they are.
pub fn find_tool(name: &str, install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|directory| directory.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            !tools_required(),
            "{name} is not on PATH and {REQUIRE_TOOLS}=1: {install_hint}"
        );
        eprintln!(
            "SKIPPED: {name} is not on PATH ({install_hint}; set {REQUIRE_TOOLS}=1 to make \
             this a failure)"
        );
    }
    found
}

/// What one `etcdctl` run printed.
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `etcdctl` with API v3 on `endpoints` and `arguments`, feeding it
/// `stdin`; bounded by [`COMMAND_TIMEOUT`].
pub fn etcdctl(
    program: &Path,
    scratch: &Path,
    endpoints: &str,
    arguments: &[&str],
    stdin: &str,
) -> Output {
    let stdout_path = scratch.join("etcdctl.stdout");
    let stderr_path = scratch.join("etcdctl.stderr");
    let mut command = Command::new(program);
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(["--dial-timeout=5s", "--command-timeout=10s"])
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(File::create(&stdout_path).expect("etcdctl stdout file"))
        .stderr(File::create(&stderr_path).expect("etcdctl stderr file"));
    let mut child = ChildGuard::start(command);
    let mut input = child.take_stdin().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .expect("write etcdctl stdin");
    drop(input);
    let status = child
        .wait_for_exit(COMMAND_TIMEOUT)
        .unwrap_or_else(|| panic!("etcdctl {arguments:?} still running after {COMMAND_TIMEOUT:?}"));
    Output {
        success: status.success(),
        stdout: read_log(&stdout_path),
        stderr: read_log(&stderr_path),
    }
}

#[tokio::test]
async fn etcdctl_puts_gets_deletes_runs_txns_and_reports_members_and_status() {
    let Some(program) = find_tool("etcdctl", "install it with `apt-get install etcd-client`")
    else {
        return;
    };
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);
    let all = cluster.addresses();
    let through_follower = cluster.node(follower).address.clone();
    let run = |endpoints: &str, arguments: &[&str], stdin: &str| {
        etcdctl(&program, cluster.scratch(), endpoints, arguments, stdin)
    };
    let stdout = |endpoints: &str, arguments: &[&str]| {
        let output = run(endpoints, arguments, "");
        assert!(
            output.success,
            "etcdctl {arguments:?} failed: {}",
            output.stderr
        );
        output.stdout
    };

    // put / get / del, through a follower alone (forwarded) and all.
    assert_eq!(
        stdout(&through_follower, &["put", "greeting", "hello"]),
        "OK\n"
    );
    assert_eq!(stdout(&all, &["get", "greeting"]), "greeting\nhello\n");
    for (key, value) in [("fruit/apple", "red"), ("fruit/banana", "yellow")] {
        assert_eq!(stdout(&all, &["put", key, value]), "OK\n");
    }
    assert_eq!(
        stdout(&through_follower, &["get", "--prefix", "fruit/"]),
        "fruit/apple\nred\nfruit/banana\nyellow\n"
    );
    assert_eq!(
        stdout(&all, &["get", "--prefix", "--print-value-only", "fruit/"]),
        "red\nyellow\n"
    );
    assert_eq!(
        stdout(&all, &["get", "--prefix", "--keys-only", "fruit/"]),
        "fruit/apple\n\nfruit/banana\n\n"
    );

    // txn from standard input: compares, blank line, success operations,
    // blank line, failure operations.
    let succeeded = run(
        &through_follower,
        &["txn"],
        "value(\"greeting\") = \"hello\"\n\nput greeting bye\nget greeting\n\nget greeting\n\n",
    );
    assert!(succeeded.success, "{}", succeeded.stderr);
    assert_eq!(succeeded.stdout, "SUCCESS\n\nOK\n\ngreeting\nbye\n");
    let failed = run(
        &all,
        &["txn"],
        "value(\"greeting\") = \"hello\"\n\nput greeting lost\n\nget greeting\n\n",
    );
    assert!(failed.success, "{}", failed.stderr);
    assert_eq!(failed.stdout, "FAILURE\n\ngreeting\nbye\n");

    assert_eq!(stdout(&through_follower, &["del", "greeting"]), "1\n");
    assert_eq!(stdout(&all, &["get", "greeting"]), "");
    assert_eq!(stdout(&all, &["del", "--prefix", "fruit/"]), "2\n");
    assert_eq!(stdout(&all, &["del", "greeting"]), "0\n");

    // member list: id (hex), status, name, peer and client URLs, learner.
    let members = stdout(&all, &["member", "list"]);
    let expected: String = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let address = &cluster.node(id).address;
            format!("{id:x}, started, node-{id}, http://{address}, http://{address}, false\n")
        })
        .collect();
    assert_eq!(members, expected);

    // endpoint status: one line per endpoint; exactly the leader says so.
    let status = stdout(&all, &["endpoint", "status"]);
    let lines: Vec<Vec<&str>> = status
        .lines()
        .map(|line| line.split(", ").collect())
        .collect();
    assert_eq!(lines.len(), 3, "{status}");
    for (id, columns) in cluster.ids().into_iter().zip(&lines) {
        // endpoint, id, version, db size, is leader, is learner, term,
        // index, applied index, errors
        assert_eq!(columns[0], cluster.node(id).address, "{status}");
        assert_eq!(columns[1], format!("{id:x}"), "{status}");
        assert_eq!(columns[2], "3.4.0", "{status}");
        let is_leader = if id == leader { "true" } else { "false" };
        assert_eq!(columns[4], is_leader, "{status}");
        assert!(
            columns[7].parse::<u64>().is_ok_and(|index| index > 0),
            "{status}"
        );
    }

    // What etcdctl dials as a URL (endpoints given as URLs, and the member
    // URLs `--cluster` finds) carries the URL as its `:authority`: served
    // all the same.
    let urls: Vec<String> = all
        .split(',')
        .map(|address| format!("http://{address}"))
        .collect();
    let by_url = stdout(&urls.join(","), &["endpoint", "status"]);
    assert_eq!(by_url.lines().count(), 3, "{by_url}");
    let whole_cluster = stdout(&through_follower, &["endpoint", "status", "--cluster"]);
    let listed: Vec<&str> = whole_cluster
        .lines()
        .map(|line| line.split(", ").next().unwrap_or_default())
        .collect();
    assert_eq!(listed, urls, "{whole_cluster}");
    let hashes = stdout(&through_follower, &["endpoint", "hashkv", "--cluster"]);
    let listed: Vec<&str> = hashes
        .lines()
        .map(|line| line.split(", ").next().unwrap_or_default())
        .collect();
    assert_eq!(listed, urls, "{hashes}");
    assert!(
        hashes.lines().all(|line| line
            .split(", ")
            .nth(1)
            .is_some_and(|hash| hash.parse::<u32>().is_ok())),
        "{hashes}"
    );

    // move-leader: etcdctl finds the leader among the endpoints and asks it
    // to hand over to the member given in hex.
    let moved = stdout(&all, &["move-leader", &format!("{follower:x}")]);
    assert!(
        moved.contains("Leadership transferred") && moved.contains(&format!("{follower:x}")),
        "{moved}"
    );
    assert_eq!(cluster.wait_for_leader().await, follower);

    // get --rev reads a key as it was at a revision.
    let first = stdout(&all, &["put", "history", "one", "-w", "json"]);
    let revision = first
        .split("\"revision\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no revision in {first}"));
    assert_eq!(stdout(&all, &["put", "history", "two"]), "OK\n");
    let at = format!("--rev={revision}");
    assert_eq!(stdout(&all, &["get", &at, "history"]), "history\none\n");
    let before = format!("--rev={}", revision - 1);
    assert_eq!(stdout(&all, &["get", &before, "history"]), "");
    // Through a follower, too (it forwards what it does not serve).
    assert_eq!(
        stdout(&through_follower, &["get", &at, "history"]),
        "history\none\n"
    );
    assert_eq!(stdout(&all, &["get", "history"]), "history\ntwo\n");

    // compact drops the history before a revision, as etcd's does.
    let compacted = format!("compacted revision {revision}\n");
    assert_eq!(stdout(&all, &["compact", &revision.to_string()]), compacted);
    assert_eq!(stdout(&all, &["get", &at, "history"]), "history\none\n");
    let again = run(&all, &["compact", &revision.to_string()], "");
    assert!(!again.success);
    assert!(
        again
            .stderr
            .contains("etcdserver: mvcc: required revision has been compacted"),
        "{}",
        again.stderr
    );
    let gone = run(&all, &["get", &before, "history"], "");
    assert!(!gone.success);
    assert!(
        gone.stderr
            .contains("etcdserver: mvcc: required revision has been compacted"),
        "{}",
        gone.stderr
    );

    // A refused request is an error with the server's reason.
    let future = run(&all, &["get", "--rev=1000000", "history"], "");
    assert!(!future.success);
    assert!(
        future
            .stderr
            .contains("etcdserver: mvcc: required revision is a future revision"),
        "{}",
        future.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_adds_promotes_updates_and_removes_members_under_load() {
    use crate::support::eventually;
    use crate::support::requests::{prefix_request, range};
    use crate::{assert_all_acknowledged, Writer};

    let Some(program) = find_tool("etcdctl", "install it with `apt-get install etcd-client`")
    else {
        return;
    };
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let writer = Writer::start(&cluster, cluster.follower_of(leader));
    let scratch = cluster.scratch().to_path_buf();
    let run =
        |endpoints: &str, arguments: &[&str]| etcdctl(&program, &scratch, endpoints, arguments, "");
    let stdout = |endpoints: &str, arguments: &[&str]| {
        let output = run(endpoints, arguments);
        assert!(
            output.success,
            "etcdctl {arguments:?} failed: {}",
            output.stderr
        );
        output.stdout
    };
    let endpoints = cluster.addresses();

    // member add --learner: the cluster picks the id, etcdctl prints it in
    // hex along with the environment etcd would start the member with.
    let port = crate::support::cluster::free_ports(1)[0];
    let address = format!("127.0.0.1:{port}");
    let added = stdout(
        &endpoints,
        &[
            "member",
            "add",
            "node-new",
            &format!("--peer-urls=http://{address}"),
            "--learner",
        ],
    );
    let hex = added
        .split_whitespace()
        .nth(1)
        .filter(|_| added.starts_with("Member "))
        .unwrap_or_else(|| panic!("member add printed {added:?}"));
    let id = u64::from_str_radix(hex, 16).expect("a hex member id");
    assert!(
        added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{added}"
    );
    let listed = stdout(&endpoints, &["member", "list"]);
    let line = listed
        .lines()
        .find(|line| line.starts_with(hex))
        .unwrap_or_else(|| panic!("the new member is listed: {listed}"));
    assert!(line.ends_with("true"), "listed as a learner: {line}");

    // Start it with --join; it catches up and etcdctl promotes it (refused
    // while it lags, so retried).
    let joined = cluster.prepare_joining_at(id, &address);
    assert_eq!(joined, address);
    cluster.start_node(id);
    eventually("etcdctl member promote", || async {
        let output = run(&endpoints, &["member", "promote", hex]);
        if output.success {
            Ok(())
        } else {
            Err(output.stderr)
        }
    })
    .await;
    let listed = stdout(&endpoints, &["member", "list"]);
    let line = listed.lines().find(|line| line.starts_with(hex)).unwrap();
    assert!(line.ends_with("false"), "now a voter: {line}");

    // member update (to the address it has: it listens on one port only),
    // then move the leader to it and remove the old leader.
    let updated = stdout(
        &endpoints,
        &[
            "member",
            "update",
            hex,
            &format!("--peer-urls=http://{address}"),
        ],
    );
    assert!(updated.contains("updated"), "{updated}");
    let moved = stdout(&endpoints, &["move-leader", hex]);
    assert!(moved.contains("Leadership transferred"), "{moved}");
    assert_eq!(cluster.wait_for_leader().await, id);
    let endpoints_without_leader: String = cluster
        .ids()
        .into_iter()
        .filter(|member| *member != leader)
        .map(|member| cluster.node(member).address.clone())
        .collect::<Vec<_>>()
        .join(",");
    let removed = stdout(
        &endpoints_without_leader,
        &["member", "remove", &format!("{leader:x}")],
    );
    assert!(removed.contains("removed"), "{removed}");
    assert!(cluster.terminate(leader).success());
    let listed = stdout(&endpoints_without_leader, &["member", "list"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(!listed
        .lines()
        .any(|line| line.starts_with(&format!("{leader:x},"))));

    // Writes went on throughout; every acknowledged one is on every member.
    let written = writer.count();
    eventually("writes after the last change", || async {
        match writer.count() {
            n if n >= written + 10 => Ok(()),
            n => Err(format!("{n} writes")),
        }
    })
    .await;
    let (acknowledged, _) = writer.finish().await;
    for member in cluster.running() {
        let read = range(&mut cluster.clients(member).kv, prefix_request("ack/")).await;
        assert_all_acknowledged(member, &read, &acknowledged);
    }
}

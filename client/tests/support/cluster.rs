//! A cluster of `raft_client run` processes on 127.0.0.1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use raft_client::connect::endpoints::{Clients, Endpoints};
use raft_client::pki::ThrowawayPki;
use raft_proto::etcd::etcdserverpb::{HashKvRequest, StatusRequest, StatusResponse};
use rustix::process::Signal;
use tempfile::TempDir;

use super::eventually;
use super::process::{read_log, ChildGuard};

/// The cluster token the harness starts nodes with.
pub const TOKEN: &str = "rustyraft-e2e";

/// Election timing for the tests: wider than the defaults, so that a busy
/// machine (two cores shared with compilers) does not trigger elections
/// under a healthy leader, which would fail writes the tests expect to
/// succeed. Failover still takes about a second.
const TIMING_ARGUMENTS: [&str; 6] = [
    "--election-timeout-min-ms",
    "500",
    "--election-timeout-max-ms",
    "1000",
    "--heartbeat-ms",
    "100",
];

/// How long a node has to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Lines of each node's log shown when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// One member of the cluster and its process, if running.
pub struct Node {
    /// Its id.
    pub id: u64,
    /// `127.0.0.1:port`, for peers and clients (clients alone when the
    /// cluster has peer ports).
    pub address: String,
    /// `127.0.0.1:port` for peers, when the cluster has peer ports
    /// (`--peer-address`).
    pub peer_address: Option<String>,
    /// Its data directory.
    pub data_directory: PathBuf,
    /// Its log (standard error of every run, appended).
    pub log_path: PathBuf,
    /// The cluster token it is started with.
    pub token: String,
    /// It joins the running cluster (`--join`) instead of bootstrapping.
    pub join: bool,
    /// Clients of its etcd services, made on first use (inside a runtime)
    /// and kept: their channels reconnect after a restart.
    clients: OnceLock<Clients>,
    process: Mutex<Option<ChildGuard>>,
    starts: u32,
}

/// Members of one cluster, their data directories and logs in one temporary
/// directory. Dropping it kills every node; if the test is failing, the
/// tail of each node's log is printed first.
pub struct Cluster {
    nodes: BTreeMap<u64, Node>,
    members: String,
    scratch: TempDir,
    /// Mutual TLS for clients and peers, when set.
    tls: Option<HarnessTls>,
    /// More arguments for every member.
    extra_arguments: Vec<String>,
}

/// The flags that run a member with mutual TLS, and the TLS its clients
/// speak.
struct HarnessTls {
    arguments: Vec<String>,
    endpoints: Endpoints,
}

/// `count` distinct ports free on 127.0.0.1 now (held open together while
/// they are picked, so that they differ).
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local address").port())
        .collect()
}

impl Cluster {
    /// A cluster of `size` members (ids 1 to `size`), none started.
    pub fn new(size: u64) -> Cluster {
        let scratch = tempfile::tempdir().expect("temporary directory");
        let ports = free_ports(size as usize);
        let nodes: BTreeMap<u64, Node> = (1..=size)
            .zip(ports)
            .map(|(id, port)| {
                let address = format!("127.0.0.1:{port}");
                let node = Node {
                    id,
                    clients: OnceLock::new(),
                    address,
                    peer_address: None,
                    data_directory: scratch.path().join(format!("data-{id}")),
                    log_path: scratch.path().join(format!("node-{id}.log")),
                    token: TOKEN.to_string(),
                    join: false,
                    process: Mutex::new(None),
                    starts: 0,
                };
                (id, node)
            })
            .collect();
        let members = nodes
            .values()
            .map(|node| format!("{}={}", node.id, node.address))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            nodes,
            members,
            scratch,
            tls: None,
            extra_arguments: Vec::new(),
        }
    }

    /// Runs every member with mutual TLS from `pki` between members (and,
    /// with `require_client_certificates`, from clients: `--client-cert-auth`);
    /// the harness's clients present the member certificate.
    pub fn with_tls(mut self, pki: &ThrowawayPki, require_client_certificates: bool) -> Cluster {
        let endpoints =
            Endpoints::parse("https://127.0.0.1:1", &pki.client_files()).expect("client TLS");
        self.tls = Some(HarnessTls {
            arguments: pki.node_arguments(require_client_certificates),
            endpoints,
        });
        self
    }

    /// Gives every member a port for peers of its own (`--peer-address`):
    /// the member list then names the peer ports.
    pub fn with_peer_ports(mut self) -> Cluster {
        let ports = free_ports(self.nodes.len());
        for (node, port) in self.nodes.values_mut().zip(ports) {
            node.peer_address = Some(format!("127.0.0.1:{port}"));
        }
        self.members = self
            .nodes
            .values()
            .map(|node| format!("{}={}", node.id, node.peer_address.as_ref().expect("set")))
            .collect::<Vec<_>>()
            .join(",");
        self
    }

    /// Moves member `id` (stopped) back to one port, its peer address,
    /// which then serves its clients too: it starts without
    /// `--peer-address` from now on.
    pub fn move_to_one_port(&mut self, id: u64) {
        let node = self.node_mut(id);
        let peer_address = node.peer_address.take().expect("a member with a peer port");
        node.address = peer_address;
        node.clients = OnceLock::new();
    }

    /// Runs every member with `arguments` too (TLS flags, say).
    pub fn with_arguments(mut self, arguments: &[String]) -> Cluster {
        self.extra_arguments.extend(arguments.iter().cloned());
        self
    }

    /// The URL of member `id`: `https://` with TLS.
    pub fn url(&self, id: u64) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.node(id).address)
    }

    /// Makes room for node `id`, which will join the running cluster: a
    /// free port (and one for peers, if the cluster has peer ports), a data
    /// directory and a log. Returns the address to add it at (its peer
    /// address, with peer ports). Add it to the cluster, then start it
    /// with [`Cluster::start_node`].
    pub fn prepare_joining(&mut self, id: u64) -> String {
        let address = format!("127.0.0.1:{}", free_ports(1)[0]);
        self.prepare_joining_at(id, &address)
    }

    /// [`Cluster::prepare_joining`] at a given (client) `address`.
    pub fn prepare_joining_at(&mut self, id: u64, address: &str) -> String {
        assert!(!self.nodes.contains_key(&id), "node {id} exists already");
        let has_peer_ports = self.nodes.values().any(|node| node.peer_address.is_some());
        let peer_address = has_peer_ports.then(|| format!("127.0.0.1:{}", free_ports(1)[0]));
        let node = Node {
            id,
            clients: OnceLock::new(),
            address: address.to_string(),
            peer_address: peer_address.clone(),
            data_directory: self.scratch.path().join(format!("data-{id}")),
            log_path: self.scratch.path().join(format!("node-{id}.log")),
            token: TOKEN.to_string(),
            join: true,
            process: Mutex::new(None),
            starts: 0,
        };
        self.nodes.insert(id, node);
        peer_address.unwrap_or_else(|| address.to_string())
    }

    /// Starts a cluster of `size` members and waits until they agree on a
    /// leader.
    pub async fn start(size: u64) -> Cluster {
        let mut cluster = Cluster::new(size);
        cluster.start_all();
        cluster.wait_for_leader().await;
        cluster
    }

    /// The temporary directory holding data directories and logs.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// The member list, `1=127.0.0.1:p1,2=...`.
    pub fn members(&self) -> &str {
        &self.members
    }

    /// Every member's id.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Member `id`.
    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    /// Member `id`, to change how it will be started.
    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).expect("a member of the cluster")
    }

    /// Clients of member `id` (call inside a Tokio runtime).
    pub fn clients(&self, id: u64) -> Clients {
        let node = self.node(id);
        let endpoint = self.url(id);
        node.clients
            .get_or_init(|| match &self.tls {
                Some(tls) => tls.endpoints.clients(&endpoint),
                None => Clients::new(&endpoint),
            })
            .clone()
    }

    /// Every member's `host:port`, comma-separated.
    pub fn addresses(&self) -> String {
        let addresses: Vec<&str> = self.nodes.values().map(|n| n.address.as_str()).collect();
        addresses.join(",")
    }

    /// The arguments that run member `id`: `run <id> <address> <members>`,
    /// its data directory, token and the test timing.
    pub fn run_arguments(&self, id: u64) -> Vec<String> {
        let node = self.node(id);
        let mut arguments: Vec<String> = vec![
            "run".into(),
            id.to_string(),
            node.address.clone(),
            self.members.clone(),
            "--data-dir".into(),
            node.data_directory.display().to_string(),
            "--cluster-token".into(),
            node.token.clone(),
        ];
        arguments.extend(TIMING_ARGUMENTS.iter().map(|argument| argument.to_string()));
        if node.join {
            arguments.push("--join".into());
        }
        if let Some(tls) = &self.tls {
            arguments.extend(tls.arguments.iter().cloned());
        }
        if let Some(peer_address) = &node.peer_address {
            arguments.extend(["--peer-address".to_string(), peer_address.clone()]);
        }
        arguments.extend(self.extra_arguments.iter().cloned());
        arguments
    }

    /// Starts member `id` (which must not be running).
    pub fn start_node(&mut self, id: u64) {
        self.start_node_with(id, &[], &[]);
    }

    /// Starts member `id` (which must not be running) with more arguments
    /// and environment variables.
    pub fn start_node_with(&mut self, id: u64, extra: &[&str], environment: &[(&str, &str)]) {
        let mut arguments = self.run_arguments(id);
        arguments.extend(extra.iter().map(|argument| argument.to_string()));
        let node = self.node_mut(id);
        node.starts += 1;
        let mut process = node.process.lock().expect("process lock");
        assert!(process.is_none(), "node {id} is already running");
        append_marker(
            &node.log_path,
            &format!("===== start {} of node {id} =====", node.starts),
        );
        *process = Some(ChildGuard::spawn_with_environment(
            &arguments,
            &node.log_path,
            environment,
        ));
    }

    /// Starts every member.
    pub fn start_all(&mut self) {
        for id in self.ids() {
            self.start_node(id);
        }
    }

    /// Kills member `id` with SIGKILL.
    pub fn kill(&mut self, id: u64) {
        let mut process = self.node(id).process.lock().expect("process lock");
        process.take().expect("the node is running").kill();
    }

    /// Sends `signal` to member `id` (SIGSTOP and SIGCONT pause and resume
    /// it).
    pub fn signal(&self, id: u64, signal: Signal) {
        let process = self.node(id).process.lock().expect("process lock");
        process
            .as_ref()
            .expect("the node is running")
            .signal(signal);
    }

    /// Sends SIGTERM to member `id` and waits for it to exit (bounded).
    pub fn terminate(&mut self, id: u64) -> ExitStatus {
        let mut process = self.node(id).process.lock().expect("process lock");
        let mut child = process.take().expect("the node is running");
        child.signal(Signal::TERM);
        child
            .wait_for_exit(STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("node {id} did not stop within {STOP_TIMEOUT:?} of SIGTERM"))
    }

    /// Waits up to `timeout` for member `id` to exit by itself; its exit
    /// status, or `None` if it is still running.
    pub fn wait_for_exit(&mut self, id: u64, timeout: Duration) -> Option<ExitStatus> {
        let mut process = self.node(id).process.lock().expect("process lock");
        let status = process
            .as_mut()
            .expect("the node was started")
            .wait_for_exit(timeout);
        if status.is_some() {
            process.take();
        }
        status
    }

    /// The members whose process was started and not stopped by the test.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|node| node.process.lock().expect("process lock").is_some())
            .map(|node| node.id)
            .collect()
    }

    /// Panics if a member that should be running has exited.
    pub fn assert_alive(&self) {
        for node in self.nodes.values() {
            let mut process = node.process.lock().expect("process lock");
            if let Some(status) = process.as_mut().and_then(ChildGuard::try_status) {
                panic!(
                    "node {} exited unexpectedly ({status}); its log:\n{}",
                    node.id,
                    read_log(&node.log_path)
                );
            }
        }
    }

    /// Member `id`'s log so far.
    pub fn log(&self, id: u64) -> String {
        read_log(&self.node(id).log_path)
    }

    /// Member `id`'s `Maintenance.Status`.
    pub async fn status(&self, id: u64) -> Result<StatusResponse, String> {
        let mut clients = self.clients(id);
        match clients.maintenance.status(StatusRequest {}).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(format!("node {id}: {status}")),
        }
    }

    /// Waits until every running member names the same running leader, and
    /// returns it.
    pub async fn wait_for_leader(&self) -> u64 {
        self.wait_for_leader_among(&self.running()).await
    }

    /// Waits until members `ids` (running) all name the same leader, one of
    /// them, and returns it.
    pub async fn wait_for_leader_among(&self, ids: &[u64]) -> u64 {
        eventually("the nodes to agree on a leader", || async {
            self.assert_alive();
            let mut leaders = BTreeMap::new();
            for &id in ids {
                leaders.insert(id, self.status(id).await?.leader);
            }
            let first = leaders.values().next().copied().unwrap_or(0);
            if ids.contains(&first) && leaders.values().all(|&leader| leader == first) {
                Ok(first)
            } else {
                Err(format!("leaders seen (node: leader): {leaders:?}"))
            }
        })
        .await
    }

    /// A running member other than `leader`.
    pub fn follower_of(&self, leader: u64) -> u64 {
        self.running()
            .into_iter()
            .find(|&id| id != leader)
            .expect("a running follower")
    }

    /// Waits until every running member has applied everything any of them
    /// knows to be committed, then returns each member's applied index,
    /// HashKV hash and revision, read while no applied index moved.
    pub async fn converged_hashes(&self) -> BTreeMap<u64, (u64, u32, i64)> {
        eventually(
            "every running node to apply the same, fully committed, log",
            || async {
                self.assert_alive();
                let applied = self.applied_indexes().await?;
                let hashes = self.hashes(&applied).await?;
                if self.applied_indexes().await? != applied {
                    return Err("an applied index moved while hashing".to_string());
                }
                Ok(hashes)
            },
        )
        .await
    }

    /// Each running member's applied index, if all are equal to the
    /// highest commit index any of them reports.
    async fn applied_indexes(&self) -> Result<BTreeMap<u64, u64>, String> {
        let mut statuses = BTreeMap::new();
        for id in self.running() {
            statuses.insert(id, self.status(id).await?);
        }
        let committed = statuses.values().map(|s| s.raft_index).max().unwrap_or(0);
        let applied: BTreeMap<u64, u64> = statuses
            .iter()
            .map(|(&id, status)| (id, status.raft_applied_index))
            .collect();
        if applied.values().all(|&index| index == committed) {
            Ok(applied)
        } else {
            Err(format!(
                "highest commit index {committed}, applied indexes {applied:?}"
            ))
        }
    }

    async fn hashes(
        &self,
        applied: &BTreeMap<u64, u64>,
    ) -> Result<BTreeMap<u64, (u64, u32, i64)>, String> {
        let mut hashes = BTreeMap::new();
        for (&id, &index) in applied {
            let mut clients = self.clients(id);
            let response = clients
                .maintenance
                .hash_kv(HashKvRequest { revision: 0 })
                .await
                .map_err(|status| format!("node {id}: HashKV: {status}"))?
                .into_inner();
            hashes.insert(id, (index, response.hash, response.hash_revision));
        }
        Ok(hashes)
    }
}

fn append_marker(log: &Path, line: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open a node log");
    writeln!(file, "{line}").expect("write a node log");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut report = String::new();
        for node in self.nodes.values() {
            let log = read_log(&node.log_path);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            let _ = writeln!(
                report,
                "----- node {} ({}), last {} lines of {} -----\n{}",
                node.id,
                node.address,
                tail.len(),
                node.log_path.display(),
                tail.join("\n")
            );
        }
        eprintln!("{report}");
    }
}

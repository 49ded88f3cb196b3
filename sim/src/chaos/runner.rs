//! One chaos run: start the nodes on their hosts, run the workload while
//! the nemesis injects faults, heal, then check what the clients saw.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft::NodeId;
use raft_proto::etcd::etcdserverpb::maintenance_client::MaintenanceClient;
use raft_proto::etcd::etcdserverpb::{MoveLeaderRequest, RangeRequest, StatusRequest};
use rustix::process::Signal;
use tempfile::TempDir;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint};

use super::nemesis::{ActiveFault, Fault, FaultCounts, Nemesis};
use super::network::{Hosts, NetworkError, NetworkMode};
use super::workload::{
    clock, etcd_key, parse_value, register_of, ClientRecord, Workload, WorkloadOptions,
};
use crate::linearizability::{check_history, Key, KvInput, KvOutput, Operation, Verdict};
use crate::local_cluster::processes::NodeProcesses;
use crate::local_cluster::verification::wait_for_identical_stores;
use crate::local_cluster::LocalClusterError;

/// How often the nemesis looks at the clock and the nodes.
const NEMESIS_TICK: Duration = Duration::from_millis(50);

/// How long the cluster may take to elect its first leader.
const FIRST_LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the nodes may take to agree once healed.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the final reads may keep failing before the run gives up.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How many registers one final read covers.
const FINAL_READ_PAGE: u64 = 4_096;

/// The most states the checker explores for one key.
const MAX_STATES_PER_KEY: usize = 2_000_000;

/// The client number of the final reads in the history.
const FINAL_READER: u64 = u64::MAX;

/// How long a status question to one node may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// At most this many violations are described in the report.
const VIOLATIONS_SHOWN: usize = 5;

/// What a run does.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    /// How many members.
    pub nodes: usize,
    /// How long faults and workload run, before the heal phase.
    pub duration: Duration,
    /// Seeds the nemesis's plan and the clients' choices.
    pub seed: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Where the nodes live.
    pub network: NetworkMode,
    /// Every workload read is `serializable` (served by the member alone,
    /// no ReadIndex): for showing that the checks catch stale reads.
    pub serializable_reads: bool,
    /// An executable that understands the hidden `node` subcommand.
    pub executable: PathBuf,
    /// Where the run's folder goes (the system's temporary directory when
    /// `None`).
    pub parent_directory: Option<PathBuf>,
    /// How long the workload goes on after every fault is undone.
    pub heal_time: Duration,
    /// Keep the run's folder even when the run passes.
    pub keep: bool,
}

/// Why a run could not be carried out (as opposed to a violation found).
#[derive(Debug, Error)]
pub enum ChaosError {
    /// The test hosts could not be made or changed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The node processes could not be started or signalled.
    #[error(transparent)]
    Processes(#[from] LocalClusterError),
    /// A file of the run could not be written.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The cluster never elected a leader.
    #[error("no leader within {} s of starting the nodes; see their logs in {}", .timeout.as_secs(), .folder.display())]
    NoLeader {
        /// How long the harness waited.
        timeout: Duration,
        /// The kept run folder.
        folder: PathBuf,
    },
}

/// What a run found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    /// Where the nodes lived.
    pub network: Option<NetworkMode>,
    /// Workload operations (final reads not included).
    pub operations: u64,
    /// Of those, answered.
    pub ok: u64,
    /// Writes and compare-and-sets with no answer: they may have happened.
    pub indeterminate: u64,
    /// Reads with no answer (they have no effect).
    pub failed_reads: u64,
    /// Compare-and-sets answered, and of those the ones that swapped.
    pub cas_answered: u64,
    /// See [`ChaosReport::cas_answered`].
    pub cas_succeeded: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Registers used.
    pub keys: u64,
    /// Keys whose history has no linearization, wrong answers, nodes that
    /// died on their own, members that did not converge.
    pub violations: u64,
    /// Keys the checker gave up on (neither proven good nor bad).
    pub undecided: u64,
    /// What the violations and undecided keys were.
    pub problems: Vec<String>,
    /// The applied index, revision and digest every member agreed on.
    pub converged: Option<(u64, i64, u32)>,
    /// The run's folder, when kept.
    pub kept_folder: Option<PathBuf>,
}

impl ChaosReport {
    /// Whether every check passed and every key was decided.
    pub fn passed(&self) -> bool {
        self.violations == 0 && self.undecided == 0
    }

    /// The summary line: `ops=.. ok=.. indeterminate=.. faults=.. keys=..
    /// violations=..`.
    pub fn last_line(&self) -> String {
        format!(
            "ops={} ok={} indeterminate={} faults={} keys={} violations={}",
            self.operations,
            self.ok,
            self.indeterminate,
            self.faults.total(),
            self.keys,
            self.violations
        )
    }
}

/// The run's folder: removed when dropped unless kept.
enum Folder {
    Temporary(TempDir),
    Kept(PathBuf),
}

impl Folder {
    fn path(&self) -> &Path {
        match self {
            Folder::Temporary(directory) => directory.path(),
            Folder::Kept(path) => path,
        }
    }

    fn keep(&mut self) -> PathBuf {
        let path = self.path().to_path_buf();
        if let Folder::Temporary(directory) = std::mem::replace(self, Folder::Kept(path.clone())) {
            let _ = directory.keep();
        }
        path
    }
}

/// The nodes on their hosts, and what the nemesis did to them.
struct Cluster {
    // Fields drop in order: the nodes stop before their hosts go.
    processes: NodeProcesses,
    hosts: Hosts,
    nodes: Vec<NodeId>,
    status: BTreeMap<NodeId, MaintenanceClient<Channel>>,
    down: BTreeSet<NodeId>,
    paused: BTreeSet<NodeId>,
    /// Sent SIGTERM, to be restarted when the fault ends.
    terminating: BTreeSet<NodeId>,
    origin: Instant,
    timeline: Vec<String>,
    problems: Vec<String>,
}

impl Cluster {
    fn note(&mut self, event: String) {
        let line = format!("{:>8.3}s {event}", self.origin.elapsed().as_secs_f64());
        println!("{line}");
        self.timeline.push(line);
    }

    /// The leader some reachable member names, if any.
    async fn leader(&mut self) -> Option<NodeId> {
        for (id, client) in &mut self.status {
            if self.down.contains(id) || self.paused.contains(id) || self.terminating.contains(id) {
                continue;
            }
            if let Ok(status) = client.status(StatusRequest {}).await {
                let leader = status.into_inner().leader;
                if leader != 0 {
                    return Some(NodeId(leader));
                }
            }
        }
        None
    }

    /// Asks a reachable member to move leadership to `target` (it forwards
    /// to the leader); says how that went.
    async fn move_leader(&mut self, target: NodeId) -> String {
        let Some(client) = self
            .status
            .iter()
            .find(|(id, _)| {
                !self.down.contains(id)
                    && !self.paused.contains(id)
                    && !self.terminating.contains(id)
            })
            .map(|(_, client)| client.clone())
        else {
            return "no member to ask".to_string();
        };
        // Longer than a status question: the answer comes once the target
        // leads, or the transfer is abandoned.
        let mut request = tonic::Request::new(MoveLeaderRequest {
            target_id: target.get(),
        });
        request.set_timeout(Duration::from_secs(2));
        let mut client = client;
        match client.move_leader(request).await {
            Ok(_) => "done".to_string(),
            Err(status) => format!("refused: {:?} {}", status.code(), status.message()),
        }
    }

    async fn wait_for_leader(&mut self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    async fn start(&mut self, active: &ActiveFault) -> Result<(), ChaosError> {
        match &active.fault {
            Fault::Kill(id) => {
                self.processes.kill(*id)?;
                self.down.insert(*id);
            }
            Fault::Pause(id) => {
                self.processes.signal(*id, Signal::STOP);
                self.paused.insert(*id);
            }
            Fault::Terminate(id) => {
                self.processes.signal(*id, Signal::TERM);
                self.terminating.insert(*id);
            }
            Fault::MoveLeader(target) => {
                let outcome = self.move_leader(*target).await;
                self.note(format!("start {} ({outcome})", active.fault));
                return Ok(());
            }
            network => {
                let cut = network.cut_links(&self.nodes);
                self.hosts.set_cut_links(&cut)?;
            }
        }
        self.note(format!("start {}", active.fault));
        Ok(())
    }

    fn undo(&mut self, fault: &Fault) -> Result<(), ChaosError> {
        match fault {
            Fault::Kill(id) => {
                self.processes.start(*id)?;
                self.down.remove(id);
                self.note(format!("restart node {}", id.get()));
            }
            Fault::Pause(id) => {
                self.processes.signal(*id, Signal::CONT);
                self.paused.remove(id);
                self.note(format!("SIGCONT node {}", id.get()));
            }
            Fault::Terminate(id) => {
                if self.processes.is_running(*id) {
                    // Still stopping: no longer graceful.
                    self.processes.kill(*id)?;
                    self.note(format!("node {} still running; killed", id.get()));
                }
                self.terminating.remove(id);
                self.processes.start(*id)?;
                self.note(format!("restart node {}", id.get()));
            }
            Fault::MoveLeader(_) => {}
            _ => {
                self.hosts.set_cut_links(&BTreeSet::new())?;
                self.note("heal the network".to_string());
            }
        }
        Ok(())
    }

    /// A node that exited without being killed is a bug (a panic, a
    /// refusal to start on its own data): recorded, and the node restarted
    /// so the run can go on.
    fn restart_the_fallen(&mut self) -> Result<(), ChaosError> {
        for (id, status) in self.processes.exited_on_their_own() {
            if self.terminating.contains(&id) && status.success() {
                self.note(format!("node {} stopped cleanly after SIGTERM", id.get()));
                continue;
            }
            let problem = format!(
                "node {} exited on its own ({status}); see node-{}.log",
                id.get(),
                id.get()
            );
            self.note(problem.clone());
            self.problems.push(problem);
            self.paused.remove(&id);
            if !self.down.contains(&id) && !self.terminating.contains(&id) {
                self.processes.start(id)?;
            }
        }
        Ok(())
    }
}

/// Runs one chaos run.
pub async fn run(options: &ChaosOptions) -> Result<ChaosReport, ChaosError> {
    let mut folder = Folder::Temporary(
        tempfile::Builder::new()
            .prefix(&format!("chaos-{}-", options.seed))
            .tempdir_in(
                options
                    .parent_directory
                    .clone()
                    .unwrap_or_else(std::env::temp_dir),
            )
            .map_err(|source| ChaosError::Io {
                action: "create the run's folder".to_string(),
                source,
            })?,
    );
    let nodes: Vec<NodeId> = (1..=options.nodes as u64).map(NodeId).collect();
    let hosts = Hosts::create(&nodes, options.network)?;
    let addresses = hosts.addresses().clone();
    let mut processes = NodeProcesses::new(
        options.executable.clone(),
        folder.path().to_path_buf(),
        addresses.clone(),
    );
    for &id in &nodes {
        processes.set_launch_prefix(id, hosts.launch_prefix(id));
    }
    let origin = Instant::now();
    let mut cluster = Cluster {
        processes,
        hosts,
        nodes: nodes.clone(),
        status: addresses
            .iter()
            .map(|(id, address)| (*id, MaintenanceClient::new(status_channel(*address))))
            .collect(),
        down: BTreeSet::new(),
        paused: BTreeSet::new(),
        terminating: BTreeSet::new(),
        origin,
        timeline: Vec::new(),
        problems: Vec::new(),
    };
    cluster.note(format!(
        "start {} nodes ({}): {}",
        nodes.len(),
        options.network,
        addresses
            .iter()
            .map(|(id, address)| format!("{}={address}", id.get()))
            .collect::<Vec<_>>()
            .join(",")
    ));
    for &id in &nodes {
        cluster.processes.start(id)?;
    }
    let Some(leader) = cluster.wait_for_leader(FIRST_LEADER_TIMEOUT).await else {
        return Err(ChaosError::NoLeader {
            timeout: FIRST_LEADER_TIMEOUT,
            folder: folder.keep(),
        });
    };
    cluster.note(format!(
        "node {} leads; workload and faults begin",
        leader.get()
    ));

    let workload = Workload::start(
        &WorkloadOptions {
            endpoints: addresses
                .values()
                .map(|address| format!("http://{address}"))
                .collect(),
            clients: options.clients,
            seed: options.seed,
            serializable_reads: options.serializable_reads,
        },
        origin,
    );
    let faults = inject_faults(&mut cluster, options).await?;
    cluster.note(format!(
        "every fault undone; the workload goes on for {} s",
        options.heal_time.as_secs()
    ));
    let heal_end = Instant::now() + options.heal_time;
    while Instant::now() < heal_end {
        tokio::time::sleep(NEMESIS_TICK).await;
        cluster.restart_the_fallen()?;
    }
    let records = workload.stop().await;
    cluster.note("workload stopped; waiting for the members to agree".to_string());

    let mut report = ChaosReport {
        network: Some(options.network),
        faults,
        ..ChaosReport::default()
    };
    match wait_for_identical_stores(&addresses, CONVERGENCE_TIMEOUT).await {
        Ok(convergence) => {
            report.converged = Some((
                convergence.applied_index,
                convergence.revision,
                convergence.hash,
            ));
            cluster.note(format!(
                "every member holds the same store at applied index {} (revision {}, hash {:#010x})",
                convergence.applied_index, convergence.revision, convergence.hash
            ));
        }
        Err(reason) => {
            report.violations += 1;
            report
                .problems
                .push(format!("the members did not converge: {reason}"));
        }
    }
    cluster.restart_the_fallen()?;

    let mut history = Vec::new();
    for record in records {
        let ClientRecord {
            operations,
            malformed,
        } = record;
        report.violations += malformed.len() as u64;
        report.problems.extend(malformed);
        history.extend(operations);
    }
    tally(&history, &mut report);
    let keys: BTreeSet<Key> = history.iter().map(|operation| operation.key).collect();
    report.keys = keys.len() as u64;
    match final_reads(&addresses, &keys, origin).await {
        Ok(reads) => history.extend(reads),
        Err(reason) => {
            report.violations += 1;
            report
                .problems
                .push(format!("the final reads failed: {reason}"));
        }
    }
    check(&history, &mut report);
    report.violations += cluster.problems.len() as u64;
    report.problems.extend(cluster.problems.iter().cloned());

    let timeline = std::mem::take(&mut cluster.timeline);
    // Stop the nodes (and remove their hosts) before saving, so the logs
    // are complete.
    drop(cluster);
    if !report.passed() || options.keep {
        let path = folder.keep();
        save(&path, &history, &timeline, &report)?;
        report.kept_folder = Some(path);
    }
    Ok(report)
}

fn status_channel(address: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .expect("a socket address makes a valid URL")
        .connect_timeout(STATUS_TIMEOUT)
        .timeout(STATUS_TIMEOUT)
        .connect_lazy()
}

/// Injects faults for `options.duration`, then undoes the ones still on.
async fn inject_faults(
    cluster: &mut Cluster,
    options: &ChaosOptions,
) -> Result<FaultCounts, ChaosError> {
    let start = Instant::now();
    let end = start + options.duration;
    let mut nemesis = Nemesis::new(
        options.seed,
        cluster.nodes.clone(),
        cluster.hosts.mode() == NetworkMode::Namespaces,
        start,
    );
    let mut counts = FaultCounts::default();
    let mut process_fault: Option<ActiveFault> = None;
    let mut network_fault: Option<ActiveFault> = None;
    loop {
        tokio::time::sleep(NEMESIS_TICK).await;
        cluster.restart_the_fallen()?;
        let now = Instant::now();
        let finishing = now >= end;
        for slot in [&mut process_fault, &mut network_fault] {
            if slot
                .as_ref()
                .is_some_and(|active| finishing || now >= active.until)
            {
                let active = slot.take().expect("checked above");
                cluster.undo(&active.fault)?;
                match active.fault {
                    Fault::Kill(_)
                    | Fault::Pause(_)
                    | Fault::Terminate(_)
                    | Fault::MoveLeader(_) => nemesis.process_fault_ended(now),
                    _ => nemesis.network_fault_ended(now),
                }
            }
        }
        if finishing {
            return Ok(counts);
        }
        if process_fault.is_none() && nemesis.process_fault_due(now) {
            let leader = cluster.leader().await;
            if let Some(active) = nemesis.next_process_fault(Instant::now(), leader) {
                cluster.start(&active).await?;
                counts.count(&active.fault);
                process_fault = Some(active);
            }
        }
        if network_fault.is_none() {
            if let Some(active) = nemesis.next_network_fault(now) {
                cluster.start(&active).await?;
                counts.count(&active.fault);
                network_fault = Some(active);
            }
        }
    }
}

/// Counts the workload's operations by outcome.
fn tally(history: &[Operation], report: &mut ChaosReport) {
    for operation in history {
        report.operations += 1;
        match (operation.input, operation.completion) {
            (_, Some((_, output))) => {
                report.ok += 1;
                if let KvOutput::Cas { succeeded } = output {
                    report.cas_answered += 1;
                    report.cas_succeeded += u64::from(succeeded);
                }
            }
            (KvInput::Get, None) => report.failed_reads += 1,
            (_, None) => report.indeterminate += 1,
        }
    }
}

/// Reads every register once more, linearizably, a page of registers per
/// request; each register's read joins its history.
async fn final_reads(
    addresses: &BTreeMap<NodeId, SocketAddr>,
    keys: &BTreeSet<Key>,
    origin: Instant,
) -> Result<Vec<Operation>, String> {
    let channels: Vec<Channel> = addresses
        .values()
        .map(|address| {
            Endpoint::from_shared(format!("http://{address}"))
                .expect("a socket address makes a valid URL")
                .timeout(Duration::from_secs(10))
                .connect_lazy()
        })
        .collect();
    let pages: BTreeSet<u64> = keys.iter().map(|key| key / FINAL_READ_PAGE).collect();
    let mut reads = Vec::new();
    let deadline = Instant::now() + FINAL_READ_TIMEOUT;
    let mut member = 0;
    for page in pages {
        let first = page * FINAL_READ_PAGE;
        let request = RangeRequest {
            key: etcd_key(first),
            range_end: etcd_key(first + FINAL_READ_PAGE),
            ..RangeRequest::default()
        };
        let (call_time, response) = loop {
            let call_time = clock(origin);
            let mut kv =
                raft_proto::etcd::etcdserverpb::kv_client::KvClient::new(channels[member].clone())
                    .max_decoding_message_size(64 << 20);
            match kv.range(request.clone()).await {
                Ok(response) => break (call_time, response.into_inner()),
                Err(status) if Instant::now() < deadline => {
                    tracing::debug!(code = ?status.code(), message = status.message(), "a final read failed; trying the next member");
                    member = (member + 1) % channels.len();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => return Err(format!("{:?}: {}", status.code(), status.message())),
            }
        };
        let completion_time = clock(origin);
        let mut values = BTreeMap::new();
        for kv in &response.kvs {
            let key = register_of(&kv.key).ok_or_else(|| {
                format!(
                    "a key no client wrote: {:?}",
                    String::from_utf8_lossy(&kv.key)
                )
            })?;
            values.insert(key, parse_value(&kv.value)?);
        }
        for &key in keys.range(first..first + FINAL_READ_PAGE) {
            reads.push(Operation {
                client: FINAL_READER,
                key,
                input: KvInput::Get,
                call_time,
                completion: Some((completion_time, KvOutput::Get(values.get(&key).copied()))),
            });
        }
    }
    Ok(reads)
}

/// Checks every key's history for a linearization.
fn check(history: &[Operation], report: &mut ChaosReport) {
    let mut by_key: BTreeMap<Key, Vec<Operation>> = BTreeMap::new();
    for operation in history {
        by_key
            .entry(operation.key)
            .or_default()
            .push(operation.clone());
    }
    for operations in by_key.values() {
        match check_history(operations, MAX_STATES_PER_KEY) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { key, explanation } => {
                report.violations += 1;
                if report.problems.len() < VIOLATIONS_SHOWN {
                    report.problems.push(format!(
                        "key {key} is not linearizable (its operations, by index in this key's list):\n{explanation}"
                    ));
                }
            }
            Verdict::Unknown { key, reason } => {
                report.undecided += 1;
                report
                    .problems
                    .push(format!("key {key}: the checker gave up: {reason}"));
            }
        }
    }
}

/// Writes the history, the fault timeline and the report into `folder`,
/// beside the members' logs.
fn save(
    folder: &Path,
    history: &[Operation],
    timeline: &[String],
    report: &ChaosReport,
) -> Result<(), ChaosError> {
    let write = |name: &str, text: String| {
        std::fs::write(folder.join(name), text).map_err(|source| ChaosError::Io {
            action: format!("write {}", folder.join(name).display()),
            source,
        })
    };
    let mut text = String::from(
        "# one operation per line: client key input call_ns completion_ns output\n\
         # (completion '-' means no answer; client 18446744073709551615 is the final read)\n",
    );
    let mut sorted: Vec<&Operation> = history.iter().collect();
    sorted.sort_by_key(|operation| (operation.key, operation.call_time));
    for operation in sorted {
        let (completion, output) = match operation.completion {
            Some((time, output)) => (time.to_string(), format!("{output:?}")),
            None => ("-".to_string(), "-".to_string()),
        };
        let _ = writeln!(
            text,
            "{} {} {:?} {} {completion} {output}",
            operation.client, operation.key, operation.input, operation.call_time
        );
    }
    write("history.txt", text)?;
    write("faults.txt", timeline.join("\n") + "\n")?;
    let mut summary = report.problems.join("\n\n");
    summary.push('\n');
    summary.push_str(&report.last_line());
    summary.push('\n');
    write("report.txt", summary)
}

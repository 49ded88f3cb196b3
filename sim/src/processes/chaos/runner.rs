//! One chaos run: start the nodes on their hosts, run the workload while
//! the nemesis injects faults, heal, then check what the clients saw.

use crate::processes::local_cluster::reach;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft::NodeId;
use raft_proto::etcd::etcdserverpb::maintenance_client::MaintenanceClient;
use tempfile::TempDir;
use thiserror::Error;

use super::checks::{check, final_reads, tally};
use super::cluster::{status_channel, Cluster};
use super::nemesis::{ActiveFault, Fault, FaultCounts, Nemesis};
use super::network::{Hosts, NetworkError, NetworkMode};
use super::report::{save, ChaosReport};
use super::watch_checks::{attempted_writes, check_watches, FinalState, WatcherLog};
use super::watchers::{plan, WatcherFault, Watchers};
use super::workload::{ClientRecord, Workload, WorkloadOptions, KEYS_PER_EPOCH};
use crate::linearizability::{Key, KvOutput, Operation};
use crate::processes::local_cluster::processes::NodeProcesses;
use crate::processes::local_cluster::verification::wait_for_identical_stores;
use crate::processes::local_cluster::LocalClusterError;

/// How often the nemesis looks at the clock and the nodes.
pub(super) const NEMESIS_TICK: Duration = Duration::from_millis(50);

/// How long the cluster may take to elect its first leader.
const FIRST_LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the nodes may take to agree once healed.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the watchers may take to catch up to the final revision.
const WATCH_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many watch violations are described in the report.
const WATCH_VIOLATIONS_SHOWN: usize = 10;

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
    /// Mutual TLS between members and with clients, from a throwaway PKI
    /// in the run's folder.
    pub tls: bool,
    /// Watchers on each member (see [`watchers`](super::watchers)).
    pub watchers_per_member: usize,
    /// A bug to put into the harness's own watcher 0, to show that the
    /// watch checks catch it.
    pub watcher_fault: Option<WatcherFault>,
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
    if options.tls {
        let hosts: Vec<_> = addresses.values().map(|address| address.ip()).collect();
        reach::use_tls(&folder.path().join("pki"), &hosts).map_err(|reason| ChaosError::Io {
            action: "make the run's certificates".to_string(),
            source: std::io::Error::other(reason),
        })?;
    }
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

    let urls: Vec<(NodeId, String)> = addresses
        .iter()
        .map(|(id, address)| (*id, reach::url(*address)))
        .collect();
    let run_secs = (options.duration + options.heal_time).as_secs() + 5;
    let watchers = Watchers::start(
        plan(
            &urls,
            options.watchers_per_member,
            options.seed,
            run_secs * KEYS_PER_EPOCH,
        ),
        options.watcher_fault,
    );
    let workload = Workload::start(
        &WorkloadOptions {
            endpoints: addresses
                .values()
                .map(|address| reach::url(*address))
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
    let mut revisions = BTreeMap::new();
    for record in records {
        let ClientRecord {
            operations,
            malformed,
            revisions: written,
        } = record;
        report.violations += malformed.len() as u64;
        report.problems.extend(malformed);
        history.extend(operations);
        revisions.extend(written);
    }
    tally(&history, &mut report);
    let keys: BTreeSet<Key> = history.iter().map(|operation| operation.key).collect();
    report.keys = keys.len() as u64;
    let mut final_state = FinalState {
        revision: report.converged.map(|(_, revision, _)| revision),
        values: BTreeMap::new(),
    };
    match final_reads(&addresses, &keys, origin).await {
        Ok(reads) => {
            final_state.values = read_values(&reads);
            history.extend(reads);
        }
        Err(reason) => {
            report.violations += 1;
            report
                .problems
                .push(format!("the final reads failed: {reason}"));
        }
    }
    check(&history, &mut report);
    let watches = watchers
        .finish(final_state.revision, WATCH_CATCH_UP_TIMEOUT)
        .await;
    check_watchers(&history, &revisions, &watches, &final_state, &mut report);
    report.violations += cluster.problems.len() as u64;
    report.problems.extend(cluster.problems.iter().cloned());

    let timeline = std::mem::take(&mut cluster.timeline);
    // Stop the nodes (and remove their hosts) before saving, so the logs
    // are complete.
    drop(cluster);
    if !report.passed() || options.keep {
        let path = folder.keep();
        save(&path, &history, &watches, &timeline, &report)?;
        report.kept_folder = Some(path);
    }
    Ok(report)
}

/// The value each final read returned, by register.
fn read_values(reads: &[Operation]) -> BTreeMap<Key, Option<u64>> {
    reads
        .iter()
        .filter_map(|read| match read.completion {
            Some((_, KvOutput::Get(value))) => Some((read.key, value)),
            _ => None,
        })
        .collect()
}

/// Checks the watchers' logs against the history and counts the findings
/// into `report`.
fn check_watchers(
    history: &[Operation],
    revisions: &BTreeMap<u64, i64>,
    watches: &[WatcherLog],
    final_state: &FinalState,
    report: &mut ChaosReport,
) {
    let verdict = check_watches(&attempted_writes(history, revisions), watches, final_state);
    let mut violations = verdict.violations;
    for log in watches {
        violations.extend(log.problems.iter().cloned());
        report.watch_reconnects += log.reconnects.len() as u64;
    }
    report.watchers = watches.len() as u64;
    report.watch_events = verdict.events_checked;
    report.watch_violations = violations.len() as u64;
    report.violations += violations.len() as u64;
    if violations.len() > WATCH_VIOLATIONS_SHOWN {
        let hidden = violations.len() - WATCH_VIOLATIONS_SHOWN;
        violations.truncate(WATCH_VIOLATIONS_SHOWN);
        violations.push(format!("{hidden} more watch violations (see watches.txt)"));
    }
    report.problems.extend(violations);
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

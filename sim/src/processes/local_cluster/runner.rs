//! The run of `run_n_clients`: start the nodes, wait for a leader, write
//! while killing the leader every `kill_every` (and restarting it shortly
//! after), then stop writing and check the stores and the acknowledged
//! writes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use raft::NodeId;

use super::cluster::LocalCluster;
use super::display::Display;
use super::error::LocalClusterError;
use super::monitor::POLL_INTERVAL;
use super::scale;
use super::summary::Summary;
use super::verification::{read_back, wait_for_identical_stores};
use super::workload::{Workload, WriteCounts};

/// How long the first leader may take.
const FIRST_LEADER_WAIT: Duration = Duration::from_secs(30);
/// How long a new leader may take after a kill.
const ELECTION_WAIT: Duration = Duration::from_secs(15);
/// How long the nodes may take to agree once the writes stop.
const CONVERGENCE_WAIT: Duration = Duration::from_secs(30);
/// The longest a killed node stays down.
const LONGEST_DOWN_TIME: Duration = Duration::from_secs(1);
/// Keys each write client cycles over.
const KEYS_PER_CLIENT: usize = 100;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Cluster size.
    pub nodes: usize,
    /// How long the writes (and kills) go on.
    pub duration: Duration,
    /// Time between leader kills; zero: no kills.
    pub kill_every: Duration,
    /// Concurrent write clients.
    pub clients: usize,
    /// Where the nodes keep data and logs (a temporary directory if none).
    pub data_directory: Option<PathBuf>,
    /// The executable that runs a node with its `node` subcommand.
    pub executable: PathBuf,
    /// Whether stdout is a terminal (live view) or not (plain lines).
    pub terminal: bool,
    /// Instead of killing leaders: start with [`SCALE_FIRST_MEMBERS`]
    /// members, grow to `nodes` and shrink back, one change at a time
    /// (`scale.rs`).
    pub scale: bool,
}

/// The members a `--scale` run starts with and ends with.
pub const SCALE_FIRST_MEMBERS: usize = 3;

impl RunnerOptions {
    /// Why these options cannot work, if they cannot.
    pub fn validate(&self) -> Result<(), LocalClusterError> {
        if self.nodes == 0 {
            return Err(LocalClusterError::Options(
                "a cluster needs at least one node".to_string(),
            ));
        }
        if !self.kill_every.is_zero() && self.nodes < 3 {
            return Err(LocalClusterError::Options(format!(
                "killing the leader of {} nodes leaves no majority; run at least 3 nodes or pass --kill-every 0",
                self.nodes
            )));
        }
        if self.scale && self.nodes <= SCALE_FIRST_MEMBERS {
            return Err(LocalClusterError::Options(format!(
                "--scale grows {SCALE_FIRST_MEMBERS} members to NUMBER_OF_NODES and back; give more than {SCALE_FIRST_MEMBERS} nodes"
            )));
        }
        if self.clients == 0 {
            return Err(LocalClusterError::Options(
                "the workload needs at least one client".to_string(),
            ));
        }
        Ok(())
    }

    /// How long a killed leader stays down: long enough for the others to
    /// elect a new one, short enough to be back before the next kill.
    fn down_time(&self) -> Duration {
        (self.kill_every / 2).min(LONGEST_DOWN_TIME)
    }
}

/// A leader killed, until a new one is seen and it is back.
struct Kill {
    node: NodeId,
    term: u64,
    at: Instant,
    new_leader_seen: bool,
    restarted: bool,
}

/// Runs the cluster and its checks; prints events and the live view as it
/// goes. Returns the summary (not yet printed) and the cluster, still
/// running, for the caller to keep or drop.
pub async fn run(options: RunnerOptions) -> Result<(Summary, LocalCluster), LocalClusterError> {
    options.validate()?;
    let first_members = if options.scale {
        SCALE_FIRST_MEMBERS
    } else {
        options.nodes
    };
    let mut cluster = LocalCluster::start_with_spares(
        first_members,
        options.nodes - first_members,
        options.executable.clone(),
        options.data_directory.as_deref(),
    )?;
    let mut display = Display::new(cluster.all_node_ids(), options.terminal);
    display.event(&format!(
        "started {} nodes ({}); data and logs (node-<id>.log) in {}",
        first_members,
        cluster
            .members()
            .iter()
            .map(|(id, address)| format!("{}={address}", id.get()))
            .collect::<Vec<_>>()
            .join(","),
        cluster.data_directory().display()
    ));
    let mut summary = Summary {
        nodes: options.nodes,
        ..Summary::default()
    };
    let started = Instant::now();
    if let Err(reason) = wait_for_first_leader(&mut cluster, &mut display, started).await {
        summary.fail(reason);
        return Ok(finish(summary, cluster, &mut display));
    }
    let workload = Workload::start(cluster.endpoints(), options.clients, KEYS_PER_CLIENT);
    let failure = if options.scale {
        match scale::grow_and_shrink(&mut cluster, &mut display, &workload, started).await {
            Ok(mut changes) => {
                scale::pause(&cluster, &mut display, &workload, scale::settle_time()).await;
                scale::measure(&mut changes, &workload);
                summary.changes = changes;
                health(&mut cluster)
            }
            Err(reason) => Err(reason),
        }
    } else {
        write_and_kill(
            &options,
            &mut cluster,
            &mut display,
            &workload,
            &mut summary,
        )
        .await
    };
    let outcome = workload.stop().await;
    summary.writes = outcome.counts;
    if let Err(reason) = failure {
        summary.fail(reason);
        return Ok(finish(summary, cluster, &mut display));
    }
    display.event(&format!(
        "writes stopped ({} acknowledged, {} failed); waiting for every node to apply the same index",
        outcome.counts.ok, outcome.counts.failed
    ));
    match wait_for_identical_stores(cluster.members(), CONVERGENCE_WAIT).await {
        Ok(convergence) => summary.convergence = Some(convergence),
        Err(reason) => summary.fail(reason),
    }
    match read_back(&cluster.endpoints(), &outcome.records).await {
        Ok(read_back) => summary.read_back = Some(read_back),
        Err(reason) => summary.fail(reason),
    }
    Ok(finish(summary, cluster, &mut display))
}

/// Completes the summary with what the monitor saw, and ends the live view.
fn finish(
    mut summary: Summary,
    mut cluster: LocalCluster,
    display: &mut Display,
) -> (Summary, LocalCluster) {
    {
        let view = cluster.view();
        summary.leader_changes = view.leader_changes();
        if let Some((term, first, second)) = view.two_leaders {
            summary.fail(format!(
                "nodes {} and {} both said they led term {term}",
                first.get(),
                second.get()
            ));
        }
    }
    display.finish();
    if !summary.passed() {
        let kept = cluster.keep_data_directory();
        println!("the nodes' data and logs are kept in {}", kept.display());
    }
    (summary, cluster)
}

fn headline(started: Instant, writes: WriteCounts, summary: &Summary) -> String {
    format!(
        "{:>6.1} s  writes ok {} failed {}  leaders killed {}",
        started.elapsed().as_secs_f64(),
        writes.ok,
        writes.failed,
        summary.kills
    )
}

/// A failure when a node exited without being killed, or two nodes led
/// one term.
fn health(cluster: &mut LocalCluster) -> Result<(), String> {
    if let Some((id, status)) = cluster.exited_on_their_own().into_iter().next() {
        return Err(format!(
            "node {} exited on its own ({status}); see {}",
            id.get(),
            cluster.log_path(id).display()
        ));
    }
    let two_leaders = cluster.view().two_leaders;
    if let Some((term, first, second)) = two_leaders {
        return Err(format!(
            "nodes {} and {} both said they led term {term}",
            first.get(),
            second.get()
        ));
    }
    Ok(())
}

async fn wait_for_first_leader(
    cluster: &mut LocalCluster,
    display: &mut Display,
    started: Instant,
) -> Result<(), String> {
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        health(cluster)?;
        let view = cluster.view().clone();
        display.refresh(
            &view,
            &headline(started, WriteCounts::default(), &Summary::default()),
        );
        if let Some((leader, sample)) = view.leader(Instant::now()) {
            display.event(&format!(
                "node {} leads term {} after {} ms",
                leader.get(),
                sample.term,
                started.elapsed().as_millis()
            ));
            return Ok(());
        }
        if started.elapsed() > FIRST_LEADER_WAIT {
            return Err(format!(
                "no leader within {} s of starting; see the node logs",
                FIRST_LEADER_WAIT.as_secs()
            ));
        }
    }
}

/// Writes for the run's duration, killing the leader every `kill_every`;
/// then waits for the last kill's election and restart.
async fn write_and_kill(
    options: &RunnerOptions,
    cluster: &mut LocalCluster,
    display: &mut Display,
    workload: &Workload,
    summary: &mut Summary,
) -> Result<(), String> {
    let started = Instant::now();
    let end = started + options.duration;
    let mut next_kill = (!options.kill_every.is_zero()).then(|| started + options.kill_every);
    let mut pending: Option<Kill> = None;
    loop {
        tokio::time::sleep(POLL_INTERVAL / 5).await;
        health(cluster)?;
        let now = Instant::now();
        if let Some(kill) = &mut pending {
            follow_kill(kill, cluster, display, summary, options.down_time())?;
            if kill.new_leader_seen && kill.restarted {
                pending = None;
            }
        } else if now >= end {
            break;
        } else if next_kill.is_some_and(|at| now >= at) {
            let leader = cluster.view().leader(now);
            if let Some((leader, sample)) = leader {
                cluster
                    .kill_node(leader)
                    .map_err(|error| error.to_string())?;
                summary.kills += 1;
                display.event(&format!(
                    "{:>6.1} s  killed leader node {} (term {}) with SIGKILL",
                    started.elapsed().as_secs_f64(),
                    leader.get(),
                    sample.term
                ));
                pending = Some(Kill {
                    node: leader,
                    term: sample.term,
                    at: Instant::now(),
                    new_leader_seen: false,
                    restarted: false,
                });
                next_kill = Some(Instant::now() + options.kill_every);
            }
        }
        let view = cluster.view().clone();
        display.refresh(&view, &headline(started, workload.counts(), summary));
    }
    Ok(())
}

/// Times the election after `kill` and restarts the killed node when its
/// down time is over.
fn follow_kill(
    kill: &mut Kill,
    cluster: &mut LocalCluster,
    display: &mut Display,
    summary: &mut Summary,
    down_time: Duration,
) -> Result<(), String> {
    if !kill.new_leader_seen {
        let seen = cluster.view().leader_since(kill.at, kill.node);
        if let Some((leader, sample)) = seen.filter(|(_, sample)| sample.term > kill.term) {
            let election = sample.at.saturating_duration_since(kill.at);
            summary.election_times.push(election);
            kill.new_leader_seen = true;
            display.event(&format!(
                "         node {} leads term {}, {} ms after the kill",
                leader.get(),
                sample.term,
                election.as_millis()
            ));
        } else if kill.at.elapsed() > ELECTION_WAIT {
            return Err(format!(
                "no new leader within {} s of killing node {} (term {})",
                ELECTION_WAIT.as_secs(),
                kill.node.get(),
                kill.term
            ));
        }
    }
    if !kill.restarted && kill.at.elapsed() >= down_time {
        cluster
            .start_node(kill.node)
            .map_err(|error| error.to_string())?;
        kill.restarted = true;
        display.event(&format!(
            "         restarted node {} (same id, same data)",
            kill.node.get()
        ));
    }
    Ok(())
}

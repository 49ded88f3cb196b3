//! `run_n_clients --scale`: grows a running cluster from its first members
//! to all its nodes, then shrinks it back, one server at a time, while the
//! workload writes; and measures how long writes were unavailable around
//! each change.
//!
//! Growing, for each spare node: add it as a learner, start it with
//! `--join`, wait until it has caught up, promote it. Then leadership moves
//! to the last node added, and shrinking removes the added nodes from the
//! last one: first the leader itself (it commits its removal, then steps
//! down), then followers. A removed node is stopped with SIGTERM.

use super::reach;
use raft_client::connect::endpoints::Endpoints;
use std::time::{Duration, Instant};

use raft::NodeId;
use raft_client::connect::operations;

use super::cluster::LocalCluster;
use super::display::Display;
use super::monitor::POLL_INTERVAL;
use super::workload::Workload;

/// How long a learner may take to catch up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// A learner is caught up when it has applied this close to the leader.
const CAUGHT_UP_WITHIN: u64 = 100;
/// The pause between changes, so that their effects on writes stay apart.
const PAUSE_BETWEEN_CHANGES: Duration = Duration::from_secs(1);
/// How long after a change its effect on writes is still counted.
const SETTLE: Duration = Duration::from_millis(500);

/// One configuration change and what it cost.
#[derive(Clone, Debug)]
pub struct ChangeReport {
    /// What changed, for instance `add learner 4`.
    pub what: String,
    /// When the request was sent and when it was answered.
    pub sent: Instant,
    /// When it was answered.
    pub answered: Instant,
    /// The longest time without an acknowledged write from the request
    /// until [`SETTLE`] after its answer.
    pub longest_write_gap: Duration,
}

impl ChangeReport {
    /// The line the summary prints.
    pub fn line(&self) -> String {
        format!(
            "change {:<22} answered in {:>5} ms, writes unavailable for at most {:>5} ms",
            self.what,
            self.answered.duration_since(self.sent).as_millis(),
            self.longest_write_gap.as_millis()
        )
    }
}

/// Runs the changes, printing each as it goes. The reports' write gaps are
/// filled in by [`measure`] once the workload has gone on past the last.
pub async fn grow_and_shrink(
    cluster: &mut LocalCluster,
    display: &mut Display,
    workload: &Workload,
    started: Instant,
) -> Result<Vec<ChangeReport>, String> {
    let first_members = cluster.node_ids();
    let spares: Vec<NodeId> = cluster
        .all_node_ids()
        .into_iter()
        .filter(|id| !first_members.contains(id))
        .collect();
    let mut reports = Vec::new();
    let clock = |at: Instant| at.duration_since(started).as_secs_f64();
    for &id in &spares {
        let address = cluster
            .spare_address(id)
            .ok_or_else(|| format!("node {} has no address", id.get()))?;
        let report = change(
            (cluster, display, workload, started),
            |_| format!("add learner {}", id.get()),
            |endpoints| async move {
                operations::add_member(&endpoints, id.get(), &address.to_string(), true).await
            },
        )
        .await?;
        reports.push(report);
        cluster
            .start_joining(id)
            .map_err(|error| error.to_string())?;
        cluster.set_learner(id, true);
        wait_caught_up(cluster, display, workload, id).await?;
        display.event(&format!(
            "{:>6.1} s  node {} started with --join and caught up",
            clock(Instant::now()),
            id.get()
        ));
        let report = change(
            (cluster, display, workload, started),
            |_| format!("promote {}", id.get()),
            |endpoints| async move { operations::promote_member(&endpoints, id.get()).await },
        )
        .await?;
        cluster.set_learner(id, false);
        reports.push(report);
    }
    if let Some(&last) = spares.last() {
        let report = change(
            (cluster, display, workload, started),
            |_| format!("move leader to {}", last.get()),
            |endpoints| async move { operations::transfer_leader(&endpoints, last.get()).await },
        )
        .await?;
        reports.push(report);
    }
    for &id in spares.iter().rev() {
        let report = change(
            (cluster, display, workload, started),
            |leader| match leader == Some(id) {
                true => format!("remove leader {}", id.get()),
                false => format!("remove follower {}", id.get()),
            },
            |endpoints| async move { operations::remove_member(&endpoints, id.get()).await },
        )
        .await?;
        reports.push(report);
        cluster.retire(id).await;
        display.event(&format!(
            "{:>6.1} s  node {} stopped",
            clock(Instant::now()),
            id.get()
        ));
    }
    Ok(reports)
}

/// Fills in each report's longest write gap; call once the workload has
/// written for [`SETTLE`] after the last change.
pub fn measure(reports: &mut [ChangeReport], workload: &Workload) {
    for report in reports {
        report.longest_write_gap = workload.longest_gap(report.sent, report.answered + SETTLE);
    }
}

/// How long to keep writing after the last change before measuring.
pub fn settle_time() -> Duration {
    SETTLE + POLL_INTERVAL
}

/// Pauses, then sends one change through the members' endpoints (the
/// command retries an unavailable cluster and passing refusals), times it
/// and says it happened. `what` names it, given the leader as a fresh
/// status answer names it just before.
async fn change<F, Fut, T>(
    (cluster, display, workload, started): (&LocalCluster, &mut Display, &Workload, Instant),
    what: impl FnOnce(Option<NodeId>) -> String,
    send: F,
) -> Result<ChangeReport, String>
where
    F: FnOnce(Endpoints) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    pause(cluster, display, workload, PAUSE_BETWEEN_CHANGES).await;
    let what = what(current_leader(cluster, display, workload).await);
    let sent = Instant::now();
    send(reach::endpoints(cluster.endpoints()))
        .await
        .map_err(|status| format!("{what} failed: {:?}: {}", status.code(), status.message()))?;
    let answered = Instant::now();
    display.event(&format!(
        "{:>6.1} s  {what}",
        answered.duration_since(started).as_secs_f64()
    ));
    Ok(ChangeReport {
        what,
        sent,
        answered,
        longest_write_gap: Duration::ZERO,
    })
}

/// Waits `time`, keeping the live view fresh.
pub async fn pause(
    cluster: &LocalCluster,
    display: &mut Display,
    workload: &Workload,
    time: Duration,
) {
    let until = Instant::now() + time;
    while Instant::now() < until {
        tokio::time::sleep(POLL_INTERVAL / 5).await;
        refresh(cluster, display, workload);
    }
}

fn refresh(cluster: &LocalCluster, display: &mut Display, workload: &Workload) {
    let view = cluster.view().clone();
    let counts = workload.counts();
    display.refresh(
        &view,
        &format!(
            "writes ok {} failed {}  members {}",
            counts.ok,
            counts.failed,
            cluster.configuration()
        ),
    );
}

/// The leader, as a fresh status answer names it (waiting for one for up
/// to a second).
async fn current_leader(
    cluster: &LocalCluster,
    display: &mut Display,
    workload: &Workload,
) -> Option<NodeId> {
    for _ in 0..20 {
        if let Some(leader) = cluster.leader() {
            return Some(leader);
        }
        pause(cluster, display, workload, Duration::from_millis(50)).await;
    }
    None
}

/// Waits until learner `id` has applied within [`CAUGHT_UP_WITHIN`] of the
/// leader.
async fn wait_caught_up(
    cluster: &LocalCluster,
    display: &mut Display,
    workload: &Workload,
    id: NodeId,
) -> Result<(), String> {
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        pause(cluster, display, workload, POLL_INTERVAL).await;
        let view = cluster.view().clone();
        let learner = view.nodes.get(&id).and_then(|node| node.sample);
        let leader = view.leader(Instant::now());
        if let (Some(learner), Some((_, leader))) = (learner, leader) {
            if learner.applied_index + CAUGHT_UP_WITHIN >= leader.applied_index {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "learner {} did not catch up within {} s; see {}",
                id.get(),
                CATCH_UP_WAIT.as_secs(),
                cluster.log_path(id).display()
            ));
        }
    }
}

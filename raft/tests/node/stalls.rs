//! Stalls are measured and told: a node whose event loop is held up past
//! half an election timeout counts (and logs) a late clock and, at the
//! leader, late heartbeats; a slow apply is counted too; and the histograms
//! of `/metrics` show how late and how long.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use raft::node::metrics::{NodeMetrics, StallLabels};
use raft::NodeId;

use super::support::{propose, Cluster, LIMIT, SLOW, SLOW_APPLY};

/// How long the test holds every event loop up: past half the default
/// election timeout (10 ticks of 10 ms), so past the warning threshold.
const HOLD: Duration = Duration::from_millis(300);

fn stalls(metrics: &NodeMetrics, kind: &str) -> u64 {
    let labels = StallLabels { kind: kind.into() };
    metrics.stalls.get_or_create(&labels).get()
}

/// The `_sum` of a histogram as `/metrics` shows it, in seconds.
fn histogram_sum(metrics: &NodeMetrics, name: &str) -> f64 {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).expect("encodes");
    let line = format!("raft_{name}_sum ");
    let found = text.lines().find_map(|row| row.strip_prefix(line.as_str()));
    found.expect("the histogram").parse().expect("a number")
}

/// Waits until `done` holds, looking once a tick; the node's own clock
/// moves the figures, so there is nothing to be woken by.
async fn until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(LIMIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the figures move");
}

// One thread runs every node's event loop, so blocking it holds all of them
// up at once, as an overloaded CPU or a paused process would.
#[tokio::test(flavor = "current_thread")]
async fn an_event_loop_held_up_counts_a_late_clock_and_late_heartbeats() {
    let cluster = Cluster::new(3).await;
    propose(&cluster, "before").await;
    let leader = cluster.leader().await;
    let late = |id: NodeId, kind: &str| stalls(cluster.node(id).metrics(), kind);
    let before: Vec<u64> = (1..=3)
        .map(|id| late(NodeId(id), "event_loop_late"))
        .collect();
    let heartbeats_before = late(leader, "heartbeat_late");
    let metrics = cluster.node(leader).metrics();
    let lag_before = histogram_sum(metrics, "event_loop_lag_seconds");
    let delay_before = histogram_sum(metrics, "heartbeat_delay_seconds");

    std::thread::sleep(HOLD);

    until(|| {
        let clocks =
            (1..=3).all(|id| late(NodeId(id), "event_loop_late") > before[id as usize - 1]);
        clocks && late(leader, "heartbeat_late") > heartbeats_before
    })
    .await;
    let lag = histogram_sum(metrics, "event_loop_lag_seconds") - lag_before;
    assert!(lag >= 0.2, "the lag histogram grew by {lag} s only");
    let delay = histogram_sum(metrics, "heartbeat_delay_seconds") - delay_before;
    assert!(
        delay >= 0.2,
        "the heartbeat delay histogram grew by {delay} s only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_apply_is_counted_and_timed() {
    let cluster = Cluster::new(1).await;
    propose(&cluster, "quick").await;
    let metrics = cluster.node(NodeId(1)).metrics();
    let (count_before, sum_before) = (
        stalls(metrics, "slow_apply"),
        histogram_sum(metrics, "apply_duration_seconds"),
    );

    propose(&cluster, std::str::from_utf8(SLOW).expect("text")).await;

    assert_eq!(stalls(metrics, "slow_apply"), count_before + 1);
    let took = histogram_sum(metrics, "apply_duration_seconds") - sum_before;
    assert!(took >= SLOW_APPLY.as_secs_f64(), "{took}");
}

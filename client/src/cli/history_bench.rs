//! `raft_client history-bench`: what keeping and dropping history costs a
//! server. Works against etcd and RustyRaft alike. Three steps, run in
//! order by default or one at a time (so that a script can read the
//! servers' memory between them):
//!
//! - **range**: writes `keys` keys under the prefix, notes the revision,
//!   overwrites every key `overwrites` times, then times a Range over all
//!   the keys at the noted (old) revision, and one at the latest, each
//!   `range_repeats` times one after another (the median and the fastest);
//! - **versions**: writes `versions` more versions of the same keys;
//! - **compact**: compacts to the latest revision and times it (with
//!   `physical`, the answer waits until the member asked has dropped the
//!   history from its store, as etcd does it; etcd paces that work in
//!   batches with pauses between them).
//!
//! Writes are transactions of `puts_per_transaction` puts on distinct keys
//! (one revision each, one stored version per put, as etcd counts them),
//! sent by `clients` closed-loop workers spread over the endpoints, so that
//! a million versions take seconds rather than minutes on a small machine.
//! Each step prints one `name=value` line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use raft_proto::etcd::etcdserverpb::request_op::Request as Operation;
use raft_proto::etcd::etcdserverpb::{
    CompactionRequest, CompactionResponse, PutRequest, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse,
};

use crate::connect::endpoints::Endpoints;
use crate::connect::unary_channel::UnaryChannel;
use crate::kv::prefix_end;

/// The gRPC methods used.
const TXN: &str = "/etcdserverpb.KV/Txn";
/// See [`TXN`].
const RANGE: &str = "/etcdserverpb.KV/Range";
/// See [`TXN`].
const COMPACT: &str = "/etcdserverpb.KV/Compact";

/// How long one write or range may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the compaction may take (etcd paces a large one over seconds).
const COMPACT_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a worker tries one transaction before the step fails.
const ATTEMPTS: u32 = 50;

/// Which part of the benchmark to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryStep {
    /// Range, then versions, then compact.
    All,
    /// Fill, overwrite, time ranges at an old revision.
    Range,
    /// Write the versions.
    Versions,
    /// Compact to the latest revision.
    Compact,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct HistoryBenchOptions {
    /// The endpoints; workers are spread over them, ranges and the
    /// compaction go to the first.
    pub endpoints: Endpoints,
    /// Every key written starts with this.
    pub prefix: Vec<u8>,
    /// Distinct keys.
    pub keys: u64,
    /// How often the range step overwrites every key after noting the old
    /// revision.
    pub overwrites: u64,
    /// Ranges timed at each revision.
    pub range_repeats: usize,
    /// Versions the versions step writes.
    pub versions: u64,
    /// Puts per transaction.
    pub puts_per_transaction: u64,
    /// Closed-loop workers.
    pub clients: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// The compaction waits for the history to be dropped.
    pub physical: bool,
    /// Which step (or all).
    pub step: HistoryStep,
}

/// Runs the step(s) asked for; one line per step.
pub async fn run(options: &HistoryBenchOptions) -> Result<Vec<String>, String> {
    if options.prefix.is_empty() {
        return Err("--prefix must not be empty".to_string());
    }
    let mut channels = Vec::new();
    for url in &options.endpoints.urls {
        let channel = UnaryChannel::connect(url, options.endpoints.tls.as_ref())
            .await
            .map_err(|error| format!("connection to {url}: {error}"))?;
        channels.push(channel);
    }
    let mut lines = Vec::new();
    let step = options.step;
    if matches!(step, HistoryStep::All | HistoryStep::Range) {
        lines.push(range_step(&channels, options).await?);
    }
    if matches!(step, HistoryStep::All | HistoryStep::Versions) {
        lines.push(versions_step(&channels, options).await?);
    }
    if matches!(step, HistoryStep::All | HistoryStep::Compact) {
        lines.push(compact_step(&channels[0], options).await?);
    }
    Ok(lines)
}

/// Calls `path` with `request`, failing after `timeout`.
async fn call<Q: Message, A: Message + Default>(
    channel: &UnaryChannel,
    path: &str,
    request: &Q,
    timeout: Duration,
) -> Result<A, String> {
    match tokio::time::timeout(timeout, channel.call::<Q, A>(path, request)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(format!("{path}: {error}")),
        Err(_) => Err(format!("{path}: no answer within {timeout:?}")),
    }
}

/// The fill, the overwrites and the timed ranges.
async fn range_step(
    channels: &[UnaryChannel],
    options: &HistoryBenchOptions,
) -> Result<String, String> {
    let began = Instant::now();
    let old_revision = write_versions(channels, options, options.keys).await?;
    let fill = began.elapsed();
    write_versions(channels, options, options.keys * options.overwrites).await?;
    let (old, kvs) = time_ranges(&channels[0], options, old_revision).await?;
    if kvs != options.keys {
        return Err(format!(
            "a range at revision {old_revision} found {kvs} keys, not {}",
            options.keys
        ));
    }
    let (latest, _) = time_ranges(&channels[0], options, 0).await?;
    Ok(format!(
        "range_keys={kvs} old_revision={old_revision} fill_secs={:.2} old_range_ms={:.2} \
         old_range_min_ms={:.2} latest_range_ms={:.2} latest_range_min_ms={:.2}",
        fill.as_secs_f64(),
        median_milliseconds(&old),
        minimum_milliseconds(&old),
        median_milliseconds(&latest),
        minimum_milliseconds(&latest),
    ))
}

/// Writes the versions and says how fast.
async fn versions_step(
    channels: &[UnaryChannel],
    options: &HistoryBenchOptions,
) -> Result<String, String> {
    let began = Instant::now();
    let revision = write_versions(channels, options, options.versions).await?;
    let seconds = began.elapsed().as_secs_f64();
    Ok(format!(
        "versions={} versions_secs={seconds:.2} versions_per_sec={:.0} revision={revision}",
        options.versions,
        options.versions as f64 / seconds.max(1e-9)
    ))
}

/// Compacts to the latest revision and says how long it took.
async fn compact_step(
    channel: &UnaryChannel,
    options: &HistoryBenchOptions,
) -> Result<String, String> {
    let probe = RangeRequest {
        key: options.prefix.clone(),
        range_end: prefix_end(&options.prefix),
        count_only: true,
        ..Default::default()
    };
    let answer: RangeResponse = call(channel, RANGE, &probe, CALL_TIMEOUT).await?;
    let revision = answer.header.map_or(0, |header| header.revision);
    let request = CompactionRequest {
        revision,
        physical: options.physical,
    };
    let began = Instant::now();
    let _: CompactionResponse = call(channel, COMPACT, &request, COMPACT_TIMEOUT).await?;
    Ok(format!(
        "compact_revision={revision} compact_ms={:.1} physical={}",
        began.elapsed().as_secs_f64() * 1_000.0,
        options.physical
    ))
}

/// Times `range_repeats` ranges over every key at `revision` (0: the
/// latest), one after another; returns their durations and how many keys
/// the last one found.
async fn time_ranges(
    channel: &UnaryChannel,
    options: &HistoryBenchOptions,
    revision: i64,
) -> Result<(Vec<Duration>, u64), String> {
    let request = RangeRequest {
        key: options.prefix.clone(),
        range_end: prefix_end(&options.prefix),
        revision,
        ..Default::default()
    };
    let mut durations = Vec::new();
    let mut found = 0;
    for _ in 0..options.range_repeats.max(1) {
        let began = Instant::now();
        let answer: RangeResponse = call(channel, RANGE, &request, CALL_TIMEOUT).await?;
        durations.push(began.elapsed());
        found = answer.kvs.len() as u64;
    }
    Ok((durations, found))
}

/// The median of `durations`, in milliseconds.
fn median_milliseconds(durations: &[Duration]) -> f64 {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted
        .get(sorted.len() / 2)
        .map_or(0.0, |middle| middle.as_secs_f64() * 1_000.0)
}

/// The fastest of `durations`, in milliseconds.
fn minimum_milliseconds(durations: &[Duration]) -> f64 {
    durations
        .iter()
        .min()
        .map_or(0.0, |fastest| fastest.as_secs_f64() * 1_000.0)
}

/// Put number `number` of a run: key `number % keys` under the prefix.
fn put(options: &HistoryBenchOptions, number: u64) -> RequestOp {
    let mut key = options.prefix.clone();
    key.extend_from_slice(format!("{:08}", number % options.keys.max(1)).as_bytes());
    RequestOp {
        request: Some(Operation::RequestPut(PutRequest {
            key,
            value: vec![b'h'; options.value_size],
            ..Default::default()
        })),
    }
}

/// Writes `total` puts (put `n` to key `n % keys`) in transactions, by
/// `clients` workers; returns the highest revision the answers reported,
/// a revision at which every put is in the store.
async fn write_versions(
    channels: &[UnaryChannel],
    options: &HistoryBenchOptions,
    total: u64,
) -> Result<i64, String> {
    // A transaction must not put one key twice: at most `keys` puts each.
    let per_transaction = options.puts_per_transaction.clamp(1, options.keys.max(1));
    let transactions = total.div_ceil(per_transaction);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers: tokio::task::JoinSet<Result<i64, String>> = tokio::task::JoinSet::new();
    for worker in 0..options.clients.max(1) {
        let channel = channels[worker % channels.len()].clone();
        let next = next.clone();
        let options = options.clone();
        workers.spawn(async move {
            let mut highest = 0i64;
            loop {
                let transaction = next.fetch_add(1, Ordering::Relaxed);
                if transaction >= transactions {
                    return Ok(highest);
                }
                let first = transaction * per_transaction;
                let last = (first + per_transaction).min(total);
                let request = TxnRequest {
                    success: (first..last).map(|number| put(&options, number)).collect(),
                    ..Default::default()
                };
                let revision = write_transaction(&channel, &request).await?;
                highest = highest.max(revision);
            }
        });
    }
    let mut highest = 0;
    while let Some(done) = workers.join_next().await {
        let revision = done.map_err(|error| format!("a writer failed: {error}"))??;
        highest = highest.max(revision);
    }
    Ok(highest)
}

/// Sends one transaction, retrying a failure (a leader change) a few
/// times; returns its revision.
async fn write_transaction(channel: &UnaryChannel, request: &TxnRequest) -> Result<i64, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call::<_, TxnResponse>(channel, TXN, request, CALL_TIMEOUT).await {
            Ok(answer) => return Ok(answer.header.map_or(0, |header| header.revision)),
            Err(reason) if attempt >= ATTEMPTS => return Err(reason),
            Err(reason) => {
                tracing::debug!(%reason, "a history benchmark transaction failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

//! `raft_client watch-bench`: the etcd Watch benchmark's load generator.
//! Works against etcd and RustyRaft alike.
//!
//! **Fan-out** (the default): `watchers` watchers on one prefix, spread over
//! `streams` bidirectional Watch streams, themselves spread round-robin over
//! the endpoints ([`crate::cli::watch_streams`]). Once every watcher is
//! created, puts under the prefix go out at a fixed rate, open loop (a
//! ticker decides when, not the answers), round-robin over the endpoints,
//! each value carrying its send time. Every event received is timed from
//! that send time. After the last put the run drains until every expected
//! event (acknowledged puts × watchers) is in, or [`WatchBenchOptions::drain`]
//! has passed; the measured window runs from the first put to the last
//! event (or to the end of the drain when events are missing).
//!
//! **Idle** (`--idle`): the watchers watch a prefix no put touches, and
//! closed-loop puts run as `raft_client bench` runs them
//! ([`crate::cli::bench::run`]), so that put throughput with idle watchers
//! attached compares with `--watchers 0`.
//!
//! The last line printed is one `name=value` line (see [`FanOutReport`]
//! and [`idle_summary_line`]).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use raft_proto::etcd::etcdserverpb::kv_client::KvClient;
use raft_proto::etcd::etcdserverpb::PutRequest;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::cli::bench::{self, BenchOptions, BenchReport};
use crate::cli::watch_streams::{
    latency_histogram, nanoseconds_since, wide_channel, WatchPlan, WatcherStreams,
};

/// How long one put may take before it counts as failed.
const PUT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the ticker of the open-loop puts wakes; each wake sends every
/// put that is due by then, so any rate is kept on average.
const TICK: Duration = Duration::from_millis(1);

/// The keys `raft_client bench` writes (`bench/<client>/<n>`), which an
/// idle watcher must not watch.
const BENCH_KEYS: &[u8] = b"bench/";

/// What to run.
#[derive(Clone, Debug)]
pub struct WatchBenchOptions {
    /// Where the watchers are and how many.
    pub watch: WatchPlan,
    /// Puts per second (fan-out).
    pub rate: u64,
    /// How long the puts run.
    pub duration: Duration,
    /// Longest wait for missing events after the last put is answered.
    pub drain: Duration,
    /// Bytes per value (at least the eight of the send time).
    pub value_size: usize,
    /// Distinct keys the fan-out puts cycle through, under the prefix.
    pub keys: u64,
    /// `Some(clients, connections)`: idle mode, with this closed-loop load.
    pub idle: Option<(usize, usize)>,
}

/// What a fan-out run measured.
#[derive(Debug)]
pub struct FanOutReport {
    /// Watchers.
    pub watchers: usize,
    /// How long creating every watcher took.
    pub created_in: Duration,
    /// Puts sent.
    pub puts_sent: u64,
    /// Puts answered OK.
    pub puts_acknowledged: u64,
    /// How long the puts ran.
    pub put_window: Duration,
    /// Latency of the acknowledged puts, in microseconds.
    pub put_latency: Histogram<u64>,
    /// Events received.
    pub events: u64,
    /// Events expected: acknowledged puts × watchers.
    pub expected_events: u64,
    /// From the first put to the last event, or to the end of the drain.
    pub event_window: Duration,
    /// Put-to-event latency, in microseconds.
    pub event_latency: Histogram<u64>,
    /// Why a stream failed during the run, if one did.
    pub stream_failure: Option<String>,
}

/// Milliseconds, from microseconds, as the summary prints them.
fn milliseconds(microseconds: u64) -> String {
    format!("{:.3}", microseconds as f64 / 1_000.0)
}

/// `count / window` per second.
fn per_second(count: u64, window: Duration) -> String {
    format!("{:.0}", count as f64 / window.as_secs_f64().max(1e-9))
}

impl FanOutReport {
    /// The last line the command prints.
    pub fn summary_line(&self) -> String {
        let events = &self.event_latency;
        format!(
            "watchers={} created_ms={} puts={} put_errors={} puts_per_sec={} put_p99_ms={} \
             events={} events_per_sec={} expected_events={} p50_ms={} p99_ms={} max_ms={} \
             stream_errors={}",
            self.watchers,
            self.created_in.as_millis(),
            self.puts_acknowledged,
            self.puts_sent - self.puts_acknowledged,
            per_second(self.puts_acknowledged, self.put_window),
            milliseconds(self.put_latency.value_at_quantile(0.99)),
            self.events,
            per_second(self.events, self.event_window),
            self.expected_events,
            milliseconds(events.value_at_quantile(0.50)),
            milliseconds(events.value_at_quantile(0.99)),
            milliseconds(events.max()),
            usize::from(self.stream_failure.is_some()),
        )
    }
}

/// The idle mode's last line: the watchers, the events they saw (none
/// expected), and `raft_client bench`'s figures.
pub fn idle_summary_line(watchers: usize, events: u64, report: &BenchReport) -> String {
    format!(
        "watchers={watchers} idle_events={events} put_errors={} {}",
        report.errors(),
        report.summary_line()
    )
}

/// Refuses a prefix the run cannot use.
fn check_prefix(options: &WatchBenchOptions) -> Result<(), String> {
    let prefix = &options.watch.prefix;
    if prefix.is_empty() {
        return Err("--prefix must not be empty (it would watch every key)".to_string());
    }
    let overlaps = prefix.starts_with(BENCH_KEYS) || BENCH_KEYS.starts_with(prefix);
    if options.idle.is_some() && overlaps {
        return Err("with --idle, --prefix must not cover bench/, where the puts go".to_string());
    }
    Ok(())
}

/// Runs the fan-out mode.
pub async fn run_fan_out(options: &WatchBenchOptions) -> Result<FanOutReport, String> {
    check_prefix(options)?;
    let epoch = Instant::now();
    // tonic's client rather than `bench`'s UnaryChannel: a thousand puts a
    // second cost it little, and its connections take wide windows.
    let endpoints = &options.watch.endpoints;
    let mut channels = Vec::new();
    for url in &endpoints.urls {
        let channel = wide_channel(endpoints, url);
        KvClient::new(channel.clone())
            .put(PutRequest {
                key: options.watch.prefix.clone(),
                value: vec![0; 8],
                ..Default::default()
            })
            .await
            .map_err(|status| format!("a put to {url}: {status}"))?;
        channels.push(channel);
    }
    let streams = if options.watch.watchers > 0 {
        Some(WatcherStreams::open(&options.watch, epoch).await?)
    } else {
        None
    };
    let created_in = epoch.elapsed();
    let puts = put_at_rate(&channels, options, epoch).await;
    let expected_events = puts.acknowledged * options.watch.watchers as u64;
    let Some(streams) = streams else {
        return Ok(FanOutReport {
            watchers: 0,
            created_in,
            puts_sent: puts.sent,
            puts_acknowledged: puts.acknowledged,
            put_window: puts.window,
            put_latency: puts.latency,
            events: 0,
            expected_events: 0,
            event_window: puts.window,
            event_latency: latency_histogram(),
            stream_failure: None,
        });
    };
    let drain_end = Instant::now() + options.drain;
    while streams.events_received() < expected_events && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events = streams.events_received();
    let window_end = if events >= expected_events {
        let last = streams.last_event_nanoseconds.load(Ordering::Relaxed);
        epoch + Duration::from_nanos(last)
    } else {
        Instant::now()
    };
    let event_window = window_end.saturating_duration_since(puts.first_sent);
    let tally = streams.close().await;
    Ok(FanOutReport {
        watchers: options.watch.watchers,
        created_in,
        puts_sent: puts.sent,
        puts_acknowledged: puts.acknowledged,
        put_window: puts.window,
        put_latency: puts.latency,
        events,
        expected_events,
        event_window,
        event_latency: tally.latency,
        stream_failure: tally.failure,
    })
}

/// Runs the idle mode: returns the events the idle watchers saw and the
/// closed-loop puts' report.
pub async fn run_idle(options: &WatchBenchOptions) -> Result<(u64, BenchReport), String> {
    check_prefix(options)?;
    let (clients, connections) = options.idle.unwrap_or((1, 1));
    let streams = if options.watch.watchers > 0 {
        Some(WatcherStreams::open(&options.watch, Instant::now()).await?)
    } else {
        None
    };
    let report = bench::run(BenchOptions {
        endpoints: options.watch.endpoints.clone(),
        clients,
        connections,
        duration: options.duration,
        value_size: options.value_size,
        read: false,
        serializable: false,
        keys_per_client: 1000,
        once: false,
    })
    .await;
    let Some(streams) = streams else {
        return Ok((0, report));
    };
    let events = streams.events_received();
    let tally = streams.close().await;
    match tally.failure {
        Some(reason) => Err(format!("a watch stream failed during the run: {reason}")),
        None => Ok((events, report)),
    }
}

/// What the open-loop puts did.
struct PutTally {
    /// Puts sent.
    sent: u64,
    /// Puts answered OK.
    acknowledged: u64,
    /// When the first put was sent.
    first_sent: Instant,
    /// From the first put to the last answer.
    window: Duration,
    /// Latency of the acknowledged puts, in microseconds.
    latency: Histogram<u64>,
}

/// Sends `options.rate` puts a second for `options.duration`, whatever the
/// answers do, and waits for every answer.
async fn put_at_rate(
    channels: &[Channel],
    options: &WatchBenchOptions,
    epoch: Instant,
) -> PutTally {
    let rate = options.rate.max(1);
    let mut in_flight = JoinSet::new();
    let mut ticker = tokio::time::interval(TICK);
    let start = Instant::now();
    let mut tally = PutTally {
        sent: 0,
        acknowledged: 0,
        first_sent: start,
        window: Duration::ZERO,
        latency: latency_histogram(),
    };
    let end = start + options.duration;
    let padding = options.value_size.saturating_sub(8);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let elapsed = now.min(end).duration_since(start);
        let due = (elapsed.as_secs_f64() * rate as f64) as u64;
        while tally.sent < due {
            let channel = &channels[tally.sent as usize % channels.len()];
            let sent_at = Instant::now();
            let mut value = nanoseconds_since(epoch, sent_at).to_be_bytes().to_vec();
            value.resize(8 + padding, b'v');
            let mut key = options.watch.prefix.clone();
            key.extend_from_slice((tally.sent % options.keys.max(1)).to_string().as_bytes());
            in_flight.spawn(put_once(
                channel.clone(),
                PutRequest {
                    key,
                    value,
                    ..Default::default()
                },
            ));
            tally.sent += 1;
        }
        while let Some(done) = in_flight.try_join_next() {
            tally.take(done);
        }
        if now >= end {
            break;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        tally.take(done);
    }
    tally.window = start.elapsed();
    tally
}

impl PutTally {
    /// Counts one finished put: its latency in microseconds, or `None`.
    fn take(&mut self, done: Result<Option<u64>, tokio::task::JoinError>) {
        if let Ok(Some(microseconds)) = done {
            self.acknowledged += 1;
            let _ = self.latency.record(microseconds.max(1));
        }
    }
}

/// One put; its latency in microseconds, or `None` if it failed.
async fn put_once(channel: Channel, request: PutRequest) -> Option<u64> {
    let began = Instant::now();
    let mut client = KvClient::new(channel);
    let answer = tokio::time::timeout(PUT_TIMEOUT, client.put(request));
    match answer.await {
        Ok(Ok(_)) => Some(began.elapsed().as_micros() as u64),
        Ok(Err(status)) => {
            tracing::debug!(%status, "a watch benchmark put failed");
            None
        }
        Err(_) => None,
    }
}

//! The write workload of a local cluster: concurrent clients, each putting
//! to keys that only it writes (cycling over a few of them, so keys are
//! overwritten), recording for every key what its writes' outcomes allow
//! it to hold at the end.

use super::reach;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft_proto::etcd::etcdserverpb::kv_client::KvClient;
use raft_proto::etcd::etcdserverpb::PutRequest;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// Every key the workload writes starts with this.
pub const KEY_PREFIX: &str = "run_n_clients/";

/// How long one put may take before the client gives up on it (and counts
/// its outcome as unknown).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The pause after a failed put, so that a client does not spin while the
/// cluster has no leader.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(20);

/// What one key may hold at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRecord {
    /// The value of the last acknowledged put.
    pub acknowledged: Option<Vec<u8>>,
    /// The values of puts that failed. A failed put may still have been
    /// applied (say the leader committed it, then died before answering),
    /// at any time after it was sent, so the key may hold any of these
    /// instead.
    pub unacknowledged: Vec<Vec<u8>>,
}

impl KeyRecord {
    /// Whether the key may hold `value` (`None`: the key is absent).
    pub fn allows(&self, value: Option<&[u8]>) -> bool {
        match value {
            None => self.acknowledged.is_none(),
            Some(value) => {
                self.acknowledged.as_deref() == Some(value)
                    || self.unacknowledged.iter().any(|other| other == value)
            }
        }
    }
}

/// Puts so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Acknowledged.
    pub ok: u64,
    /// Failed or timed out.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    /// When each acknowledged put was answered.
    acknowledged_at: Mutex<Vec<Instant>>,
}

/// What the workload did.
#[derive(Debug, Default)]
pub struct WorkloadOutcome {
    /// Puts by outcome.
    pub counts: WriteCounts,
    /// Every key written, and what it may hold.
    pub records: BTreeMap<Vec<u8>, KeyRecord>,
}

/// The running clients.
pub struct Workload {
    /// Set to ask the clients to finish their put in flight and stop.
    stopping: Arc<AtomicBool>,
    counters: Arc<Counters>,
    clients: Vec<JoinHandle<BTreeMap<Vec<u8>, KeyRecord>>>,
}

impl Workload {
    /// Starts `clients` clients over `endpoints` (URLs), each writing
    /// `keys_per_client` keys in turn. A client starts on its own endpoint
    /// and moves to the next one after each failure, as etcd clients do.
    pub fn start(endpoints: Vec<String>, clients: usize, keys_per_client: usize) -> Workload {
        let stopping = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let channels: Vec<Channel> = endpoints.iter().map(|url| channel(url)).collect();
        let clients = (0..clients)
            .map(|client| {
                tokio::spawn(write(
                    client,
                    channels.clone(),
                    keys_per_client.max(1),
                    stopping.clone(),
                    counters.clone(),
                ))
            })
            .collect();
        Workload {
            stopping,
            counters,
            clients,
        }
    }

    /// Puts so far.
    pub fn counts(&self) -> WriteCounts {
        counts(&self.counters)
    }

    /// The longest time without any acknowledged put that overlaps
    /// `from..to`: how long writes were unavailable around then (a few
    /// milliseconds at most while the cluster is healthy).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let times = self
            .counters
            .acknowledged_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        longest_gap(times, from, to)
    }

    /// Stops the clients once their puts in flight have an outcome.
    pub async fn stop(self) -> WorkloadOutcome {
        self.stopping.store(true, Ordering::Relaxed);
        let mut records = BTreeMap::new();
        for client in self.clients {
            match client.await {
                Ok(written) => records.extend(written),
                Err(error) => tracing::error!(%error, "a write client failed"),
            }
        }
        WorkloadOutcome {
            counts: counts(&self.counters),
            records,
        }
    }
}

fn counts(counters: &Counters) -> WriteCounts {
    WriteCounts {
        ok: counters.ok.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
    }
}

/// The longest interval between consecutive `times` (or from `from` to
/// the first, or from the last to `to`) that overlaps `from..to`.
fn longest_gap(mut times: Vec<Instant>, from: Instant, to: Instant) -> Duration {
    times.sort_unstable();
    let before = times.partition_point(|time| *time < from);
    let after = times.partition_point(|time| *time <= to);
    // The answer before the window and the one after it bound the gaps
    // that overlap it.
    let start = times[..before].last().copied().unwrap_or(from);
    let end = times.get(after).copied().unwrap_or(to);
    let mut previous = start;
    let mut longest = Duration::ZERO;
    for time in times[before..after].iter().copied().chain([end]) {
        longest = longest.max(time.saturating_duration_since(previous));
        previous = time;
    }
    longest
}

/// A lazily connected channel to `url` whose requests give up after
/// [`REQUEST_TIMEOUT`] (their outcome then unknown).
pub fn channel(url: &str) -> Channel {
    reach::connect_lazy(
        Endpoint::from_shared(url.to_string())
            .expect("endpoints are made from socket addresses")
            .connect_timeout(Duration::from_millis(500))
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true),
    )
}

/// The key of a client's `slot`th key.
pub fn key(client: usize, slot: usize) -> Vec<u8> {
    format!("{KEY_PREFIX}{client:03}/{slot:04}").into_bytes()
}

async fn write(
    client: usize,
    channels: Vec<Channel>,
    keys_per_client: usize,
    stopping: Arc<AtomicBool>,
    counters: Arc<Counters>,
) -> BTreeMap<Vec<u8>, KeyRecord> {
    let mut records: BTreeMap<Vec<u8>, KeyRecord> = BTreeMap::new();
    let mut endpoint = client % channels.len();
    let mut kv = KvClient::new(channels[endpoint].clone());
    let mut sequence = 0usize;
    while !stopping.load(Ordering::Relaxed) {
        let key = key(client, sequence % keys_per_client);
        // Unique in the whole run, so a value read back names its put.
        let value = format!("client {client} put {sequence}").into_bytes();
        sequence += 1;
        let outcome = kv
            .put(PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..PutRequest::default()
            })
            .await;
        let record = records.entry(key).or_default();
        match outcome {
            Ok(_) => {
                record.acknowledged = Some(value);
                counters.ok.fetch_add(1, Ordering::Relaxed);
                counters
                    .acknowledged_at
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(Instant::now());
            }
            Err(status) => {
                tracing::debug!(client, code = ?status.code(), message = status.message(), "a put failed");
                record.unacknowledged.push(value);
                counters.failed.fetch_add(1, Ordering::Relaxed);
                endpoint = (endpoint + 1) % channels.len();
                kv = KvClient::new(channels[endpoint].clone());
                tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_is_the_one_overlapping_the_window() {
        let zero = Instant::now();
        let at = |millis: u64| zero + Duration::from_millis(millis);
        let times = vec![at(0), at(10), at(20), at(100), at(110), at(400), at(405)];
        // 20..100 overlaps 50..60; 110..400 does not, it starts after.
        assert_eq!(
            longest_gap(times.clone(), at(50), at(60)),
            Duration::from_millis(80)
        );
        assert_eq!(
            longest_gap(times.clone(), at(50), at(120)),
            Duration::from_millis(290)
        );
        assert_eq!(
            longest_gap(times.clone(), at(401), at(402)),
            Duration::from_millis(5)
        );
        // No answer after the window: the gap runs to its end.
        assert_eq!(
            longest_gap(times, at(405), at(500)),
            Duration::from_millis(95)
        );
    }

    #[test]
    fn a_key_may_hold_its_last_acknowledged_value_or_an_unacknowledged_one() {
        let record = KeyRecord {
            acknowledged: Some(b"b".to_vec()),
            unacknowledged: vec![b"a".to_vec(), b"c".to_vec()],
        };
        assert!(record.allows(Some(b"b")));
        assert!(record.allows(Some(b"a")));
        assert!(record.allows(Some(b"c")));
        assert!(!record.allows(Some(b"d")));
        assert!(!record.allows(None));
        let never_acknowledged = KeyRecord {
            acknowledged: None,
            unacknowledged: vec![b"a".to_vec()],
        };
        assert!(never_acknowledged.allows(None));
        assert!(never_acknowledged.allows(Some(b"a")));
    }
}

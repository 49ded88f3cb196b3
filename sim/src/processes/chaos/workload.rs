//! The chaos harness's clients: reads, puts and compare-and-sets over the
//! etcd v3 API, each recorded with when it was called and when (and how)
//! it completed, for the linearizability checker.
//!
//! Keys are short-lived: in each second of the run the clients use a fresh
//! set of [`KEYS_PER_EPOCH`] keys, so every key's history stays small
//! enough to check exhaustively. Every value written is unique in the run
//! (the client's number and a counter), so a value read names its write.
//!
//! A put or compare-and-set that fails or times out (after
//! [`REQUEST_TIMEOUT`](crate::processes::local_cluster::workload::REQUEST_TIMEOUT)) is
//! indeterminate: it
//! may have taken effect, at any time after its call. A failed read has no
//! effect and is left out of the check.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_proto::etcd::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raft_proto::etcd::etcdserverpb::kv_client::KvClient;
use raft_proto::etcd::etcdserverpb::request_op::Request;
use raft_proto::etcd::etcdserverpb::response_op::Response;
use raft_proto::etcd::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::linearizability::{Key, KvInput, KvOutput, Operation};
use crate::processes::local_cluster::workload::channel;
use crate::simulator::random::{chance, uniform};

/// Every key the harness uses starts with this.
pub const KEY_PREFIX: &str = "chaos/";

/// How many keys the clients share in each second of the run.
pub const KEYS_PER_EPOCH: u64 = 32;

/// How long the clients stay on one set of keys.
const EPOCH: Duration = Duration::from_secs(1);

/// The pause after a failed request, so a client does not spin while its
/// member is down or the cluster has no leader.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(50);

/// The etcd key of register `key`.
pub fn etcd_key(key: Key) -> Vec<u8> {
    format!("{KEY_PREFIX}{key:010}").into_bytes()
}

/// The register of an etcd key, if it is one of the harness's.
pub fn register_of(etcd_key: &[u8]) -> Option<Key> {
    std::str::from_utf8(etcd_key)
        .ok()?
        .strip_prefix(KEY_PREFIX)?
        .parse()
        .ok()
}

/// The register value stored as `bytes`, or why it is not one.
pub fn parse_value(bytes: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            format!(
                "a value no client wrote: {:?}",
                String::from_utf8_lossy(bytes)
            )
        })
}

/// The value of the single key a range read, or why the answer is wrong.
pub fn value_of_range(response: &RangeResponse) -> Result<Option<u64>, String> {
    match response.kvs.as_slice() {
        [] => Ok(None),
        [kv] => parse_value(&kv.value).map(Some),
        more => Err(format!("a read of one key returned {} keys", more.len())),
    }
}

/// Nanoseconds since `origin`: the harness's clock for histories.
pub fn clock(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// How the clients read and whom they talk to.
#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    /// The members' URLs; client `c` starts on member `c % len` and moves
    /// to the next member after each failure.
    pub endpoints: Vec<String>,
    /// How many clients run at once.
    pub clients: usize,
    /// Seeds the clients' choices.
    pub seed: u64,
    /// Serve every read from the member's own store (etcd's `serializable`
    /// flag) instead of through ReadIndex: not linearizable, which is what
    /// the harness must be able to catch.
    pub serializable_reads: bool,
}

/// What one client did.
#[derive(Debug, Default)]
pub struct ClientRecord {
    /// Its operations, in call order.
    pub operations: Vec<Operation>,
    /// Answers that break the API (a value no client wrote, several keys
    /// for one); each is a violation.
    pub malformed: Vec<String>,
    /// The revision each answered write was given (its answer's header),
    /// by the value it wrote.
    pub revisions: BTreeMap<u64, i64>,
}

/// The running clients.
pub struct Workload {
    stopping: Arc<AtomicBool>,
    clients: Vec<JoinHandle<ClientRecord>>,
}

impl Workload {
    /// Starts the clients; times in their records are [`clock`]`(origin)`.
    pub fn start(options: &WorkloadOptions, origin: Instant) -> Workload {
        let stopping = Arc::new(AtomicBool::new(false));
        let channels: Vec<Channel> = options.endpoints.iter().map(|url| channel(url)).collect();
        let clients = (0..options.clients)
            .map(|index| {
                let client = Client {
                    index: index as u64,
                    channels: channels.clone(),
                    endpoint: index % channels.len(),
                    rng: ChaCha8Rng::seed_from_u64(
                        options.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    ),
                    serializable_reads: options.serializable_reads,
                    origin,
                    written: 0,
                    last_seen: HashMap::new(),
                    record: ClientRecord::default(),
                };
                tokio::spawn(client.run(stopping.clone()))
            })
            .collect();
        Workload { stopping, clients }
    }

    /// Stops the clients once their requests in flight have an outcome
    /// (or time out) and returns what they did.
    pub async fn stop(self) -> Vec<ClientRecord> {
        self.stopping.store(true, Ordering::Relaxed);
        let mut records = Vec::new();
        for client in self.clients {
            match client.await {
                Ok(record) => records.push(record),
                Err(error) => tracing::error!(%error, "a chaos client failed"),
            }
        }
        records
    }
}

struct Client {
    index: u64,
    channels: Vec<Channel>,
    endpoint: usize,
    rng: ChaCha8Rng,
    serializable_reads: bool,
    origin: Instant,
    /// Writes issued, for unique values.
    written: u64,
    /// The last value this client saw in each key (the expected value of
    /// its next compare-and-set there).
    last_seen: HashMap<Key, Option<u64>>,
    record: ClientRecord,
}

impl Client {
    async fn run(mut self, stopping: Arc<AtomicBool>) -> ClientRecord {
        while !stopping.load(Ordering::Relaxed) {
            let epoch = self.origin.elapsed().as_nanos() / EPOCH.as_nanos();
            let key = u64::try_from(epoch).unwrap_or(u64::MAX / KEYS_PER_EPOCH) * KEYS_PER_EPOCH
                + uniform(&mut self.rng, 0, KEYS_PER_EPOCH);
            let succeeded = if chance(&mut self.rng, 0.4) {
                self.read(key).await
            } else if chance(&mut self.rng, 0.5) {
                self.put(key).await
            } else {
                self.compare_and_set(key).await
            };
            if !succeeded {
                self.endpoint = (self.endpoint + 1) % self.channels.len();
                tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
            }
        }
        self.record
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channels[self.endpoint].clone())
    }

    fn next_value(&mut self) -> u64 {
        self.written += 1;
        (self.index + 1) << 40 | self.written
    }

    fn push(&mut self, key: Key, input: KvInput, call_time: u64, output: Option<KvOutput>) {
        let completion = output.map(|output| (clock(self.origin), output));
        self.record.operations.push(Operation {
            client: self.index,
            key,
            input,
            call_time,
            completion,
        });
    }

    fn note_revision(&mut self, value: u64, header: Option<ResponseHeader>) {
        if let Some(header) = header {
            self.record.revisions.insert(value, header.revision);
        }
    }

    async fn read(&mut self, key: Key) -> bool {
        let call_time = clock(self.origin);
        let answer = self
            .kv()
            .range(RangeRequest {
                key: etcd_key(key),
                serializable: self.serializable_reads,
                ..RangeRequest::default()
            })
            .await;
        match answer {
            Ok(response) => match value_of_range(&response.into_inner()) {
                Ok(value) => {
                    self.push(key, KvInput::Get, call_time, Some(KvOutput::Get(value)));
                    self.last_seen.insert(key, value);
                    true
                }
                Err(reason) => {
                    self.record
                        .malformed
                        .push(format!("read of key {key}: {reason}"));
                    self.push(key, KvInput::Get, call_time, None);
                    false
                }
            },
            Err(status) => {
                tracing::debug!(client = self.index, code = ?status.code(), message = status.message(), "a read failed");
                self.push(key, KvInput::Get, call_time, None);
                false
            }
        }
    }

    async fn put(&mut self, key: Key) -> bool {
        let value = self.next_value();
        let call_time = clock(self.origin);
        let answer = self
            .kv()
            .put(PutRequest {
                key: etcd_key(key),
                value: value.to_string().into_bytes(),
                ..PutRequest::default()
            })
            .await;
        let input = KvInput::Put { value };
        match answer {
            Ok(response) => {
                self.note_revision(value, response.into_inner().header);
                self.push(key, input, call_time, Some(KvOutput::Put));
                self.last_seen.insert(key, Some(value));
                true
            }
            Err(status) => {
                tracing::debug!(client = self.index, code = ?status.code(), message = status.message(), "a put failed");
                self.push(key, input, call_time, None);
                false
            }
        }
    }

    async fn compare_and_set(&mut self, key: Key) -> bool {
        let expected = self.last_seen.get(&key).copied().flatten();
        let new = self.next_value();
        let compare = match expected {
            Some(value) => Compare {
                result: CompareResult::Equal.into(),
                target: CompareTarget::Value.into(),
                key: etcd_key(key),
                target_union: Some(TargetUnion::Value(value.to_string().into_bytes())),
                ..Compare::default()
            },
            // Version 0: the key does not exist.
            None => Compare {
                result: CompareResult::Equal.into(),
                target: CompareTarget::Version.into(),
                key: etcd_key(key),
                target_union: Some(TargetUnion::Version(0)),
                ..Compare::default()
            },
        };
        let call_time = clock(self.origin);
        let answer = self
            .kv()
            .txn(TxnRequest {
                compare: vec![compare],
                success: vec![RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: etcd_key(key),
                        value: new.to_string().into_bytes(),
                        ..PutRequest::default()
                    })),
                }],
                // On failure, learn the value for the next attempt.
                failure: vec![RequestOp {
                    request: Some(Request::RequestRange(RangeRequest {
                        key: etcd_key(key),
                        ..RangeRequest::default()
                    })),
                }],
            })
            .await;
        let input = KvInput::Cas { expected, new };
        match answer {
            Ok(response) => {
                let response = response.into_inner();
                self.push(
                    key,
                    input,
                    call_time,
                    Some(KvOutput::Cas {
                        succeeded: response.succeeded,
                    }),
                );
                if response.succeeded {
                    self.note_revision(new, response.header);
                    self.last_seen.insert(key, Some(new));
                } else if let Some(Response::ResponseRange(range)) = response
                    .responses
                    .first()
                    .and_then(|response| response.response.as_ref())
                {
                    match value_of_range(range) {
                        Ok(value) => {
                            self.last_seen.insert(key, value);
                        }
                        Err(reason) => self
                            .record
                            .malformed
                            .push(format!("compare-and-set of key {key}: {reason}")),
                    }
                }
                true
            }
            Err(status) => {
                tracing::debug!(client = self.index, code = ?status.code(), message = status.message(), "a compare-and-set failed");
                self.push(key, input, call_time, None);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_etcd_keys_map_both_ways() {
        assert_eq!(etcd_key(42), b"chaos/0000000042".to_vec());
        assert_eq!(register_of(b"chaos/0000000042"), Some(42));
        assert_eq!(register_of(b"other/0000000042"), None);
        assert_eq!(register_of(b"chaos/x"), None);
    }

    #[test]
    fn a_value_no_client_wrote_is_refused() {
        assert_eq!(parse_value(b"1099511627777"), Ok(1_099_511_627_777));
        assert!(parse_value(b"hello").unwrap_err().contains("hello"));
        assert!(parse_value(&[0xff]).is_err());
    }
}

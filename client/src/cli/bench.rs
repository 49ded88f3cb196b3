//! `raft_client bench`: a closed-loop load generator over the etcd API.
//! Each client sends one request, waits for its answer, and sends the next;
//! clients share `conns` HTTP/2 connections spread over the endpoints (see
//! [`UnaryChannel`] for why not tonic's client). Works against RustyRaft and
//! against etcd itself.

use raft::transport::tls::TlsConnect;

use crate::connect::endpoints::Endpoints;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use raft_proto::etcd::etcdserverpb::{PutRequest, PutResponse, RangeRequest, RangeResponse};
use tokio::sync::Mutex;

use crate::connect::unary_channel::{UnaryChannel, UnaryError};

const PUT: &str = "/etcdserverpb.KV/Put";
const RANGE: &str = "/etcdserverpb.KV/Range";

/// One of the load generator's connections: opened on first use, and
/// opened again after it fails (a member restarted, say).
struct Connection {
    endpoint: String,
    tls: Option<TlsConnect>,
    /// The open connection and its generation (how many were opened).
    current: Mutex<(u64, Option<UnaryChannel>)>,
}

impl Connection {
    fn new(endpoint: &str, tls: Option<TlsConnect>) -> Connection {
        Connection {
            endpoint: endpoint.to_string(),
            tls,
            current: Mutex::new((0, None)),
        }
    }

    /// The open connection, opening one if there is none.
    async fn get(&self) -> Result<(u64, UnaryChannel), UnaryError> {
        let mut current = self.current.lock().await;
        if let Some(channel) = &current.1 {
            return Ok((current.0, channel.clone()));
        }
        let channel = UnaryChannel::connect(&self.endpoint, self.tls.as_ref()).await?;
        current.0 += 1;
        current.1 = Some(channel.clone());
        Ok((current.0, channel))
    }

    /// Drops connection `generation` after it failed (unless another
    /// client already replaced it).
    async fn failed(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.0 == generation {
            current.1 = None;
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Endpoint URLs, and the TLS of the `https://` ones.
    pub endpoints: Endpoints,
    /// Concurrent clients.
    pub clients: usize,
    /// gRPC connections shared by the clients.
    pub connections: usize,
    /// Measured duration.
    pub duration: Duration,
    /// Value size of each put.
    pub value_size: usize,
    /// Reads instead of puts.
    pub read: bool,
    /// Reads are serializable (answered by the member asked, from its own
    /// store) rather than linearizable.
    pub serializable: bool,
    /// Distinct keys written per client.
    pub keys_per_client: usize,
    /// Each client writes (or reads) each of its keys once and stops: a
    /// load of `clients × keys_per_client` distinct keys. The run ends when
    /// every client has, or at `duration`, whichever comes first.
    pub once: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct BenchReport {
    /// Successful operations.
    pub operations: u64,
    /// The failures (each retried by the client's next request) by kind ([`error_kind`]), most frequent first.
    pub errors_by_kind: Vec<(String, u64)>,
    /// Measured time.
    pub elapsed: Duration,
    /// Latency of the successful operations, in microseconds.
    pub latency: Histogram<u64>,
}

impl BenchReport {
    /// The last line the command prints.
    pub fn summary_line(&self) -> String {
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "ops={} ops_per_s={:.0} p50_us={} p99_us={} p999_us={}",
            self.operations,
            self.operations as f64 / seconds,
            self.latency.value_at_quantile(0.50),
            self.latency.value_at_quantile(0.99),
            self.latency.value_at_quantile(0.999),
        )
    }

    /// Failed operations, of every kind.
    pub fn errors(&self) -> u64 {
        self.errors_by_kind.iter().map(|(_, count)| count).sum()
    }

    /// One `error count=N kind=...` line per kind of failure.
    pub fn error_lines(&self) -> Vec<String> {
        self.errors_by_kind
            .iter()
            .map(|(kind, count)| format!("error count={count} kind={kind}"))
            .collect()
    }
}

/// Longest error text kept as a kind.
const ERROR_KIND_CHARS: usize = 120;

/// What kind of failure `error` is: its text with every run of digits
/// replaced by `N` (so that addresses, ids and terms do not split one kind
/// into many), cut to [`ERROR_KIND_CHARS`].
pub fn error_kind(error: &UnaryError) -> String {
    let mut kind = String::new();
    let mut in_digits = false;
    for character in error.to_string().chars() {
        if character.is_ascii_digit() {
            if !in_digits {
                kind.push('N');
            }
            in_digits = true;
        } else {
            kind.push(if character.is_control() {
                ' '
            } else {
                character
            });
            in_digits = false;
        }
        if kind.chars().count() >= ERROR_KIND_CHARS {
            break;
        }
    }
    kind
}

/// The failures a client saw, by kind.
type ErrorCounts = BTreeMap<String, u64>;

/// Runs the load and returns the figures.
pub async fn run(options: BenchOptions) -> BenchReport {
    let connections: Vec<Arc<Connection>> = (0..options.connections.max(1))
        .map(|connection| {
            let urls = &options.endpoints.urls;
            let endpoint = &urls[connection % urls.len()];
            Arc::new(Connection::new(endpoint, options.endpoints.tls.clone()))
        })
        .collect();
    let histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let shared = Arc::new(Mutex::new((histogram, 0u64, ErrorCounts::new())));
    let value = vec![b'v'; options.value_size];
    let start = Instant::now();
    let deadline = start + options.duration;
    let mut tasks = Vec::new();
    for client in 0..options.clients.max(1) {
        let connection = connections[client % connections.len()].clone();
        let shared = shared.clone();
        let value = value.clone();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let mut operations = 0u64;
            let mut errors = ErrorCounts::new();
            let keys = options.keys_per_client.max(1);
            let mut sequence = 0usize;
            let mut channel: Option<(u64, UnaryChannel)> = None;
            let mut put = PutRequest {
                value,
                ..Default::default()
            };
            while Instant::now() < deadline && !(options.once && sequence >= keys) {
                let key = format!("bench/{client}/{}", sequence % keys).into_bytes();
                let began = Instant::now();
                let outcome: Result<(), UnaryError> = async {
                    let (generation, open) = match channel.take() {
                        Some(open) => open,
                        None => connection.get().await?,
                    };
                    let answer = if options.read {
                        let request = RangeRequest {
                            key,
                            serializable: options.serializable,
                            ..Default::default()
                        };
                        open.call::<_, RangeResponse>(RANGE, &request)
                            .await
                            .map(drop)
                    } else {
                        put.key = key;
                        open.call::<_, PutResponse>(PUT, &put).await.map(drop)
                    };
                    // A broken connection is replaced; a gRPC error keeps it.
                    if let Err(UnaryError::Http2(_)) = &answer {
                        connection.failed(generation).await;
                    } else {
                        channel = Some((generation, open));
                    }
                    answer
                }
                .await;
                match outcome {
                    Ok(()) => {
                        sequence += 1;
                        let micros = began.elapsed().as_micros() as u64;
                        let _ = local.record(micros.max(1));
                        operations += 1;
                    }
                    Err(error) => {
                        *errors.entry(error_kind(&error)).or_default() += 1;
                        tracing::debug!(%error, "benchmark request failed");
                        // Do not spin on a cluster without a leader.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            let mut totals = shared.lock().await;
            let _ = totals.0.add(&local);
            totals.1 += operations;
            for (kind, count) in errors {
                *totals.2.entry(kind).or_default() += count;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed();
    let totals = Arc::try_unwrap(shared)
        .map(Mutex::into_inner)
        .unwrap_or_else(|_| unreachable!("every client task has finished"));
    let mut errors_by_kind: Vec<(String, u64)> = totals.2.into_iter().collect();
    errors_by_kind.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    BenchReport {
        operations: totals.1,
        errors_by_kind,
        elapsed,
        latency: totals.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_kind_hides_numbers_and_is_bounded() {
        let refused = UnaryError::Status {
            code: 14,
            message: "no leader (term 12, member 3)".to_string(),
        };
        assert_eq!(
            error_kind(&refused),
            "gRPC status N: no leader (term N, member N)"
        );
        let long = UnaryError::Status {
            code: 2,
            message: "x\n".repeat(200),
        };
        let kind = error_kind(&long);
        assert_eq!(kind.chars().count(), ERROR_KIND_CHARS);
        assert!(!kind.contains('\n'));
    }
}

//! The watching side of `raft_client watch-bench`: bidirectional Watch
//! streams spread over the endpoints, many watchers on each, and a task per
//! stream that times every event it receives.
//!
//! The put side writes, as the first eight bytes of each value, when it
//! sent the put (nanoseconds since an [`Instant`] both sides share, the
//! run's epoch), so a stream task needs nothing but the event to know its
//! put-to-event latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use raft_proto::etcd::etcdserverpb::watch_client::WatchClient;
use raft_proto::etcd::etcdserverpb::watch_request::RequestUnion;
use raft_proto::etcd::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use crate::connect::endpoints::Endpoints;
use crate::kv::prefix_end;

/// How long a stream may take to answer its opening (the server's response
/// headers, which etcd sends with the first `created`).
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 receive windows of the benchmark's connections. h2's default,
/// 64 KiB for a connection and each stream, would have the server wait for
/// this client's window updates at a million events a second (and the
/// latency would be the client's); etcd's Go clients grow theirs to
/// megabytes. h2 also sizes from the connection window its budget for
/// small DATA frames received and not yet read: with 64 KiB, a client busy
/// reading events while put answers wait is sent away (GOAWAY
/// `too_many_data_frames`, from h2 itself).
const STREAM_WINDOW_BYTES: u32 = 8 << 20;
/// See [`STREAM_WINDOW_BYTES`].
const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

/// The largest latency the histograms hold, in microseconds (ten minutes).
const LATENCY_US_MAX: u64 = 600_000_000;

/// A latency histogram in microseconds, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds")
}

/// Nanoseconds from `epoch` to `now`, as the values carry them.
pub fn nanoseconds_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// Where and how to watch.
#[derive(Clone, Debug)]
pub struct WatchPlan {
    /// The endpoints; stream `s` goes to endpoint `s % endpoints`.
    pub endpoints: Endpoints,
    /// Watchers in all, spread round-robin over the streams.
    pub watchers: usize,
    /// Bidirectional Watch streams.
    pub streams: usize,
    /// HTTP/2 connections the streams share (each to one endpoint).
    pub connections: usize,
    /// Every watcher watches the keys that start with this.
    pub prefix: Vec<u8>,
    /// How long every watcher may take to be created.
    pub created_timeout: Duration,
}

/// What a stream task tells the waiting side while watchers are created.
enum StreamNote {
    /// One more watcher is created.
    Created,
    /// The stream failed or a watcher was cancelled: why.
    Failed(String),
}

/// What one stream saw, handed back when it stops.
pub struct StreamTally {
    /// Put-to-event latency of every event, in microseconds.
    pub latency: Histogram<u64>,
    /// Why the stream failed after its watchers were created, if it did.
    pub failure: Option<String>,
}

/// The open streams and what they share with their tasks.
pub struct WatcherStreams {
    /// One task per stream; each returns its tally when told to stop.
    tasks: Vec<JoinHandle<StreamTally>>,
    /// Tells the tasks to stop.
    stop: watch::Sender<bool>,
    /// Events received over all streams, counted as they arrive so that
    /// the put side can tell when every expected event is in.
    pub events: Arc<AtomicU64>,
    /// When the latest event arrived, nanoseconds since the epoch: the end
    /// of the measured window once every expected event is in.
    pub last_event_nanoseconds: Arc<AtomicU64>,
}

/// What every stream task shares.
#[derive(Clone)]
struct Shared {
    /// The run's epoch, the origin of the send times in the values.
    epoch: Instant,
    /// See [`WatcherStreams::events`].
    events: Arc<AtomicU64>,
    /// See [`WatcherStreams::last_event_nanoseconds`].
    last_event_nanoseconds: Arc<AtomicU64>,
    /// Created watchers and failures, to the side waiting for them.
    notes: mpsc::UnboundedSender<StreamNote>,
}

impl WatcherStreams {
    /// Opens the streams, creates every watcher and waits until each has
    /// its `created` answer. Fails, saying which stream and why, if a
    /// stream cannot be opened (a server without Watch answers
    /// `Unimplemented`), a watcher is cancelled, or not every watcher is
    /// created within [`WatchPlan::created_timeout`].
    pub async fn open(plan: &WatchPlan, epoch: Instant) -> Result<WatcherStreams, String> {
        let (notes, mut noted) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let shared = Shared {
            epoch,
            events: Arc::new(AtomicU64::new(0)),
            last_event_nanoseconds: Arc::new(AtomicU64::new(0)),
            notes,
        };
        let urls = &plan.endpoints.urls;
        let connections: Vec<(String, Channel)> = (0..plan.connections.max(1))
            .map(|connection| {
                let url = urls[connection % urls.len()].clone();
                let channel = wide_channel(&plan.endpoints, &url);
                (url, channel)
            })
            .collect();
        let streams = plan.streams.clamp(1, plan.watchers.max(1));
        let mut tasks = Vec::with_capacity(streams);
        for stream in 0..streams {
            // Stream s on endpoint s % E, whatever the connection count.
            let (url, channel) = &connections[stream % connections.len()];
            let watchers = (plan.watchers + streams - 1 - stream) / streams;
            let responses = open_stream(channel.clone(), &plan.prefix, watchers)
                .await
                .map_err(|reason| format!("watch stream {stream} to {url}: {reason}"))?;
            tasks.push(tokio::spawn(follow(
                responses,
                shared.clone(),
                stopped.clone(),
            )));
        }
        let streams = WatcherStreams {
            tasks,
            stop,
            events: shared.events.clone(),
            last_event_nanoseconds: shared.last_event_nanoseconds.clone(),
        };
        drop(shared);
        let mut created = 0;
        let deadline = tokio::time::Instant::now() + plan.created_timeout;
        while created < plan.watchers {
            match tokio::time::timeout_at(deadline, noted.recv()).await {
                Ok(Some(StreamNote::Created)) => created += 1,
                Ok(Some(StreamNote::Failed(reason))) => return Err(reason),
                Ok(None) => return Err("every watch stream ended".to_string()),
                Err(_) => {
                    return Err(format!(
                        "{created} of {} watchers were created within {:?}",
                        plan.watchers, plan.created_timeout
                    ))
                }
            }
        }
        Ok(streams)
    }

    /// Events received so far.
    pub fn events_received(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Stops every stream task and merges what they measured.
    pub async fn close(self) -> StreamTally {
        let _ = self.stop.send(true);
        let mut total = StreamTally {
            latency: latency_histogram(),
            failure: None,
        };
        for task in self.tasks {
            match task.await {
                Ok(tally) => {
                    let _ = total.latency.add(&tally.latency);
                    total.failure = total.failure.or(tally.failure);
                }
                Err(error) => total.failure = Some(format!("a stream task failed: {error}")),
            }
        }
        total
    }
}

/// A lazily connected channel to `url` with wide receive windows (see
/// [`STREAM_WINDOW_BYTES`]), over TLS for an `https://` one.
pub fn wide_channel(endpoints: &Endpoints, url: &str) -> Channel {
    let endpoint = Endpoint::from_shared(url.to_string())
        .expect("endpoints are validated when parsed")
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
    match &endpoints.tls {
        Some(tls) if url.starts_with("https://") => tls.channel_lazy(endpoint),
        _ => endpoint.connect_lazy(),
    }
}

/// Opens one Watch stream on `channel` with `watchers` create requests on
/// `prefix` queued ahead (etcd answers the stream's headers only with its
/// first response, so they must be sent before the opening is awaited).
/// The request side stays open for as long as the responses are read.
async fn open_stream(
    channel: Channel,
    prefix: &[u8],
    watchers: usize,
) -> Result<(Streaming<WatchResponse>, RequestSide), String> {
    let (requests, queued) = mpsc::unbounded_channel();
    for _ in 0..watchers {
        let create = WatchCreateRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            ..Default::default()
        };
        let request = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        };
        requests
            .send(request)
            .expect("the receiver is held just below");
    }
    let mut client = WatchClient::new(channel).max_decoding_message_size(usize::MAX);
    let opening = client.watch(UnboundedReceiverStream::new(queued));
    match tokio::time::timeout(OPEN_TIMEOUT, opening).await {
        Ok(Ok(response)) => Ok((
            response.into_inner(),
            RequestSide {
                _requests: requests,
            },
        )),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer within {OPEN_TIMEOUT:?}")),
    }
}

/// The request side of a stream, held so that the stream stays open (a
/// client that ends its requests may see its watchers end too).
struct RequestSide {
    /// Held, never used: dropping it would end the requests.
    _requests: mpsc::UnboundedSender<WatchRequest>,
}

/// Reads one stream until told to stop, timing every event.
async fn follow(
    (mut responses, _request_side): (Streaming<WatchResponse>, RequestSide),
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> StreamTally {
    let mut tally = StreamTally {
        latency: latency_histogram(),
        failure: None,
    };
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            message = responses.message() => message,
        };
        let failure = match message {
            Ok(Some(response)) => match take(&shared, &mut tally, response) {
                Ok(()) => continue,
                Err(reason) => reason,
            },
            Ok(None) => "the server ended the stream".to_string(),
            Err(status) => format!("{:?}: {}", status.code(), status.message()),
        };
        let _ = shared.notes.send(StreamNote::Failed(failure.clone()));
        tally.failure = Some(failure);
        break;
    }
    tally
}

/// Takes in one response: a created watcher, a cancelled one (a failure)
/// or events, each timed from the send time its value carries.
fn take(shared: &Shared, tally: &mut StreamTally, response: WatchResponse) -> Result<(), String> {
    if response.canceled {
        return Err(format!(
            "watcher {} was cancelled: {}",
            response.watch_id, response.cancel_reason
        ));
    }
    if response.created {
        let _ = shared.notes.send(StreamNote::Created);
    }
    if response.events.is_empty() {
        return Ok(());
    }
    let now = nanoseconds_since(shared.epoch, Instant::now());
    for event in &response.events {
        let sent = event
            .kv
            .as_ref()
            .and_then(|pair| pair.value.get(..8))
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_be_bytes);
        if let Some(sent) = sent {
            let microseconds = now.saturating_sub(sent) / 1_000;
            let _ = tally.latency.record(microseconds.clamp(1, LATENCY_US_MAX));
        }
    }
    shared
        .events
        .fetch_add(response.events.len() as u64, Ordering::Relaxed);
    shared
        .last_event_nanoseconds
        .fetch_max(now, Ordering::Relaxed);
    Ok(())
}

//! One `Watch` stream: its watchers, the requests that create and cancel
//! them, and the loop that sends each its events.
//!
//! The loop wakes when the member's `WatchHub` says a key it watches
//! changed, when a request comes, or when a progress interval passes. Each
//! time it takes the hub's latest view of the store (its revision and a
//! copy of its history) and sends every watcher what it is owed, reading
//! the events from that view. Sends wait for the client (gRPC flow control and a
//! small channel): a slow client holds up only its own stream, never
//! apply or another stream, and nothing is buffered for it beyond a few
//! responses, because a watcher that is behind simply reads further back
//! in the history next time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_proto::etcd::etcdserverpb::watch_request::RequestUnion;
use raft_proto::etcd::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::{mpsc, Notify};
use tokio::time::MissedTickBehavior;
use tonic::{Status, Streaming};

use super::hub::{StreamId, WatchHub};
use super::response::{self, fragments, NO_WATCHER};
use super::watcher::{CreateRefusal, Owed, StoreView, Watcher};
use crate::server::context::Context;

/// The most watchers one stream holds.
pub const MAX_WATCHERS_PER_STREAM: usize = 100_000;
/// The most bytes of keys (and range ends) one stream's watchers hold.
pub const MAX_KEY_BYTES_PER_STREAM: usize = 64 << 20;
/// Requests read ahead of the loop.
const REQUESTS_IN_FLIGHT: usize = 64;

/// How a member's watch streams behave.
#[derive(Clone, Debug)]
pub struct WatchSettings {
    /// How often an idle watcher that asked for progress notifications gets
    /// one (etcd's `--experimental-watch-progress-notify-interval`).
    pub progress_notify_interval: Duration,
    /// A response larger than this is split, for watchers that allow it.
    pub max_response_bytes: usize,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            progress_notify_interval: Duration::from_secs(600),
            max_response_bytes: crate::kv::Limits::default().max_request_bytes,
        }
    }
}

/// The client went away: the stream ends.
struct Closed;

/// Where responses go.
type Responses = mpsc::Sender<Result<WatchResponse, Status>>;

/// Serves one stream until the client closes it or goes away, or the node
/// stops.
pub async fn serve(
    context: Arc<Context>,
    hub: Arc<WatchHub>,
    settings: WatchSettings,
    requests: Streaming<WatchRequest>,
    responses: Responses,
) {
    let (command_sender, commands) = mpsc::channel(REQUESTS_IN_FLIGHT);
    let reader = tokio::spawn(read_requests(requests, command_sender));
    let (id, woken) = hub.add_stream();
    let stream = WatchStream {
        context,
        hub: hub.clone(),
        id,
        settings,
        watchers: BTreeMap::new(),
        key_bytes: 0,
        next_id: 0,
        covered: 0,
        responses,
    };
    stream.run(commands, woken).await;
    hub.remove_stream(id);
    reader.abort();
}

/// Passes the client's requests on, until it closes its side or fails.
async fn read_requests(
    mut requests: Streaming<WatchRequest>,
    commands: mpsc::Sender<WatchRequest>,
) {
    while let Ok(Some(request)) = requests.message().await {
        if commands.send(request).await.is_err() {
            return;
        }
    }
}

struct WatchStream {
    context: Arc<Context>,
    hub: Arc<WatchHub>,
    /// This stream's number in the hub.
    id: StreamId,
    settings: WatchSettings,
    watchers: BTreeMap<i64, Watcher>,
    /// Bytes of the watchers' keys.
    key_bytes: usize,
    /// The next id to try for a watcher whose client chose none.
    next_id: i64,
    /// Every watcher has been told everything up to this revision.
    covered: i64,
    responses: Responses,
}

impl WatchStream {
    async fn run(mut self, mut commands: mpsc::Receiver<WatchRequest>, woken: Arc<Notify>) {
        let interval = self.settings.progress_notify_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let client = self.responses.clone();
        loop {
            if self.deliver().await.is_err() {
                return;
            }
            let outcome = tokio::select! {
                command = commands.recv() => match command {
                    Some(request) => self.handle(request).await,
                    // The client closed its side: etcd ends the stream.
                    None => Err(Closed),
                },
                () = woken.notified() => Ok(()),
                _ = ticker.tick() => self.notify_progress().await,
                () = client.closed() => Err(Closed),
            };
            if outcome.is_err() {
                return;
            }
        }
    }

    /// The store as the hub last published it.
    fn view(&self) -> Arc<StoreView> {
        self.hub.view()
    }

    /// The store's revision as the hub last published it.
    fn current_revision(&self) -> i64 {
        self.hub.view().revision
    }

    async fn send(&self, response: WatchResponse) -> Result<(), Closed> {
        self.responses.send(Ok(response)).await.map_err(|_| Closed)
    }

    /// Sends every watcher what it is owed from the store now.
    async fn deliver(&mut self) -> Result<(), Closed> {
        let view = self.view();
        let fields = self.context.header();
        let mut compacted = Vec::new();
        for watcher in self.watchers.values_mut() {
            loop {
                match watcher.take_owed(&view) {
                    Owed::Nothing => break,
                    Owed::Compacted(revision) => {
                        // As etcd: no header revision, no reason (clients
                        // name the compaction themselves).
                        let notice = WatchResponse {
                            header: response::header(fields, 0),
                            watch_id: watcher.id,
                            compact_revision: revision,
                            canceled: true,
                            ..WatchResponse::default()
                        };
                        self.responses.send(Ok(notice)).await.map_err(|_| Closed)?;
                        compacted.push(watcher.id);
                        break;
                    }
                    Owed::Events { revision, events } => {
                        if events.is_empty() {
                            continue;
                        }
                        watcher.sent_since_tick = true;
                        let whole = response::events(fields, watcher.id, revision, events);
                        let parts = if watcher.fragment {
                            fragments(whole, self.settings.max_response_bytes)
                        } else {
                            vec![whole]
                        };
                        for part in parts {
                            self.responses.send(Ok(part)).await.map_err(|_| Closed)?;
                        }
                    }
                }
            }
        }
        for id in compacted {
            self.remove(id);
        }
        self.covered = view.revision;
        Ok(())
    }

    async fn handle(&mut self, request: WatchRequest) -> Result<(), Closed> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(&create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                // Cancelling a watcher the stream does not have is ignored.
                if self.remove(cancel.watch_id).is_some() {
                    let revision = self.current_revision();
                    self.send(WatchResponse {
                        header: response::header(self.context.header(), revision),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..WatchResponse::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Only a revision every watcher has been told everything
                // up to: a client may take it as "nothing missed before".
                self.deliver().await?;
                self.send(WatchResponse {
                    header: response::header(self.context.header(), self.covered),
                    watch_id: NO_WATCHER,
                    ..WatchResponse::default()
                })
                .await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, request: &WatchCreateRequest) -> Result<(), Closed> {
        let revision = self.current_revision();
        let fields = self.context.header();
        let created = self.add(request, revision);
        let (watch_id, cancel_reason) = match &created {
            Ok(id) => (*id, None),
            Err(refusal) => (NO_WATCHER, Some(refusal.to_string())),
        };
        self.send(WatchResponse {
            header: response::header(fields, revision),
            watch_id,
            created: true,
            canceled: cancel_reason.is_some(),
            cancel_reason: cancel_reason.unwrap_or_default(),
            ..WatchResponse::default()
        })
        .await
    }

    /// Adds the watcher `request` asks for, returning its id.
    fn add(&mut self, request: &WatchCreateRequest, revision: i64) -> Result<i64, CreateRefusal> {
        let id = if request.watch_id != 0 {
            request.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id = self.next_id.saturating_add(1);
            }
            self.next_id
        };
        let watcher = Watcher::new(id, request, revision)?;
        if self.watchers.contains_key(&id) {
            return Err(CreateRefusal::DuplicateId);
        }
        if self.watchers.len() >= MAX_WATCHERS_PER_STREAM {
            return Err(CreateRefusal::TooMany(format!(
                "at most {MAX_WATCHERS_PER_STREAM}"
            )));
        }
        let key_bytes = self.key_bytes.saturating_add(watcher.key_bytes);
        if key_bytes > MAX_KEY_BYTES_PER_STREAM {
            return Err(CreateRefusal::TooMany(format!(
                "their keys would take {key_bytes} bytes, at most {MAX_KEY_BYTES_PER_STREAM}"
            )));
        }
        if request.watch_id == 0 {
            self.next_id = self.next_id.saturating_add(1);
        }
        self.key_bytes = key_bytes;
        self.hub.watch(self.id, watcher.range());
        self.watchers.insert(id, watcher);
        Ok(id)
    }

    fn remove(&mut self, id: i64) -> Option<Watcher> {
        let watcher = self.watchers.remove(&id)?;
        self.key_bytes = self.key_bytes.saturating_sub(watcher.key_bytes);
        self.hub.unwatch(self.id, watcher.range());
        Some(watcher)
    }

    /// Tells each idle watcher that asked for it how far it has been told.
    async fn notify_progress(&mut self) -> Result<(), Closed> {
        let fields = self.context.header();
        let covered = self.covered;
        for watcher in self.watchers.values_mut() {
            let idle = !std::mem::take(&mut watcher.sent_since_tick);
            if watcher.progress_notify && idle && watcher.has_seen(covered) {
                let notice = response::events(fields, watcher.id, covered, Vec::new());
                self.responses.send(Ok(notice)).await.map_err(|_| Closed)?;
            }
        }
        Ok(())
    }
}

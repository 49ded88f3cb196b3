//! The etcd `Watch` service: change feeds from the member's own applied
//! state.
//!
//! Every member serves watches from what it has applied, as etcd's do, so
//! followers take their share of watchers. The member's hub (`hub`) follows
//! what it applies and wakes only the streams whose keys changed. A stream ([`stream`]) holds any
//! number of watchers ([`watcher`]); each is told the events of its keys
//! in revision order, each once, every event of one revision in the same
//! response (unless the watcher allowed [`response::fragments`]), with no
//! gap from its start revision on: events are read from the store's
//! history ([`crate::kv::history`]), which is the same on every member, so
//! a client that reconnects anywhere with `start_revision` = last seen + 1
//! loses nothing and sees nothing twice. A watcher whose next revision
//! was compacted away is cancelled with `compact_revision` set, as in
//! etcd.
//!
//! Why no per-watcher event queues (etcd's "synced" and "unsynced"
//! watcher groups): the history is a persistent vector that a stream copies
//! in O(1), so a watcher that is behind (a slow client, or one starting in
//! the past) reads from the history exactly as one in step does. Nothing is
//! copied per watcher while it waits, so a stuck client costs no memory
//! beyond the history compaction would drop, and apply never waits on a
//! watcher.
//!
//! Called by the server (`crate::server`), which registers
//! [`WatchService`] with the client services.

pub(crate) mod hub;
pub mod response;
pub mod stream;
pub(crate) mod watcher;

use std::sync::Arc;

use raft_proto::etcd::etcdserverpb::watch_server::Watch;
use raft_proto::etcd::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use self::hub::WatchHub;
pub use self::stream::WatchSettings;
use crate::server::context::Context;

/// Responses a stream may have queued for its client before it waits.
const RESPONSES_IN_FLIGHT: usize = 16;

/// The `Watch` service of one member.
pub struct WatchService {
    context: Arc<Context>,
    hub: Arc<WatchHub>,
    settings: WatchSettings,
}

impl WatchService {
    /// The service serving watches from `context`'s node (its hub starts
    /// following the node now).
    pub fn new(context: Arc<Context>, settings: WatchSettings) -> WatchService {
        let hub = WatchHub::start(context.clone());
        WatchService {
            context,
            hub,
            settings,
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (sender, receiver) = mpsc::channel(RESPONSES_IN_FLIGHT);
        tokio::spawn(stream::serve(
            self.context.clone(),
            self.hub.clone(),
            self.settings.clone(),
            request.into_inner(),
            sender,
        ));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

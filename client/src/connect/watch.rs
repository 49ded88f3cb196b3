//! A watch that survives its member: one watcher, on one endpoint at a time;
//! when the stream breaks it reconnects (to the next endpoint) and resumes
//! from the revision after the last it was told, so that nothing is lost
//! or repeated.

use std::time::Duration;

use raft_proto::etcd::etcdserverpb::watch_client::WatchClient;
use raft_proto::etcd::etcdserverpb::watch_request::RequestUnion;
use raft_proto::etcd::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use raft_proto::etcd::mvccpb::Event;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::connect::endpoints::Endpoints;

/// The text etcd's clients give a watch cancelled by compaction.
pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchSpec {
    /// The key, or the first key of the range.
    pub key: Vec<u8>,
    /// The end of the range (etcd's convention; empty: the key alone).
    pub range_end: Vec<u8>,
    /// The first revision to report (0: from now on).
    pub start_revision: i64,
    /// Report each key's value before the change too.
    pub prev_kv: bool,
}

/// What the watch tells its caller.
#[derive(Debug)]
pub enum WatchUpdate<'a> {
    /// Events, in revision order, every event of a revision together.
    Events(&'a [Event]),
    /// The stream broke; the watch resumes on `endpoint` after a pause.
    Reconnecting {
        /// Where it goes next.
        endpoint: &'a str,
        /// Why the last stream ended.
        reason: String,
    },
}

/// Whether the caller wants more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// Keep watching.
    More,
    /// Stop: the watch returns `Ok`.
    Done,
}

/// How a stream ended.
enum Ended {
    /// The caller is done.
    Done,
    /// The watch cannot go on (compaction, a refused request).
    Fatal(Status),
    /// The stream broke; the watch may resume elsewhere.
    Broken(Status),
}

/// Watches `spec` over `endpoints`, telling `on_update` every event, until
/// it answers [`Wanted::Done`]. A broken stream is resumed on the next
/// endpoint from the revision after the last event (or progress) it saw.
/// Ends with an error when the history it needs was compacted
/// ([`COMPACTED`], `OutOfRange`) or the cluster refused the watch.
pub async fn watch_resuming(
    endpoints: &Endpoints,
    spec: WatchSpec,
    mut on_update: impl FnMut(WatchUpdate<'_>) -> Wanted,
) -> Result<(), Status> {
    let mut next_revision = spec.start_revision;
    let mut attempt = 0usize;
    loop {
        let endpoint = &endpoints.urls[attempt % endpoints.urls.len()];
        let spec = WatchSpec {
            start_revision: next_revision,
            ..spec.clone()
        };
        match one_stream(
            endpoints,
            endpoint,
            spec,
            &mut next_revision,
            &mut on_update,
        )
        .await
        {
            Ended::Done => return Ok(()),
            Ended::Fatal(status) => return Err(status),
            Ended::Broken(status) => {
                attempt += 1;
                let endpoint = &endpoints.urls[attempt % endpoints.urls.len()];
                let update = WatchUpdate::Reconnecting {
                    endpoint,
                    reason: status.message().to_string(),
                };
                if on_update(update) == Wanted::Done {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One stream to `endpoint`, moving `next_revision` past what it reports.
async fn one_stream(
    endpoints: &Endpoints,
    endpoint: &str,
    spec: WatchSpec,
    next_revision: &mut i64,
    on_update: &mut impl FnMut(WatchUpdate<'_>) -> Wanted,
) -> Ended {
    let (requests, outgoing) = mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: spec.key,
            range_end: spec.range_end,
            start_revision: spec.start_revision,
            prev_kv: spec.prev_kv,
            ..WatchCreateRequest::default()
        })),
    };
    // The sender stays open for as long as the stream: a client that
    // closes its side ends the watch.
    if requests.send(create).await.is_err() {
        return Ended::Broken(Status::internal("the request channel closed"));
    }
    let mut client =
        WatchClient::new(endpoints.channel(endpoint)).max_decoding_message_size(usize::MAX);
    let mut responses = match client.watch(ReceiverStream::new(outgoing)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ended::Broken(status),
    };
    let mut fragments: Vec<Event> = Vec::new();
    loop {
        let response = match responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Ended::Broken(Status::unavailable("the watch stream ended")),
            Err(status) => return Ended::Broken(status),
        };
        if let Some(ended) = refusal(&response) {
            return ended;
        }
        let revision = response.header.as_ref().map_or(0, |header| header.revision);
        if response.created {
            if *next_revision == 0 {
                *next_revision = revision.saturating_add(1);
            }
            continue;
        }
        fragments.extend(response.events);
        if response.fragment {
            continue;
        }
        let events = std::mem::take(&mut fragments);
        match events.last().and_then(|event| event.kv.as_ref()) {
            Some(last) => *next_revision = last.mod_revision.saturating_add(1),
            // A progress notification: nothing up to its revision is owed.
            None => *next_revision = (*next_revision).max(revision.saturating_add(1)),
        }
        if !events.is_empty() && on_update(WatchUpdate::Events(&events)) == Wanted::Done {
            drop(requests);
            return Ended::Done;
        }
    }
}

/// How a response that ends the watcher ends the watch, if it does.
fn refusal(response: &WatchResponse) -> Option<Ended> {
    if response.compact_revision != 0 {
        return Some(Ended::Fatal(Status::out_of_range(format!(
            "{COMPACTED} (compacted at revision {})",
            response.compact_revision
        ))));
    }
    if response.canceled {
        let reason = if response.cancel_reason.is_empty() {
            "the watch was cancelled by the server".to_string()
        } else {
            response.cancel_reason.clone()
        };
        return Some(Ended::Fatal(Status::failed_precondition(reason)));
    }
    None
}

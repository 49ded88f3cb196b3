//! `Watch` end to end: the stream's protocol as etcd answers it, watchers
//! on followers, a watch that resumes on another member when its member is
//! killed, and `etcdctl watch` (skipped without etcdctl, unless tools are
//! required).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use raft_client::connect::endpoints::{channel, Endpoints};
use raft_client::connect::watch::{watch_resuming, Wanted, WatchSpec, WatchUpdate};
use raft_client::kv::prefix_end;
use raft_proto::etcd::etcdserverpb::watch_client::WatchClient;
use raft_proto::etcd::etcdserverpb::watch_create_request::FilterType;
use raft_proto::etcd::etcdserverpb::watch_request::RequestUnion;
use raft_proto::etcd::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, RangeRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use raft_proto::etcd::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::etcdctl::{etcdctl, find_tool};
use crate::support::cluster::Cluster;
use crate::support::eventually;
use crate::support::process::{read_log, ChildGuard};
use crate::support::requests::{get_request, put, revision_of};

/// One watch stream of a test: its requests and its responses.
struct Stream {
    requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl Stream {
    async fn open(url: &str) -> Stream {
        let (requests, outgoing) = mpsc::channel(16);
        let responses = WatchClient::new(channel(url))
            .watch(ReceiverStream::new(outgoing))
            .await
            .expect("a watch stream")
            .into_inner();
        Stream {
            requests,
            responses,
        }
    }

    async fn send(&self, request: RequestUnion) {
        self.requests
            .send(WatchRequest {
                request_union: Some(request),
            })
            .await
            .expect("the stream takes requests");
    }

    async fn create(&self, request: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(request)).await;
    }

    /// The next response, within the harness's patience.
    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(crate::support::PATIENCE, self.responses.message())
            .await
            .expect("a response in time")
            .expect("the stream is healthy")
            .expect("the stream is open")
    }
}

fn prefix(key: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end: prefix_end(key.as_bytes()),
        ..WatchCreateRequest::default()
    }
}

/// `(type, key, value)` of each event.
fn events(response: &WatchResponse) -> Vec<(&'static str, String, String)> {
    response
        .events
        .iter()
        .map(|event| {
            let kv = event.kv.as_ref().expect("an event's key");
            let kind = match EventType::try_from(event.r#type) {
                Ok(EventType::Delete) => "DELETE",
                _ => "PUT",
            };
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            (kind, text(&kv.key), text(&kv.value))
        })
        .collect()
}

fn owned(events: &[(&'static str, &str, &str)]) -> Vec<(&'static str, String, String)> {
    events
        .iter()
        .map(|(kind, key, value)| (*kind, key.to_string(), value.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_stream_on_a_follower_answers_creates_cancels_and_progress_as_etcd() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);
    let mut kv = cluster.clients(leader).kv;
    let before = revision_of(&put(&mut kv, "w/before", "0").await.header);
    eventually("the follower to apply the first put", || {
        let mut follower_kv = cluster.clients(follower).kv;
        async move {
            let local = RangeRequest {
                serializable: true,
                ..get_request("w/before")
            };
            let read = follower_kv.range(local).await.map_err(|s| s.to_string())?;
            let revision = revision_of(&read.into_inner().header);
            (revision >= before)
                .then_some(())
                .ok_or(format!("at {revision}"))
        }
    })
    .await;
    let mut stream = Stream::open(&cluster.url(follower)).await;

    // Created: ids from 0, the header at the current revision.
    stream.create(prefix("w/")).await;
    let created = stream.next().await;
    assert!(created.created && !created.canceled, "{created:?}");
    assert_eq!(created.watch_id, 0);
    assert_eq!(revision_of(&created.header), before);
    // A client-chosen id, with filters and prev_kv.
    stream
        .create(WatchCreateRequest {
            watch_id: 7,
            filters: vec![FilterType::Noput as i32],
            prev_kv: true,
            ..prefix("w/")
        })
        .await;
    assert_eq!(stream.next().await.watch_id, 7);
    // Refusals: the same id again, a backwards range.
    stream
        .create(WatchCreateRequest {
            watch_id: 7,
            ..prefix("w/")
        })
        .await;
    let duplicate = stream.next().await;
    assert_eq!(
        (duplicate.watch_id, duplicate.created, duplicate.canceled),
        (-1, true, true)
    );
    assert_eq!(
        duplicate.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    stream
        .create(WatchCreateRequest {
            key: b"b".to_vec(),
            range_end: b"a".to_vec(),
            ..WatchCreateRequest::default()
        })
        .await;
    assert_eq!(
        stream.next().await.cancel_reason,
        "mvcc: watcher range is empty"
    );

    // Writes to the leader reach the follower's watchers: a put to watcher
    // 0 alone (7 filters puts), a delete to both, 7 with the value before.
    let written = revision_of(&put(&mut kv, "w/a", "1").await.header);
    let response = stream.next().await;
    assert_eq!(response.watch_id, 0);
    assert_eq!(events(&response), owned(&[("PUT", "w/a", "1")]));
    assert_eq!(revision_of(&response.header), written);
    kv.delete_range(DeleteRangeRequest {
        key: b"w/a".to_vec(),
        ..DeleteRangeRequest::default()
    })
    .await
    .expect("a delete");
    let mut by_watcher = BTreeMap::new();
    for _ in 0..2 {
        let response = stream.next().await;
        by_watcher.insert(response.watch_id, response);
    }
    assert_eq!(events(&by_watcher[&0]), owned(&[("DELETE", "w/a", "")]));
    assert_eq!(by_watcher[&0].events[0].prev_kv, None);
    let prev = by_watcher[&7].events[0].prev_kv.as_ref().expect("prev_kv");
    assert_eq!(prev.value, b"1");

    // A progress request: no watcher (-1), the revision every watcher has
    // been told up to.
    stream
        .send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    let progress = stream.next().await;
    assert_eq!(progress.watch_id, -1);
    assert_eq!(revision_of(&progress.header), written + 1);
    assert!(progress.events.is_empty());

    // Cancel: answered once; a cancelled watcher hears nothing more.
    stream
        .send(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 0,
        }))
        .await;
    let cancelled = stream.next().await;
    assert_eq!((cancelled.watch_id, cancelled.canceled), (0, true));
    put(&mut kv, "w/b", "2").await;
    kv.delete_range(DeleteRangeRequest {
        key: b"w/b".to_vec(),
        ..DeleteRangeRequest::default()
    })
    .await
    .expect("a delete");
    let next = stream.next().await;
    assert_eq!(next.watch_id, 7, "only watcher 7 is left: {next:?}");
    assert_eq!(events(&next), owned(&[("DELETE", "w/b", "")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_past_revision_replays_history_and_one_compacted_away_is_cancelled() {
    let cluster = Cluster::start(1).await;
    cluster.wait_for_leader().await;
    let mut kv = cluster.clients(1).kv;
    let first = revision_of(&put(&mut kv, "h/a", "1").await.header);
    put(&mut kv, "h/a", "2").await;
    put(&mut kv, "h/b", "3").await;
    let mut stream = Stream::open(&cluster.url(1)).await;
    stream
        .create(WatchCreateRequest {
            start_revision: first + 1,
            prev_kv: true,
            ..prefix("h/")
        })
        .await;
    assert!(stream.next().await.created);
    let replay = stream.next().await;
    assert_eq!(
        events(&replay),
        owned(&[("PUT", "h/a", "2"), ("PUT", "h/b", "3")])
    );
    assert_eq!(replay.events[0].prev_kv.as_ref().unwrap().value, b"1");

    kv.compact(CompactionRequest {
        revision: first + 1,
        physical: true,
    })
    .await
    .expect("a compaction");
    // Behind the compacted revision: created, then cancelled with it.
    stream
        .create(WatchCreateRequest {
            start_revision: first,
            ..prefix("h/")
        })
        .await;
    assert!(stream.next().await.created);
    let notice = stream.next().await;
    assert_eq!(
        (
            notice.canceled,
            notice.compact_revision,
            notice.events.len()
        ),
        (true, first + 1, 0)
    );
    assert_eq!(revision_of(&notice.header), 0, "etcd sets no revision");
    // At the compacted revision: its put is still told (etcd keeps it).
    stream
        .create(WatchCreateRequest {
            start_revision: first + 1,
            ..prefix("h/")
        })
        .await;
    assert!(stream.next().await.created);
    assert_eq!(
        events(&stream.next().await),
        owned(&[("PUT", "h/a", "2"), ("PUT", "h/b", "3")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_member_is_killed_resumes_on_another_with_nothing_lost_or_repeated() {
    const WRITES: usize = 300;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let victim = cluster.follower_of(leader);
    let endpoints = Endpoints::plain(vec![cluster.url(victim), cluster.url(leader)]);
    let seen: Arc<Mutex<Vec<(String, String, i64)>>> = Arc::default();
    let reconnects = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (seen, reconnects) = (seen.clone(), reconnects.clone());
        let spec = WatchSpec {
            key: b"r/".to_vec(),
            range_end: prefix_end(b"r/"),
            start_revision: 1,
            prev_kv: false,
        };
        tokio::spawn(async move {
            watch_resuming(&endpoints, spec, |update| {
                match update {
                    WatchUpdate::Events(events) => {
                        let mut seen = seen.lock().unwrap();
                        for event in events {
                            let kv = event.kv.as_ref().unwrap();
                            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                            seen.push((text(&kv.key), text(&kv.value), kv.mod_revision));
                        }
                        if seen.len() >= WRITES {
                            return Wanted::Done;
                        }
                    }
                    WatchUpdate::Reconnecting { reason, .. } => {
                        reconnects.lock().unwrap().push(reason)
                    }
                }
                Wanted::More
            })
            .await
        })
    };
    let mut kv = cluster.clients(leader).kv;
    let mut written = Vec::new();
    for index in 0..WRITES {
        if index == WRITES / 3 {
            cluster.kill(victim);
        }
        let (key, value) = (format!("r/{index:04}"), format!("v{index}"));
        let revision = revision_of(&put(&mut kv, &key, &value).await.header);
        written.push((key, value, revision));
    }
    tokio::time::timeout(crate::support::PATIENCE, watcher)
        .await
        .expect("the watcher to see every write")
        .expect("the watcher task")
        .expect("the watch to end well");
    assert!(
        !reconnects.lock().unwrap().is_empty(),
        "the watch moved to another member"
    );
    assert_eq!(*seen.lock().unwrap(), written, "every write once, in order");
}

/// The key and revision of the next `count` events of `stream`.
async fn keys_and_revisions(stream: &mut Stream, count: usize) -> Vec<(String, i64)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        for event in stream.next().await.events {
            let kv = event.kv.expect("a key");
            seen.push((
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            ));
        }
    }
    seen
}

/// Polls `path` until it holds `expected`.
async fn until_printed(path: &Path, expected: &str) {
    eventually(&format!("{expected:?} in {}", path.display()), || async {
        let printed = read_log(path);
        if printed.contains(expected) {
            Ok(())
        } else {
            Err(printed)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_prints_live_and_past_events_with_prev_kv_and_interactively() {
    let Some(program) = find_tool("etcdctl", "Debian package etcd-client") else {
        return;
    };
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower_of(leader);
    let scratch = cluster.scratch();
    let mut kv = cluster.clients(leader).kv;
    let first = revision_of(&put(&mut kv, "e/a", "1").await.header);
    put(&mut kv, "e/a", "2").await;

    let background = |name: &str, arguments: &[&str], stdin: bool| {
        let output = scratch.join(format!("{name}.out"));
        let mut command = Command::new(&program);
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", cluster.url(follower)))
            .args(arguments)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(std::fs::File::create(&output).unwrap())
            .stderr(std::fs::File::create(scratch.join(format!("{name}.err"))).unwrap());
        (ChildGuard::start(command), output)
    };
    let revision = first.to_string();
    let (_live, live) = background("live", &["watch", "--prefix", "e/"], false);
    let (_past, past) = background(
        "past",
        &["watch", "--prefix", "--prev-kv", "--rev", &revision, "e/"],
        false,
    );
    until_printed(&past, "PUT\ne/a\n1\nPUT\ne/a\n1\ne/a\n2\n").await;
    let (mut interactive_guard, interactive) = background("interactive", &["watch", "-i"], true);
    let mut stdin = interactive_guard.take_stdin().unwrap();
    std::io::Write::write_all(&mut stdin, b"watch e/b\n").unwrap();
    std::io::Write::flush(&mut stdin).unwrap();
    // The watchers are registered once a write made after them shows.
    eventually("the live watcher to be registered", || {
        let mut kv = kv.clone();
        let live = live.clone();
        async move {
            put(&mut kv, "e/probe", "p").await;
            read_log(&live)
                .contains("e/probe")
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        }
    })
    .await;
    put(&mut kv, "e/b", "3").await;
    kv.delete_range(DeleteRangeRequest {
        key: b"e/b".to_vec(),
        ..DeleteRangeRequest::default()
    })
    .await
    .unwrap();
    until_printed(&live, "PUT\ne/b\n3\nDELETE\ne/b\n\n").await;
    until_printed(&past, "PUT\ne/b\n3\nDELETE\ne/b\n3\ne/b\n\n").await;
    until_printed(&interactive, "PUT\ne/b\n3\nDELETE\ne/b\n\n").await;
    drop(stdin);

    // And `get --rev` reads the past; compaction's errors are etcd's.
    let endpoints = cluster.url(follower);
    let old = etcdctl(
        &program,
        scratch,
        &endpoints,
        &["get", "e/a", "--rev", &revision],
        "",
    );
    assert_eq!(
        (old.success, old.stdout.as_str()),
        (true, "e/a\n1\n"),
        "{}",
        old.stderr
    );
    let compacted = etcdctl(
        &program,
        scratch,
        &endpoints,
        &["compact", &(first + 1).to_string()],
        "",
    );
    assert!(compacted.success, "{}", compacted.stderr);
    let gone = etcdctl(
        &program,
        scratch,
        &endpoints,
        &["get", "e/a", "--rev", &revision],
        "",
    );
    assert!(
        gone.stderr
            .contains("etcdserver: mvcc: required revision has been compacted"),
        "{}",
        gone.stderr
    );
    let (_late, late) = background("late", &["watch", "--rev", &revision, "e/a"], false);
    eventually("etcdctl to say the watch was compacted", || async {
        let printed = read_log(&scratch.join("late.err")) + &read_log(&late);
        printed
            .contains("required revision has been compacted")
            .then_some(())
            .ok_or(printed)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_watcher_holds_up_neither_writes_nor_other_watchers_and_catches_up_after() {
    const WRITES: usize = 2000;
    let cluster = Cluster::start(1).await;
    cluster.wait_for_leader().await;
    let url = cluster.url(1);
    // Two streams on the same keys; the first is never read while the
    // writes go on, far past what HTTP/2 windows and the stream's queue
    // hold (2,000 events of 1 KiB).
    let mut stuck = Stream::open(&url).await;
    stuck.create(prefix("s/")).await;
    assert!(stuck.next().await.created);
    let mut reader = Stream::open(&url).await;
    reader.create(prefix("s/")).await;
    assert!(reader.next().await.created);
    let value = "v".repeat(1024);
    let mut kv = cluster.clients(1).kv;
    let mut written = Vec::new();
    for index in 0..WRITES {
        let key = format!("s/{index:05}");
        written.push((
            key.clone(),
            revision_of(&put(&mut kv, &key, &value).await.header),
        ));
    }
    assert_eq!(
        keys_and_revisions(&mut reader, WRITES).await,
        written,
        "the other watcher"
    );
    // The stuck one, read at last, gets every event, in order, from the
    // history.
    assert_eq!(
        keys_and_revisions(&mut stuck, WRITES).await,
        written,
        "the stuck watcher"
    );
}

//! The chaos run's watchers: a few per member, each on a prefix of the
//! workload's keys, each watching through its own member only, from
//! revision 1. A broken stream (its member killed, restarted) is opened
//! again on the same member from the revision after the last one it was
//! told everything up to, and the break is recorded. At the end the
//! harness gives them the final revision; each asks its member for
//! progress until told everything up to it, and stops.
//!
//! Every event is logged as it came, for
//! [`check_watches`](super::watch_checks::check_watches).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::NodeId;
use raft_proto::etcd::etcdserverpb::watch_client::WatchClient;
use raft_proto::etcd::etcdserverpb::watch_request::RequestUnion;
use raft_proto::etcd::etcdserverpb::{
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use raft_proto::etcd::mvccpb::event::EventType;
use raft_proto::etcd::mvccpb::Event;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::watch_checks::{Reconnect, WatchEvent, WatcherLog};
use super::workload::{parse_value, register_of, KEY_PREFIX};
use crate::processes::local_cluster::reach;
use crate::simulator::random::uniform;

/// The pause before opening a broken stream again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// How often a watcher asks for progress once it has a revision to reach.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// The watch id of a progress answer for the whole stream (etcd's -1).
const WHOLE_STREAM: i64 = -1;

/// Which event of its stream a watcher broken with
/// [`WatcherFault::SkipOne`] drops (counting from 1).
const SKIPPED_EVENT: u64 = 10;

/// A bug put into the harness's own watcher 0, to show that the watch
/// checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatcherFault {
    /// Drop the tenth event received, as a watch that loses one would.
    SkipOne,
}

/// One watcher of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatcherPlan {
    /// Its number in the run.
    pub watcher: usize,
    /// The member it watches through.
    pub member: NodeId,
    /// That member's URL.
    pub url: String,
    /// The etcd key prefix it watches.
    pub prefix: Vec<u8>,
}

/// `per_member` watchers on each of `members` (id and URL). The first of
/// each member watches every key; the others a prefix drawn (from `seed`)
/// among the keys a run expects to use, `expected_keys`: alternately one
/// that holds a power of ten of them and one that holds a tenth of that.
pub fn plan(
    members: &[(NodeId, String)],
    per_member: usize,
    seed: u64,
    expected_keys: u64,
) -> Vec<WatcherPlan> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5741_5443_4845_5253);
    let mut plans = Vec::new();
    for (member, url) in members {
        for slot in 0..per_member {
            let prefix = if slot == 0 {
                KEY_PREFIX.as_bytes().to_vec()
            } else {
                let narrower = (slot as u32 + 1) % 2;
                let key = uniform(&mut rng, 0, expected_keys.max(1));
                narrow_prefix(key, expected_keys, narrower)
            };
            plans.push(WatcherPlan {
                watcher: plans.len(),
                member: *member,
                url: url.clone(),
                prefix,
            });
        }
    }
    plans
}

/// The prefix of `key`'s etcd key that holds the largest power of ten of
/// keys not above `expected_keys`, divided by ten `narrower` times (at
/// least ten keys).
fn narrow_prefix(key: u64, expected_keys: u64, narrower: u32) -> Vec<u8> {
    let mut span_digits = expected_keys.max(10).ilog10();
    span_digits = span_digits.saturating_sub(narrower).max(1);
    let digits = format!("{key:010}");
    let kept = digits.len().saturating_sub(span_digits as usize);
    format!("{KEY_PREFIX}{}", &digits[..kept]).into_bytes()
}

/// The end of the range of keys that start with `prefix` (etcd's
/// `range_end` for a prefix): its last byte below 0xff, one up.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The running watchers.
pub struct Watchers {
    /// Their logs, shared with their tasks so that a watcher stopped for
    /// not catching up still has its log checked.
    logs: Vec<Arc<Mutex<WatcherLog>>>,
    /// The revision to catch up to, once the run's writes are over.
    target: watch::Sender<Option<i64>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watchers {
    /// Starts the watchers of `plans`, from revision 1; `fault` breaks
    /// watcher 0.
    pub fn start(plans: Vec<WatcherPlan>, fault: Option<WatcherFault>) -> Watchers {
        let (target, _) = watch::channel(None);
        let mut logs = Vec::new();
        let mut tasks = Vec::new();
        for plan in plans {
            let log = Arc::new(Mutex::new(WatcherLog {
                watcher: plan.watcher,
                member: plan.member.get(),
                prefix: plan.prefix.clone(),
                start_revision: 1,
                ..WatcherLog::default()
            }));
            let watcher = Watcher {
                channel: reach::connect_lazy(
                    Endpoint::from_shared(plan.url.clone())
                        .expect("a socket address makes a valid URL")
                        .connect_timeout(Duration::from_millis(500))
                        .tcp_nodelay(true),
                ),
                fault: fault.filter(|_| plan.watcher == 0),
                plan,
                log: log.clone(),
                target: target.subscribe(),
                received: 0,
            };
            logs.push(log);
            tasks.push(tokio::spawn(watcher.run()));
        }
        Watchers {
            logs,
            target,
            tasks,
        }
    }

    /// Has every watcher catch up to `final_revision` (when known), waits
    /// `timeout` at most, stops them and returns their logs. A watcher
    /// that did not catch up in time has that in its problems.
    pub async fn finish(self, final_revision: Option<i64>, timeout: Duration) -> Vec<WatcherLog> {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(revision) = final_revision {
            self.target.send_replace(Some(revision));
        }
        for (task, log) in self.tasks.into_iter().zip(&self.logs) {
            let Some(revision) = final_revision else {
                task.abort();
                continue;
            };
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                let mut log = log.lock().expect("a watcher's log");
                let problem = format!(
                    "watcher {} (member {}) never caught up to the final revision {revision} \
                     within {} s: told everything up to {}",
                    log.watcher,
                    log.member,
                    timeout.as_secs(),
                    log.covered_up_to()
                );
                log.problems.push(problem);
            }
        }
        self.logs
            .iter()
            .map(|log| log.lock().expect("a watcher's log").clone())
            .collect()
    }
}

/// How one stream ended.
enum Ended {
    /// Told everything up to the target revision.
    CaughtUp,
    /// The server ended the watch (compaction, a refusal).
    Cancelled(String),
    /// The stream broke or could not be opened.
    Broken {
        /// Whether the server had created the watch.
        created: bool,
        /// Why.
        reason: String,
    },
}

struct Watcher {
    plan: WatcherPlan,
    channel: Channel,
    log: Arc<Mutex<WatcherLog>>,
    target: watch::Receiver<Option<i64>>,
    fault: Option<WatcherFault>,
    /// Events received over every stream, for the fault.
    received: u64,
}

impl Watcher {
    async fn run(mut self) {
        loop {
            let from_revision = {
                let log = self.log();
                log.start_revision.max(log.covered_up_to() + 1)
            };
            match self.stream(from_revision).await {
                Ended::CaughtUp => return,
                Ended::Cancelled(reason) => {
                    let mut log = self.log();
                    let problem = format!(
                        "watcher {} (member {}): the watch from revision {from_revision} was \
                         cancelled: {reason}",
                        log.watcher, log.member
                    );
                    log.problems.push(problem);
                    return;
                }
                Ended::Broken { created, reason } => {
                    if created {
                        let from_revision = self.log().covered_up_to() + 1;
                        self.log().reconnects.push(Reconnect {
                            from_revision,
                            reason,
                        });
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, WatcherLog> {
        self.log.lock().expect("a watcher's log")
    }

    /// One stream from `from_revision`, until it ends.
    async fn stream(&mut self, from_revision: i64) -> Ended {
        let (requests, outgoing) = mpsc::channel(4);
        let create = RequestUnion::CreateRequest(WatchCreateRequest {
            key: self.plan.prefix.clone(),
            range_end: prefix_end(&self.plan.prefix),
            start_revision: from_revision,
            ..WatchCreateRequest::default()
        });
        // The sender lives as long as the stream: closing it ends the watch.
        let _ = requests
            .send(WatchRequest {
                request_union: Some(create),
            })
            .await;
        let mut client = WatchClient::new(self.channel.clone()).max_decoding_message_size(64 << 20);
        let mut responses = match client.watch(ReceiverStream::new(outgoing)).await {
            Ok(responses) => responses.into_inner(),
            Err(status) => {
                return Ended::Broken {
                    created: false,
                    reason: status.message().to_string(),
                }
            }
        };
        let mut created = false;
        let mut fragments = Vec::new();
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        loop {
            let response = tokio::select! {
                message = responses.message() => message,
                _ = ticker.tick() => {
                    if self.target.borrow().is_some() {
                        let progress = RequestUnion::ProgressRequest(WatchProgressRequest {});
                        let _ = requests.send(WatchRequest { request_union: Some(progress) }).await;
                    }
                    continue;
                }
            };
            let response = match response {
                Ok(Some(response)) => response,
                Ok(None) => {
                    let reason = "the stream ended".to_string();
                    return Ended::Broken { created, reason };
                }
                Err(status) => {
                    let reason = status.message().to_string();
                    return Ended::Broken { created, reason };
                }
            };
            created |= response.created;
            if let Some(ended) = self.take(response, &mut fragments) {
                return ended;
            }
        }
    }

    /// Takes in one response; `Some` when it ends the stream.
    fn take(&mut self, response: WatchResponse, fragments: &mut Vec<Event>) -> Option<Ended> {
        if response.compact_revision != 0 {
            return Some(Ended::Cancelled(format!(
                "the history was compacted at revision {}",
                response.compact_revision
            )));
        }
        if response.canceled {
            return Some(Ended::Cancelled(response.cancel_reason));
        }
        if response.created {
            return None;
        }
        if response.watch_id == WHOLE_STREAM && response.events.is_empty() {
            let revision = response.header.as_ref().map_or(0, |header| header.revision);
            let mut log = self.log();
            log.told_up_to = log.told_up_to.max(revision);
            let target = *self.target.borrow();
            return target
                .filter(|&target| log.told_up_to >= target)
                .map(|_| Ended::CaughtUp);
        }
        fragments.extend(response.events);
        if !response.fragment {
            for event in std::mem::take(fragments) {
                self.record(&event);
            }
        }
        None
    }

    /// Logs one event (unless the watcher is broken to drop it).
    fn record(&mut self, event: &Event) {
        self.received += 1;
        if self.fault == Some(WatcherFault::SkipOne) && self.received == SKIPPED_EVENT {
            return;
        }
        let mut log = self.log();
        match converted(event) {
            Ok(event) => log.events.push(event),
            Err(reason) => {
                let problem = format!("watcher {} (member {}): {reason}", log.watcher, log.member);
                log.problems.push(problem);
            }
        }
    }
}

/// The register event of an etcd event, or why it cannot be one.
fn converted(event: &Event) -> Result<WatchEvent, String> {
    let kv = event.kv.as_ref().ok_or("an event without a key")?;
    let key = register_of(&kv.key).ok_or_else(|| {
        format!(
            "an event on a key no client writes: {:?}",
            String::from_utf8_lossy(&kv.key)
        )
    })?;
    let value = if event.r#type == EventType::Delete as i32 {
        None
    } else {
        Some(parse_value(&kv.value)?)
    };
    Ok(WatchEvent {
        revision: kv.mod_revision,
        key,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_where_its_keys_end() {
        assert_eq!(prefix_end(b"chaos/"), b"chaos0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn the_first_watcher_of_a_member_watches_everything_and_the_others_a_part() {
        let members = [(NodeId(1), "a".to_string()), (NodeId(2), "b".to_string())];
        let plans = plan(&members, 3, 7, 1_600);
        let prefixes: Vec<String> = plans
            .iter()
            .map(|plan| String::from_utf8(plan.prefix.clone()).unwrap())
            .collect();
        assert_eq!(plans.len(), 6);
        assert_eq!(plans[4].member, NodeId(2));
        assert_eq!(plans[4].watcher, 4);
        for (index, prefix) in prefixes.iter().enumerate() {
            // Everything, then a thousand keys, then a hundred.
            let expected_length = [6, 13, 14][index % 3];
            assert_eq!(prefix.len(), expected_length, "{prefixes:?}");
            assert!(prefix.starts_with("chaos/"), "{prefixes:?}");
        }
        assert_eq!(
            plan(&members, 3, 7, 1_600),
            plans,
            "the same seed, the same plan"
        );
    }

    #[test]
    fn a_narrow_prefix_holds_a_power_of_ten_of_keys() {
        assert_eq!(narrow_prefix(1_234, 1_600, 0), b"chaos/0000001".to_vec());
        assert_eq!(narrow_prefix(1_234, 1_600, 1), b"chaos/00000012".to_vec());
        assert_eq!(narrow_prefix(5, 3, 0), b"chaos/000000000".to_vec());
    }
}

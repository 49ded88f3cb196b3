//! The human commands: put, get, del, watch, status, hash, members. Each tries the
//! endpoints in turn and retries briefly while the cluster has no leader
//! (status and hash ask every endpoint once instead), and returns the text
//! to print; the operations behind the member commands are
//! `crate::connect::operations`.

use raft_proto::etcd::etcdserverpb::{
    DeleteRangeRequest, HashKvRequest, Member, PutRequest, RangeRequest, StatusRequest,
};
use raft_proto::etcd::mvccpb::event::EventType;
use tonic::Status;

use crate::connect::endpoints::Endpoints;
use crate::connect::operations::{self, with_any};
use crate::connect::watch::{watch_resuming, Wanted, WatchSpec, WatchUpdate};
use crate::kv::prefix_end;

/// The key and range end of a single key, or of every key with a prefix
/// (the empty prefix is every key: from "\0" to the end, as etcd spells it).
fn key_and_range_end(key: &str, prefix: bool) -> (Vec<u8>, Vec<u8>) {
    match (prefix, key.is_empty()) {
        (false, _) => (key.as_bytes().to_vec(), Vec::new()),
        (true, true) => (vec![0], vec![0]),
        (true, false) => (key.as_bytes().to_vec(), prefix_end(key.as_bytes())),
    }
}

/// An endpoint as a table shows it: without its scheme.
fn shown(endpoint: &str) -> &str {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, address)| address)
}

fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `put KEY VALUE`: prints `OK`.
pub async fn put(endpoints: &Endpoints, key: &str, value: &str) -> Result<String, Status> {
    let request = PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    };
    with_any(endpoints, |mut clients| {
        let request = request.clone();
        async move { clients.kv.put(request).await }
    })
    .await?;
    Ok("OK".to_string())
}

/// `get KEY [--prefix]`: prints each key and value on its own line.
pub async fn get(endpoints: &Endpoints, key: &str, prefix: bool) -> Result<String, Status> {
    let (key, range_end) = key_and_range_end(key, prefix);
    let request = RangeRequest {
        key,
        range_end,
        ..Default::default()
    };
    let response = with_any(endpoints, |mut clients| {
        let request = request.clone();
        async move { clients.kv.range(request).await }
    })
    .await?
    .into_inner();
    let mut lines = Vec::new();
    for pair in response.kvs {
        lines.push(printable(&pair.key));
        lines.push(printable(&pair.value));
    }
    Ok(lines.join("\n"))
}

/// `del KEY [--prefix]`: prints how many keys were deleted.
pub async fn delete(endpoints: &Endpoints, key: &str, prefix: bool) -> Result<String, Status> {
    let (key, range_end) = key_and_range_end(key, prefix);
    let request = DeleteRangeRequest {
        key,
        range_end,
        ..Default::default()
    };
    let response = with_any(endpoints, |mut clients| {
        let request = request.clone();
        async move { clients.kv.delete_range(request).await }
    })
    .await?
    .into_inner();
    Ok(response.deleted.to_string())
}

/// What `watch` reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchOptions {
    /// Every key with the prefix, not the key alone.
    pub prefix: bool,
    /// The first revision to report (0: from now on).
    pub start_revision: i64,
    /// Print each key's value before the change too.
    pub prev_kv: bool,
    /// Stop after this many events (0: never).
    pub max_events: u64,
}

/// `watch KEY [--prefix] [--rev N] [--prev-kv]`: prints each event as
/// etcdctl does (its type, then the previous key and value if asked, then
/// the key and value, a line each) through `print`, as it comes, resuming
/// on another endpoint when one fails; `reconnecting` is told why.
pub async fn watch(
    endpoints: &Endpoints,
    key: &str,
    options: WatchOptions,
    print: &mut dyn FnMut(&str),
    reconnecting: &mut dyn FnMut(&str),
) -> Result<String, Status> {
    let (key, range_end) = key_and_range_end(key, options.prefix);
    let spec = WatchSpec {
        key,
        range_end,
        start_revision: options.start_revision,
        prev_kv: options.prev_kv,
    };
    let mut printed = 0u64;
    watch_resuming(endpoints, spec, |update| match update {
        WatchUpdate::Events(events) => {
            for event in events {
                print(&event_lines(event, options.prev_kv));
                printed += 1;
                if printed == options.max_events {
                    return Wanted::Done;
                }
            }
            Wanted::More
        }
        WatchUpdate::Reconnecting { endpoint, reason } => {
            reconnecting(&format!("watch broke ({reason}); resuming at {endpoint}"));
            Wanted::More
        }
    })
    .await?;
    Ok(String::new())
}

/// One event as etcdctl prints it.
fn event_lines(event: &raft_proto::etcd::mvccpb::Event, prev_kv: bool) -> String {
    let kind = match EventType::try_from(event.r#type) {
        Ok(EventType::Delete) => "DELETE",
        _ => "PUT",
    };
    let mut lines = vec![kind.to_string()];
    if let (true, Some(prev)) = (prev_kv, &event.prev_kv) {
        lines.push(printable(&prev.key));
        lines.push(printable(&prev.value));
    }
    if let Some(kv) = &event.kv {
        lines.push(printable(&kv.key));
        lines.push(printable(&kv.value));
    }
    lines.join("\n")
}

/// `status`: one line per endpoint with its member id, leader, term and
/// indexes (an unreachable endpoint says so).
pub async fn status(endpoints: &Endpoints) -> Result<String, Status> {
    let mut lines = vec![format!(
        "{:<24} {:>10} {:>10} {:>8} {:>12} {:>12} {:>10}",
        "ENDPOINT", "MEMBER", "LEADER", "TERM", "COMMIT", "APPLIED", "REVISION"
    )];
    let mut reachable = 0;
    for endpoint in &endpoints.urls {
        let mut clients = endpoints.clients(endpoint);
        match clients.maintenance.status(StatusRequest {}).await {
            Ok(response) => {
                reachable += 1;
                let status = response.into_inner();
                let header = status.header.unwrap_or_default();
                lines.push(format!(
                    "{:<24} {:>10} {:>10} {:>8} {:>12} {:>12} {:>10}",
                    shown(endpoint),
                    header.member_id,
                    status.leader,
                    status.raft_term,
                    status.raft_index,
                    status.raft_applied_index,
                    header.revision
                ));
            }
            Err(error) => lines.push(format!(
                "{:<24} unreachable: {}",
                shown(endpoint),
                error.message()
            )),
        }
    }
    if reachable == 0 {
        return Err(Status::unavailable(lines[1..].join("\n")));
    }
    Ok(lines.join("\n"))
}

/// `hash`: one line per endpoint with its member id, the digest of its key
/// space and the revision it was taken at (Maintenance.HashKV), so that
/// replicas can be compared; an unreachable endpoint says so.
pub async fn hash(endpoints: &Endpoints) -> Result<String, Status> {
    let mut lines = vec![format!(
        "{:<24} {:>10} {:>10} {:>10}",
        "ENDPOINT", "MEMBER", "HASH", "REVISION"
    )];
    let mut reachable = 0;
    for endpoint in &endpoints.urls {
        let address = shown(endpoint);
        let mut clients = endpoints.clients(endpoint);
        match clients
            .maintenance
            .hash_kv(HashKvRequest { revision: 0 })
            .await
        {
            Ok(response) => {
                reachable += 1;
                let response = response.into_inner();
                let member = response.header.unwrap_or_default().member_id;
                lines.push(format!(
                    "{address:<24} {member:>10} {:>10} {:>10}",
                    response.hash, response.hash_revision
                ));
            }
            Err(error) => lines.push(format!("{address:<24} unreachable: {}", error.message())),
        }
    }
    if reachable == 0 {
        return Err(Status::unavailable(lines[1..].join("\n")));
    }
    Ok(lines.join("\n"))
}

/// `transfer-leader`: hands leadership to member `target` (any endpoint forwards the request
/// to the leader) and says who leads now.
pub async fn transfer_leader(endpoints: &Endpoints, target: u64) -> Result<String, Status> {
    let term = operations::transfer_leader(endpoints, target).await?;
    Ok(format!("member {target} leads now (term {term})"))
}

/// `headline`, then one line per member.
fn after_change(headline: String, members: &[Member]) -> String {
    std::iter::once(headline)
        .chain(member_lines(members))
        .collect::<Vec<_>>()
        .join("\n")
}

fn member_lines(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .map(|member| {
            format!(
                "{} {} {} {}",
                member.id,
                member.name,
                member.peer_ur_ls.join(","),
                if member.is_learner {
                    "learner"
                } else {
                    "voter"
                }
            )
        })
        .collect()
}

/// `members add ID ADDRESS [--learner]`: adds the member and lists the
/// members.
pub async fn add_member(
    endpoints: &Endpoints,
    id: u64,
    address: &str,
    learner: bool,
) -> Result<String, Status> {
    let members = operations::add_member(endpoints, id, address, learner).await?;
    let role = if learner { "learner" } else { "voter" };
    Ok(after_change(
        format!("added member {id} at {address} as a {role}; start it with --join"),
        &members,
    ))
}

/// `members remove ID`.
pub async fn remove_member(endpoints: &Endpoints, id: u64) -> Result<String, Status> {
    let members = operations::remove_member(endpoints, id).await?;
    Ok(after_change(format!("removed member {id}"), &members))
}

/// `members promote ID`.
pub async fn promote_member(endpoints: &Endpoints, id: u64) -> Result<String, Status> {
    let members = operations::promote_member(endpoints, id).await?;
    Ok(after_change(
        format!("promoted member {id} to voter"),
        &members,
    ))
}

/// `members update ID ADDRESS`.
pub async fn update_member(
    endpoints: &Endpoints,
    id: u64,
    address: &str,
) -> Result<String, Status> {
    let members = operations::update_member(endpoints, id, address).await?;
    Ok(after_change(
        format!("member {id} is now at {address}"),
        &members,
    ))
}

/// `members`: one line per member.
pub async fn members(endpoints: &Endpoints) -> Result<String, Status> {
    let members = operations::list_members(endpoints, false).await?;
    Ok(member_lines(&members).join("\n"))
}

#[cfg(test)]
#[path = "remove_member_tests.rs"]
mod remove_member_tests;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use raft::NodeId;
    use tonic::Code;

    use super::*;
    use crate::kv::Limits;
    use crate::server::{serve, ServerOptions};

    /// The member, hash and revision columns of `hash`'s line for one endpoint.
    fn hash_line(output: &str) -> (String, String, String) {
        let line = output.lines().nth(1).expect("a line for the endpoint");
        let columns: Vec<&str> = line.split_whitespace().collect();
        let [_, member, hash, revision] = columns[..] else {
            panic!("unexpected line {line:?}");
        };
        (member.into(), hash.into(), revision.into())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hash_reports_a_digest_that_changes_with_the_key_space_only() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let options = ServerOptions {
            id: NodeId(1),
            listen: address.parse().expect("an address"),
            members: BTreeMap::from([(NodeId(1), address.clone())]),
            data_directory: directory.path().join("node-1"),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            heartbeat: Duration::from_millis(50),
            cluster_token: "hash-test".into(),
            limits: Limits::default(),
            snapshot_interval_entries: 10_000,
            snapshot_log_growth_ratio: 2,
            max_snapshot_bytes: raft::SnapshotPolicy::default().max_receive_bytes,
            metrics_address: None,
            join: false,
            tls: Default::default(),
            peer_port: None,
            auto_compaction: None,
            watch_progress_notify_interval: crate::server::watch::WatchSettings::default()
                .progress_notify_interval,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let node = tokio::spawn(serve(options, async {
            let _ = stopped.await;
        }));
        let endpoints = Endpoints::plain(vec![format!("http://{address}")]);

        put(&endpoints, "a", "1").await.expect("the first put");
        let first = hash_line(&hash(&endpoints).await.expect("hash"));
        assert_eq!((first.0.as_str(), first.2.as_str()), ("1", "2"));
        let again = hash_line(&hash(&endpoints).await.expect("hash"));
        assert_eq!(again, first, "nothing was written in between");

        put(&endpoints, "b", "2").await.expect("the second put");
        let second = hash_line(&hash(&endpoints).await.expect("hash"));
        assert_eq!(second.2, "3");
        assert_ne!(second.1, first.1, "a new key changes the digest");

        // An endpoint that does not answer is listed, not fatal, unless none answers.
        let unreachable = "http://127.0.0.1:1".to_string();
        let mixed = hash(&Endpoints::plain(vec![
            endpoints.urls[0].clone(),
            unreachable.clone(),
        ]))
        .await
        .expect("one endpoint answers");
        assert!(mixed
            .lines()
            .nth(2)
            .is_some_and(|line| line.contains("unreachable")));
        let error = hash(&Endpoints::plain(vec![unreachable]))
            .await
            .expect_err("no endpoint answers");
        assert_eq!(error.code(), Code::Unavailable);

        let _ = stop.send(());
        node.await.expect("the node task").expect("a clean stop");
    }
}

//! Joining an existing cluster (`raft_client run ... --join`, etcd's
//! "existing" initial cluster state).
//!
//! A joining node cannot derive the cluster id from its member list (that
//! list is not the cluster's first one), so it asks the members it was
//! given, and checks on the way that it has been added: a node that was
//! never added would only be refused by every member. It then records the
//! cluster id in its data directory (`joined-cluster`), so that it
//! restarts without asking anyone, even while the rest of the cluster is
//! down, and stays a joined node whether or not `--join` is repeated.

use raft::transport::tls::TlsConnect;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raft::storage::private_files::{create_private_directory_all, create_private_file};
use raft::ClusterId;
use raft::NodeId;
use raft_proto::etcd::etcdserverpb::cluster_client::ClusterClient;
use raft_proto::etcd::etcdserverpb::MemberListRequest;

use crate::server::ServerError;

/// The file, in the data directory, that records the cluster a node joined.
pub const JOINED_CLUSTER_FILE: &str = "joined-cluster";

/// How long a joining node keeps asking the members.
const ASK_FOR: Duration = Duration::from_secs(15);

fn marker(data_directory: &Path) -> PathBuf {
    data_directory.join(JOINED_CLUSTER_FILE)
}

/// The cluster this data directory joined, if it did.
pub fn joined_cluster(data_directory: &Path) -> Result<Option<ClusterId>, ServerError> {
    let path = marker(data_directory);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(ServerError::Join(format!(
                "cannot read {}: {error}",
                path.display()
            )))
        }
    };
    let id = text
        .trim()
        .strip_prefix("cluster=")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| {
            ServerError::Join(format!(
                "{} is damaged (expected cluster=<hex id>, found {:?})",
                path.display(),
                text.trim()
            ))
        })?;
    Ok(Some(ClusterId(id)))
}

/// Records durably that this data directory joined `cluster`.
fn record_joined(data_directory: &Path, cluster: ClusterId) -> Result<(), ServerError> {
    let fail = |error: std::io::Error| {
        ServerError::Join(format!(
            "cannot record the joined cluster in {}: {error}",
            data_directory.display()
        ))
    };
    create_private_directory_all(data_directory).map_err(fail)?;
    let path = marker(data_directory);
    let temporary = path.with_extension("tmp");
    let mut file = create_private_file(&temporary).map_err(fail)?;
    writeln!(file, "cluster={:016x}", cluster.0).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&temporary, &path).map_err(fail)?;
    std::fs::File::open(data_directory)
        .and_then(|directory| directory.sync_all())
        .map_err(fail)
}

/// Refuses `--join` for a data directory that holds a log but never
/// joined: it belongs to a node that bootstrapped its cluster, and as a
/// joining node it would forget the cluster's first configuration.
pub fn check_not_bootstrapped(data_directory: &Path) -> Result<(), ServerError> {
    let log = data_directory.join("wal");
    let holds_a_log = std::fs::read_dir(&log)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if holds_a_log {
        return Err(ServerError::Join(format!(
            "{} holds the log of a node that started the cluster (it never joined one); start \
             it without --join",
            data_directory.display()
        )));
    }
    Ok(())
}

/// Asks the members in `members` (all but `this`) for the cluster id,
/// checks that `this` was added, and records the id. Fails with a reason
/// if no member answers or the node is not a member.
pub async fn join(
    node: NodeId,
    members: &BTreeMap<NodeId, String>,
    data_directory: &Path,
    tls: Option<&TlsConnect>,
) -> Result<ClusterId, ServerError> {
    let others: Vec<&String> = members
        .iter()
        .filter(|(id, _)| **id != node)
        .map(|(_, address)| address)
        .collect();
    if others.is_empty() {
        return Err(ServerError::Join(
            "--join needs at least one other member to ask, as id=host:port".to_string(),
        ));
    }
    let deadline = tokio::time::Instant::now() + ASK_FOR;
    let mut last_error = String::new();
    loop {
        for address in &others {
            match ask(address, tls).await {
                Ok((cluster, listed)) if listed.contains(&node) => {
                    record_joined(data_directory, cluster)?;
                    tracing::info!(cluster = cluster.0, asked = %address, "joining the cluster");
                    return Ok(cluster);
                }
                Ok((_, listed)) => {
                    let this = node.get();
                    return Err(ServerError::Join(format!(
                        "node {this} is not a member of the cluster at {address} (members: {}); \
                         add it first with `raft_client members add {this} <address> --learner` \
                         or `etcdctl member add`",
                        listed
                            .iter()
                            .map(|id| id.get().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Err(error) => last_error = format!("{address}: {error}"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServerError::Join(format!(
                "no member answered within {} s (last: {last_error})",
                ASK_FOR.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The cluster id and member ids `address` reports.
async fn ask(address: &str, tls: Option<&TlsConnect>) -> Result<(ClusterId, Vec<NodeId>), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| error.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
    let channel = match tls {
        Some(tls) => tls.channel(endpoint).await,
        None => endpoint.connect().await,
    }
    .map_err(|error| error.to_string())?;
    let response = ClusterClient::new(channel)
        .member_list(MemberListRequest { linearizable: true })
        .await
        .map_err(|status| status.message().to_string())?
        .into_inner();
    let cluster = response
        .header
        .map(|header| header.cluster_id)
        .filter(|id| *id != 0)
        .ok_or("the answer carries no cluster id")?;
    Ok((
        ClusterId(cluster),
        response
            .members
            .iter()
            .map(|member| NodeId(member.id))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bootstrapped_data_directory_cannot_join() {
        let directory = tempfile::tempdir().unwrap();
        check_not_bootstrapped(directory.path()).unwrap();
        std::fs::create_dir(directory.path().join("wal")).unwrap();
        check_not_bootstrapped(directory.path()).unwrap();
        std::fs::write(directory.path().join("wal").join("segment"), b"x").unwrap();
        let error = check_not_bootstrapped(directory.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("without --join"), "{error}");
    }

    #[test]
    fn the_joined_cluster_is_recorded_and_read_back() {
        let directory = tempfile::tempdir().unwrap();
        assert_eq!(joined_cluster(directory.path()).unwrap(), None);
        record_joined(directory.path(), ClusterId(0xabc)).unwrap();
        assert_eq!(
            joined_cluster(directory.path()).unwrap(),
            Some(ClusterId(0xabc))
        );
        std::fs::write(marker(directory.path()), "garbage").unwrap();
        let error = joined_cluster(directory.path()).unwrap_err().to_string();
        assert!(error.contains("damaged"), "{error}");
    }
}

//! The checks at the end of a run, once the writes have stopped: every node
//! reaches the same applied index and holds the same store there, and every
//! acknowledged write reads back (linearizably) with its last acknowledged
//! value.

use super::reach;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raft::NodeId;
use raft_client::connect::endpoints::Clients;
use raft_client::connect::operations::with_any;
use raft_client::kv::prefix_end;
use raft_proto::etcd::etcdserverpb::{HashKvRequest, RangeRequest, StatusRequest};
use tonic::transport::Endpoint;

use super::workload::{KeyRecord, KEY_PREFIX};

/// How often the nodes are asked whether they agree yet.
const CONVERGENCE_POLL: Duration = Duration::from_millis(100);

/// At most this many mismatches are named in a failure.
const MISMATCHES_SHOWN: usize = 5;

/// Every node's store at one applied index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Convergence {
    /// The applied index every node reached.
    pub applied_index: u64,
    /// The store's revision there.
    pub revision: i64,
    /// The store's digest there.
    pub hash: u32,
}

/// One node's `(applied index, commit index)`, or why it did not answer.
async fn indexes(clients: &mut Clients) -> Result<(u64, u64), String> {
    let status = clients
        .maintenance
        .status(StatusRequest {})
        .await
        .map_err(|status| status.message().to_string())?
        .into_inner();
    Ok((status.raft_applied_index, status.raft_index))
}

/// Waits until every node has applied everything committed, all at one
/// index, then compares their digests (`HashKV` hash and revision) there.
/// A node's digest counts only if its applied index is the same before and
/// after the hash; otherwise everything is asked again.
pub async fn wait_for_identical_stores(
    members: &BTreeMap<NodeId, SocketAddr>,
    timeout: Duration,
) -> Result<Convergence, String> {
    let mut clients: BTreeMap<NodeId, Clients> = members
        .iter()
        .map(|(id, address)| {
            let url = reach::url(*address);
            let channel = reach::connect_lazy(Endpoint::from_shared(url.clone()).expect("a URL"));
            (*id, Clients::over(&url, channel))
        })
        .collect();
    let deadline = Instant::now() + timeout;
    let mut last_seen = String::new();
    while Instant::now() < deadline {
        tokio::time::sleep(CONVERGENCE_POLL).await;
        let Some(applied_index) = agreed_applied_index(&mut clients, &mut last_seen).await else {
            continue;
        };
        let mut digests = BTreeMap::new();
        for (id, node) in &mut clients {
            let Ok(response) = node
                .maintenance
                .hash_kv(HashKvRequest { revision: 0 })
                .await
            else {
                break;
            };
            let response = response.into_inner();
            let revision = response.header.map_or(0, |header| header.revision);
            digests.insert(*id, (response.hash, revision));
        }
        if digests.len() != clients.len()
            || agreed_applied_index(&mut clients, &mut last_seen).await != Some(applied_index)
        {
            continue;
        }
        let (first_hash, first_revision) = digests.values().next().copied().unwrap_or_default();
        if digests
            .values()
            .all(|digest| *digest == (first_hash, first_revision))
        {
            return Ok(Convergence {
                applied_index,
                revision: first_revision,
                hash: first_hash,
            });
        }
        return Err(format!(
            "the stores differ at applied index {applied_index}: {}",
            digests
                .iter()
                .map(|(id, (hash, revision))| format!(
                    "node {} hash={hash:#010x} revision={revision}",
                    id.get()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Err(format!(
        "the nodes did not reach one applied index within {} s; last seen: {last_seen}",
        timeout.as_secs()
    ))
}

/// The applied index of every node when all have applied everything
/// committed and agree on it; `last_seen` describes what was seen.
async fn agreed_applied_index(
    clients: &mut BTreeMap<NodeId, Clients>,
    last_seen: &mut String,
) -> Option<u64> {
    let mut seen = Vec::new();
    let mut agreed = None;
    let mut agreeing = true;
    for (id, node) in clients.iter_mut() {
        match indexes(node).await {
            Ok((applied, commit)) => {
                seen.push(format!(
                    "node {} applied {applied} commit {commit}",
                    id.get()
                ));
                agreeing &= applied == commit && *agreed.get_or_insert(applied) == applied;
            }
            Err(reason) => {
                seen.push(format!("node {} unreachable ({reason})", id.get()));
                agreeing = false;
            }
        }
    }
    *last_seen = seen.join(", ");
    agreed.filter(|_| agreeing)
}

/// What reading the acknowledged writes back found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadBack {
    /// Keys with at least one acknowledged put.
    pub acknowledged_keys: usize,
    /// Keys holding the value of a put whose answer was lost (allowed: it
    /// was applied but the client never heard).
    pub holding_unacknowledged_value: usize,
}

/// Reads every key of the workload with one linearizable range read
/// (through any node, retried while there is no leader) and checks it
/// against `records`.
pub async fn read_back(
    endpoints: &[String],
    records: &BTreeMap<Vec<u8>, KeyRecord>,
) -> Result<ReadBack, String> {
    let request = RangeRequest {
        key: KEY_PREFIX.as_bytes().to_vec(),
        range_end: prefix_end(KEY_PREFIX.as_bytes()),
        serializable: false,
        ..RangeRequest::default()
    };
    let response = with_any(&reach::endpoints(endpoints.to_vec()), |mut clients| {
        let request = request.clone();
        async move { clients.kv.range(request).await }
    })
    .await
    .map_err(|status| format!("the final linearizable read failed: {}", status.message()))?
    .into_inner();
    let stored: BTreeMap<Vec<u8>, Vec<u8>> = response
        .kvs
        .into_iter()
        .map(|pair| (pair.key, pair.value))
        .collect();
    check_read_back(records, &stored)
}

/// Checks `stored` (every key of the workload as read) against `records`.
pub fn check_read_back(
    records: &BTreeMap<Vec<u8>, KeyRecord>,
    stored: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<ReadBack, String> {
    let printable = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut mismatches = Vec::new();
    let mut read_back = ReadBack {
        acknowledged_keys: 0,
        holding_unacknowledged_value: 0,
    };
    for (key, record) in records {
        let value = stored.get(key).map(Vec::as_slice);
        if record.acknowledged.is_some() {
            read_back.acknowledged_keys += 1;
        }
        if !record.allows(value) {
            mismatches.push(format!(
                "{} holds {} but its last acknowledged put wrote {:?}",
                printable(key),
                value.map_or("nothing".to_string(), |value| format!(
                    "{:?}",
                    printable(value)
                )),
                printable(record.acknowledged.as_deref().unwrap_or_default())
            ));
        } else if value.is_some() && value != record.acknowledged.as_deref() {
            read_back.holding_unacknowledged_value += 1;
        }
    }
    for key in stored.keys().filter(|key| !records.contains_key(*key)) {
        mismatches.push(format!("{} exists but was never written", printable(key)));
    }
    if mismatches.is_empty() {
        return Ok(read_back);
    }
    let count = mismatches.len();
    mismatches.truncate(MISMATCHES_SHOWN);
    Err(format!(
        "{count} keys read back wrong: {}{}",
        mismatches.join("; "),
        if count > MISMATCHES_SHOWN {
            "; ..."
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(acknowledged: Option<&str>, unacknowledged: &[&str]) -> KeyRecord {
        KeyRecord {
            acknowledged: acknowledged.map(|value| value.as_bytes().to_vec()),
            unacknowledged: unacknowledged
                .iter()
                .map(|value| value.as_bytes().to_vec())
                .collect(),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        pairs
            .iter()
            .map(|(key, value)| (key.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn acknowledged_and_unacknowledged_values_read_back() {
        let records = BTreeMap::from([
            (b"a".to_vec(), record(Some("1"), &[])),
            (b"b".to_vec(), record(Some("2"), &["3"])),
            (b"c".to_vec(), record(None, &["4"])),
        ]);
        let stored = map(&[("a", "1"), ("b", "3")]);
        assert_eq!(
            check_read_back(&records, &stored),
            Ok(ReadBack {
                acknowledged_keys: 2,
                holding_unacknowledged_value: 1
            })
        );
    }

    #[test]
    fn a_lost_or_stale_write_and_a_stray_key_fail() {
        let records = BTreeMap::from([
            (b"a".to_vec(), record(Some("2"), &[])),
            (b"b".to_vec(), record(Some("1"), &[])),
        ]);
        let failure = check_read_back(&records, &map(&[("a", "1"), ("z", "9")])).unwrap_err();
        assert!(failure.starts_with("3 keys read back wrong"), "{failure}");
        assert!(failure.contains("b holds nothing"), "{failure}");
        assert!(
            failure.contains("z exists but was never written"),
            "{failure}"
        );
    }
}

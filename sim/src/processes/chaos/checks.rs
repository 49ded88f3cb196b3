//! The checks of a chaos run: the tally of outcomes, the final reads that
//! join the history, and the linearizability check of every key.

use crate::processes::local_cluster::reach;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raft::NodeId;
use raft_proto::etcd::etcdserverpb::RangeRequest;
use tonic::transport::{Channel, Endpoint};

use super::report::ChaosReport;
use super::workload::{clock, etcd_key, parse_value, register_of};
use crate::linearizability::{check_history, Key, KvInput, KvOutput, Operation, Verdict};

/// How long the final reads may keep failing before the run gives up.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How many registers one final read covers.
const FINAL_READ_PAGE: u64 = 4_096;

/// The most states the checker explores for one key.
const MAX_STATES_PER_KEY: usize = 2_000_000;

/// The client number of the final reads in the history.
const FINAL_READER: u64 = u64::MAX;

/// At most this many violations are described in the report.
const VIOLATIONS_SHOWN: usize = 5;

/// Counts the workload's operations by outcome.
pub(super) fn tally(history: &[Operation], report: &mut ChaosReport) {
    for operation in history {
        report.operations += 1;
        match (operation.input, operation.completion) {
            (_, Some((_, output))) => {
                report.ok += 1;
                if let KvOutput::Cas { succeeded } = output {
                    report.cas_answered += 1;
                    report.cas_succeeded += u64::from(succeeded);
                }
            }
            (KvInput::Get, None) => report.failed_reads += 1,
            (_, None) => report.indeterminate += 1,
        }
    }
}

/// Reads every register once more, linearizably, a page of registers per
/// request; each register's read joins its history.
pub(super) async fn final_reads(
    addresses: &BTreeMap<NodeId, SocketAddr>,
    keys: &BTreeSet<Key>,
    origin: Instant,
) -> Result<Vec<Operation>, String> {
    let channels: Vec<Channel> = addresses
        .values()
        .map(|address| {
            reach::connect_lazy(
                Endpoint::from_shared(reach::url(*address))
                    .expect("a socket address makes a valid URL")
                    .timeout(Duration::from_secs(10)),
            )
        })
        .collect();
    let pages: BTreeSet<u64> = keys.iter().map(|key| key / FINAL_READ_PAGE).collect();
    let mut reads = Vec::new();
    let deadline = Instant::now() + FINAL_READ_TIMEOUT;
    let mut member = 0;
    for page in pages {
        let first = page * FINAL_READ_PAGE;
        let request = RangeRequest {
            key: etcd_key(first),
            range_end: etcd_key(first + FINAL_READ_PAGE),
            ..RangeRequest::default()
        };
        let (call_time, response) = loop {
            let call_time = clock(origin);
            let mut kv =
                raft_proto::etcd::etcdserverpb::kv_client::KvClient::new(channels[member].clone())
                    .max_decoding_message_size(64 << 20);
            match kv.range(request.clone()).await {
                Ok(response) => break (call_time, response.into_inner()),
                Err(status) if Instant::now() < deadline => {
                    tracing::debug!(code = ?status.code(), message = status.message(), "a final read failed; trying the next member");
                    member = (member + 1) % channels.len();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => return Err(format!("{:?}: {}", status.code(), status.message())),
            }
        };
        let completion_time = clock(origin);
        let mut values = BTreeMap::new();
        for kv in &response.kvs {
            let key = register_of(&kv.key).ok_or_else(|| {
                format!(
                    "a key no client wrote: {:?}",
                    String::from_utf8_lossy(&kv.key)
                )
            })?;
            values.insert(key, parse_value(&kv.value)?);
        }
        for &key in keys.range(first..first + FINAL_READ_PAGE) {
            reads.push(Operation {
                client: FINAL_READER,
                key,
                input: KvInput::Get,
                call_time,
                completion: Some((completion_time, KvOutput::Get(values.get(&key).copied()))),
            });
        }
    }
    Ok(reads)
}

/// Checks every key's history for a linearization.
pub(super) fn check(history: &[Operation], report: &mut ChaosReport) {
    let mut by_key: BTreeMap<Key, Vec<Operation>> = BTreeMap::new();
    for operation in history {
        by_key
            .entry(operation.key)
            .or_default()
            .push(operation.clone());
    }
    for operations in by_key.values() {
        match check_history(operations, MAX_STATES_PER_KEY) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { key, explanation } => {
                report.violations += 1;
                if report.problems.len() < VIOLATIONS_SHOWN {
                    report.problems.push(format!(
                        "key {key} is not linearizable (its operations, by index in this key's list):\n{explanation}"
                    ));
                }
            }
            Verdict::Unknown { key, reason } => {
                report.undecided += 1;
                report
                    .problems
                    .push(format!("key {key}: the checker gave up: {reason}"));
            }
        }
    }
}

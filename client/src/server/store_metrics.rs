//! The key-value store's figures on `/metrics`, read from the store at each
//! scrape (nothing is counted on the write path): its revision, the
//! compacted revision, the live keys and the changes its history keeps.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use raft::node::Node;

use crate::server::state_machine::KvStateMachine;

/// Reads the store of `node` at each scrape.
pub struct StoreMetrics {
    node: Node<KvStateMachine>,
}

impl StoreMetrics {
    /// The figures of `node`'s store.
    pub fn new(node: Node<KvStateMachine>) -> StoreMetrics {
        StoreMetrics { node }
    }
}

impl fmt::Debug for StoreMetrics {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("StoreMetrics")
    }
}

impl Collector for StoreMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let figures = self.node.read_local(|state| {
            let store = &state.store;
            [
                ("kv_revision", "The store's revision", store.revision()),
                (
                    "kv_compacted_revision",
                    "The revision before which the history was compacted (0: never)",
                    store.compacted_revision(),
                ),
                ("kv_keys", "Live keys", store.len() as i64),
                (
                    "kv_history_changes",
                    "Changes the history keeps since the compacted revision",
                    store.history_len() as i64,
                ),
            ]
        });
        for (name, help, value) in figures {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        Ok(())
    }
}

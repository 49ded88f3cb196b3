//! The process's own figures on `/metrics`, read at each scrape:
//! `process_resident_memory_bytes`, under the name Prometheus's client
//! libraries (and so etcd) use, so that a dashboard made for etcd shows a
//! member's memory. Left out where `/proc/self/status` cannot be read.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Reads the process's resident memory at each scrape.
#[derive(Debug, Default)]
pub struct ProcessMetrics;

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(bytes) = resident_bytes(&status) {
            let metric = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(bytes).encode(metric)?;
        }
        Ok(())
    }
}

/// The `VmRSS` line of a `/proc/<pid>/status` text, in bytes.
pub fn resident_bytes(status: &str) -> Option<i64> {
    let kilobytes = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<i64>()
        .ok()?;
    kilobytes.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_size_is_read_from_the_status_text() {
        let status = "Name:\traft_client\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(123456 * 1024));
        assert_eq!(resident_bytes("Name:\tx\n"), None);
        assert_eq!(resident_bytes("VmRSS:\tlots kB\n"), None);
    }
}

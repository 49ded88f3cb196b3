//! Connecting to a cluster through a list of endpoints, the way etcd
//! clients do: try each in turn until one answers.

use std::time::Duration;

use raft_proto::etcd::etcdserverpb::cluster_client::ClusterClient;
use raft_proto::etcd::etcdserverpb::kv_client::KvClient;
use raft_proto::etcd::etcdserverpb::maintenance_client::MaintenanceClient;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint};

/// Why no endpoint could be used.
#[derive(Debug, Error)]
pub enum EndpointError {
    /// The list is empty.
    #[error("no endpoints given; pass --endpoints host:port[,host:port...]")]
    Empty,
    /// An endpoint is not a valid address.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Invalid {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// Parses `a,b,c` into URLs (`http://` is added where missing).
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, EndpointError> {
    let endpoints: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .map(|endpoint| {
            if endpoint.contains("://") {
                endpoint.to_string()
            } else {
                format!("http://{endpoint}")
            }
        })
        .collect();
    if endpoints.is_empty() {
        return Err(EndpointError::Empty);
    }
    for endpoint in &endpoints {
        Endpoint::from_shared(endpoint.clone()).map_err(|error| EndpointError::Invalid {
            endpoint: endpoint.clone(),
            reason: error.to_string(),
        })?;
    }
    Ok(endpoints)
}

/// A lazily connected channel to `endpoint`.
pub fn channel(endpoint: &str) -> Channel {
    Endpoint::from_shared(endpoint.to_string())
        .expect("endpoints are validated by parse_endpoints")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect_lazy()
}

/// Clients of every service over one channel.
#[derive(Clone)]
pub struct Clients {
    /// The endpoint.
    pub endpoint: String,
    /// KV.
    pub kv: KvClient<Channel>,
    /// Cluster.
    pub cluster: ClusterClient<Channel>,
    /// Maintenance.
    pub maintenance: MaintenanceClient<Channel>,
}

impl Clients {
    /// Clients of `endpoint`.
    pub fn new(endpoint: &str) -> Clients {
        let channel = channel(endpoint);
        Clients {
            endpoint: endpoint.to_string(),
            kv: KvClient::new(channel.clone()).max_decoding_message_size(usize::MAX),
            cluster: ClusterClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel),
        }
    }
}

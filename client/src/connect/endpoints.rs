//! Connecting to a cluster through a list of endpoints, the way etcd
//! clients do: try each in turn until one answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft::transport::tls::{client_config, Identity, Reloading, TlsConnect};

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
    /// The TLS flags cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
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

/// The endpoints a command talks to, and the TLS it speaks to the
/// `https://` ones (etcdctl's `--cacert`, `--cert`, `--key`).
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// The URLs, in the order to try them.
    pub urls: Vec<String>,
    /// How to reach an `https://` endpoint.
    pub tls: Option<TlsConnect>,
}

/// etcdctl's TLS flags.
#[derive(Clone, Debug, Default)]
pub struct ClientTlsFiles {
    /// `--cacert`: the CA the servers' certificates chain to.
    pub ca: Option<PathBuf>,
    /// `--cert`: the client certificate to present.
    pub certificate: Option<PathBuf>,
    /// `--key`: its private key.
    pub key: Option<PathBuf>,
}

impl Endpoints {
    /// The endpoints of `list` (`a,b,c`; `http://` is added where no scheme
    /// is given), speaking TLS as `files` say to the `https://` ones.
    pub fn parse(list: &str, files: &ClientTlsFiles) -> Result<Endpoints, EndpointError> {
        let urls = parse_endpoints(list)?;
        let identity = match (&files.certificate, &files.key) {
            (Some(certificate), Some(key)) => Some(Identity {
                certificate: certificate.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(EndpointError::Tls(
                    "--cert and --key go together".to_string(),
                ))
            }
        };
        let tls = match &files.ca {
            Some(ca) => {
                let roots = vec![ca.clone()];
                let watched: Vec<PathBuf> = [
                    Some(ca.clone()),
                    files.certificate.clone(),
                    files.key.clone(),
                ]
                .into_iter()
                .flatten()
                .collect();
                let config =
                    Reloading::new(watched, move || client_config(identity.as_ref(), &roots))
                        .map_err(|error| EndpointError::Tls(error.to_string()))?;
                Some(TlsConnect::new(Arc::new(config), Duration::from_secs(2)))
            }
            None if identity.is_some() => {
                return Err(EndpointError::Tls("--cert needs --cacert".to_string()))
            }
            None => None,
        };
        if tls.is_none() {
            if let Some(url) = urls.iter().find(|url| url.starts_with("https://")) {
                return Err(EndpointError::Tls(format!(
                    "{url} is an https:// endpoint: pass --cacert (and --cert, --key when the \
                     server asks for a client certificate)"
                )));
            }
        }
        Ok(Endpoints { urls, tls })
    }

    /// Plaintext endpoints (tests, tools).
    pub fn plain(urls: Vec<String>) -> Endpoints {
        Endpoints { urls, tls: None }
    }

    /// A lazily connected channel to `endpoint`.
    pub fn channel(&self, endpoint: &str) -> Channel {
        match &self.tls {
            Some(tls) if endpoint.starts_with("https://") => tls.channel_lazy(
                Endpoint::from_shared(endpoint.to_string())
                    .expect("endpoints are validated by parse_endpoints")
                    .timeout(Duration::from_secs(10)),
            ),
            _ => channel(endpoint),
        }
    }

    /// The scheme of the members' URLs: `https` when these endpoints are,
    /// since the members of a TLS cluster speak TLS to each other.
    pub fn member_scheme(&self) -> &'static str {
        if self.urls.iter().any(|url| url.starts_with("https://")) {
            "https"
        } else {
            "http"
        }
    }

    /// Clients of every service of `endpoint`.
    pub fn clients(&self, endpoint: &str) -> Clients {
        Clients::over(endpoint, self.channel(endpoint))
    }
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
    /// Clients of `endpoint`, in plaintext.
    pub fn new(endpoint: &str) -> Clients {
        Clients::over(endpoint, channel(endpoint))
    }

    /// Clients of `endpoint` over `channel`.
    pub fn over(endpoint: &str, channel: Channel) -> Clients {
        Clients {
            endpoint: endpoint.to_string(),
            kv: KvClient::new(channel.clone()).max_decoding_message_size(usize::MAX),
            cluster: ClusterClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel),
        }
    }
}

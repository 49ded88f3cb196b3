//! How the launchers (`run_n_clients`, `chaos`) reach their nodes: in
//! plaintext, or, after [`use_tls`], with mutual TLS from a throwaway PKI
//! whose member certificate the launcher presents too.
//!
//! A launcher chooses before it starts any node or client; every URL,
//! channel and endpoint list the harness makes then follows
//! ([`url`], [`connect_lazy`], [`endpoints`]), and the nodes get the flags
//! of [`node_arguments`].

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};

use raft_client::connect::endpoints::Endpoints;
use raft_client::pki::ThrowawayPki;
use tonic::transport::{Channel, Endpoint};

/// The launcher's TLS, when it runs with it.
struct HarnessTls {
    pki: ThrowawayPki,
    endpoints: Endpoints,
}

static TLS: RwLock<Option<Arc<HarnessTls>>> = RwLock::new(None);

fn current() -> Option<Arc<HarnessTls>> {
    TLS.read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Makes a throwaway PKI in `directory`, good for 127.0.0.1 and
/// `addresses`, and runs every node and client this process starts from
/// now on with mutual TLS from it (client certificates required).
pub fn use_tls(directory: &Path, addresses: &[IpAddr]) -> Result<(), String> {
    let pki = ThrowawayPki::create_for(directory, addresses).map_err(|error| error.to_string())?;
    let endpoints = Endpoints::parse("https://127.0.0.1:1", &pki.client_files())
        .map_err(|error| error.to_string())?;
    *TLS.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
        Some(Arc::new(HarnessTls { pki, endpoints }));
    Ok(())
}

/// Whether this launcher runs with TLS.
pub fn tls() -> bool {
    current().is_some()
}

/// The extra flags every node runs with.
pub fn node_arguments() -> Vec<String> {
    current()
        .map(|tls| tls.pki.node_arguments(true))
        .unwrap_or_default()
}

/// The URL of the node at `address`.
pub fn url(address: SocketAddr) -> String {
    let scheme = if tls() { "https" } else { "http" };
    format!("{scheme}://{address}")
}

/// A lazily connected channel to `endpoint` (made from [`url`]).
pub fn connect_lazy(endpoint: Endpoint) -> Channel {
    match current().and_then(|tls| tls.endpoints.tls.clone()) {
        Some(connect) => connect.channel_lazy(endpoint),
        None => endpoint.connect_lazy(),
    }
}

/// The endpoints `urls` (made from [`url`]), for the client commands.
pub fn endpoints(urls: Vec<String>) -> Endpoints {
    Endpoints {
        urls,
        tls: current().and_then(|tls| tls.endpoints.tls.clone()),
    }
}

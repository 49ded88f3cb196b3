//! A node's TLS, with etcd's flags: the certificate clients see and the CA
//! their certificates must chain to; the peer certificate and the peer CA.
//!
//! With `--peer-address`, peers have a port of their own, as in etcd: the
//! client port speaks TLS with the client certificate (and checks client
//! certificates against the client CA), the peer port with the peer
//! certificate, and it requires a certificate of the peer CA from every
//! connection. Either may be plaintext while the other is not.
//!
//! Otherwise one port serves clients and peers. It speaks TLS when the members do
//! (`--peer-cert-file`), presenting the client certificate (or the peer one
//! when there is none); a client certificate alone is refused, since the
//! members could not reach each other's TLS port in plaintext. The handshake checks a presented client certificate
//! against both CAs (required with `--client-cert-auth`); every peer RPC
//! (Raft messages, snapshots, the forwarding stream) is then refused
//! unless its connection presented a certificate of the peer CA
//! ([`PeerGate`]). Outgoing peer connections present the peer certificate
//! and check the other member against the peer CA. Files are re-read when
//! they change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft::transport::tls::{
    client_config, client_verifier, server_config, Identity, Reloading, RequirePeerCertificate,
    TlsConnect, TlsError,
};
use rustls::ServerConfig;
use tonic::{Request, Status};

/// The TLS flags of `run`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeTls {
    /// `--cert-file`, `--key-file`: the certificate clients see.
    pub client_identity: Option<Identity>,
    /// `--trusted-ca-file`: the CA client certificates chain to.
    pub client_trusted_ca: Option<PathBuf>,
    /// `--client-cert-auth`: a client must present such a certificate.
    pub client_cert_auth: bool,
    /// `--peer-cert-file`, `--peer-key-file`: this member's certificate
    /// toward the others.
    pub peer_identity: Option<Identity>,
    /// `--peer-trusted-ca-file`: the CA every member's certificate chains to.
    pub peer_trusted_ca: Option<PathBuf>,
}

/// What a node serves and dials with, loaded.
#[derive(Clone, Debug, Default)]
pub struct LoadedTls {
    /// The (client) port's configuration; plaintext when `None`.
    pub server: Option<Arc<Reloading<ServerConfig>>>,
    /// The peer port's configuration, when peers have a port of their own
    /// and speak TLS.
    pub peer_server: Option<Arc<Reloading<ServerConfig>>>,
    /// How to dial other members; plaintext when `None`.
    pub peer_connect: Option<TlsConnect>,
    /// The check on every peer RPC.
    pub peer_gate: PeerGate,
}

/// How long dialing a member and its handshake may take.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl NodeTls {
    /// Checks that the flags make sense together, for a node whose peers
    /// have a port of their own (`separate_peer_port`) or share the client
    /// port.
    pub fn validate(&self, separate_peer_port: bool) -> Result<(), String> {
        if self.client_cert_auth && self.client_trusted_ca.is_none() {
            return Err("--client-cert-auth needs --trusted-ca-file".to_string());
        }
        if self.client_trusted_ca.is_some() && self.client_identity.is_none() {
            return Err("--trusted-ca-file needs --cert-file and --key-file".to_string());
        }
        if !separate_peer_port && self.client_identity.is_some() && self.peer_identity.is_none() {
            return Err(
                "one port serves clients and peers, so with --cert-file the members \
                 speak TLS to each other too: give --peer-cert-file, --peer-key-file and \
                 --peer-trusted-ca-file as well (the same files may do), or serve peers \
                 on a port of their own with --peer-address"
                    .to_string(),
            );
        }
        if self.peer_identity.is_some() != self.peer_trusted_ca.is_some() {
            return Err(
                "--peer-cert-file and --peer-key-file go with --peer-trusted-ca-file".to_string(),
            );
        }
        Ok(())
    }

    /// Reads every file and builds the configurations, for a node whose
    /// peers have a port of their own (`separate_peer_port`) or share the
    /// client port; a file that cannot be read, or a key that does not
    /// match its certificate, is an error.
    pub fn load(&self, separate_peer_port: bool) -> Result<LoadedTls, TlsError> {
        let mut loaded = LoadedTls::default();
        if separate_peer_port {
            if let Some(identity) = &self.client_identity {
                let roots: Vec<PathBuf> = self.client_trusted_ca.iter().cloned().collect();
                loaded.server = Some(serving(identity, roots, self.client_cert_auth)?);
            }
            if let (Some(identity), Some(peer_ca)) = (&self.peer_identity, &self.peer_trusted_ca) {
                loaded.peer_server = Some(serving(identity, vec![peer_ca.clone()], true)?);
            }
        } else if let Some(identity) = self
            .client_identity
            .as_ref()
            .or(self.peer_identity.as_ref())
        {
            let client_roots: Vec<PathBuf> = [&self.client_trusted_ca, &self.peer_trusted_ca]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            loaded.server = Some(serving(identity, client_roots, self.client_cert_auth)?);
        }
        if let (Some(peer), Some(peer_ca)) = (&self.peer_identity, &self.peer_trusted_ca) {
            let roots = vec![peer_ca.clone()];
            let verifier_roots = roots.clone();
            let verifier = Reloading::new(roots.clone(), move || {
                client_verifier(&verifier_roots, true)
            })?;
            loaded.peer_gate = PeerGate(Some(RequirePeerCertificate::new(Arc::new(verifier))));
            let peer_identity = peer.clone();
            let watched = vec![peer.certificate.clone(), peer.key.clone(), peer_ca.clone()];
            let config =
                Reloading::new(watched, move || client_config(Some(&peer_identity), &roots))?;
            loaded.peer_connect = Some(TlsConnect::new(Arc::new(config), PEER_CONNECT_TIMEOUT));
        }
        Ok(loaded)
    }
}

/// A server configuration presenting `identity`, checking client
/// certificates against `client_roots` (and requiring one if `required`),
/// re-read when any of those files changes.
fn serving(
    identity: &Identity,
    client_roots: Vec<PathBuf>,
    required: bool,
) -> Result<Arc<Reloading<ServerConfig>>, TlsError> {
    let server_identity = identity.clone();
    let mut watched = vec![identity.certificate.clone(), identity.key.clone()];
    watched.extend(client_roots.iter().cloned());
    Ok(Arc::new(Reloading::new(watched, move || {
        server_config(&server_identity, &client_roots, required)
    })?))
}

/// Lets a peer RPC through when the cluster has no peer TLS, or when its
/// connection presented a certificate of the peer CA: a tonic interceptor,
/// so a refused RPC is refused before any of it is decoded.
#[derive(Clone, Debug, Default)]
pub struct PeerGate(Option<RequirePeerCertificate>);

impl tonic::service::Interceptor for PeerGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(check) = &self.0 {
            check.check(request.extensions().get())?;
        }
        Ok(request)
    }
}

//! What every etcd service of a node shares: the Raft node, the cluster's
//! identity, the limits, how its URLs look, and connections to the other
//! members.

use raft::transport::tls::TlsConnect;
use std::collections::BTreeMap;
use std::sync::Mutex;

use raft::node::Node;
use raft::NodeId;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::kv::{HeaderFields, Limits};
use crate::server::state_machine::KvStateMachine;

/// gRPC metadata set on a request a member forwarded to the leader, so that
/// a forwarded request is never forwarded again (no loops while leadership
/// moves).
pub const FORWARDED_METADATA: &str = "x-rustyraft-forwarded";

/// `message` as a request marked forwarded (see [`FORWARDED_METADATA`]).
pub fn mark_forwarded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        FORWARDED_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    request
}

/// `https` with TLS, `http` without.
fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// Shared by the services of one node.
pub struct Context {
    /// The Raft node.
    pub node: Node<KvStateMachine>,
    /// The cluster id reported in headers.
    pub cluster_id: u64,
    /// The members' addresses (`host:port`) the node was started with;
    /// the configuration's addresses take precedence.
    pub members: BTreeMap<NodeId, String>,
    /// Request limits.
    pub limits: Limits,
    /// Where the data directory is, for the database size.
    pub data_directory: std::path::PathBuf,
    /// A connection per member, and the address it goes to (a member that
    /// moved gets a new one).
    channels: Mutex<BTreeMap<NodeId, (String, Channel)>>,
    /// How to dial other members (TLS with the peer certificate), when
    /// not in plaintext.
    peer_connect: Option<TlsConnect>,
    /// The client port speaks TLS: client URLs are `https://`.
    pub client_tls: bool,
    /// The members speak TLS to each other: peer URLs are `https://`.
    pub peer_tls: bool,
    /// Where this member's clients reach it (`host:port`), when peers have
    /// a port of their own; otherwise clients use the peer address.
    pub client_address: Option<String>,
}

impl Context {
    /// A context for `node`.
    pub fn new(
        node: Node<KvStateMachine>,
        cluster_id: u64,
        members: BTreeMap<NodeId, String>,
        limits: Limits,
        data_directory: std::path::PathBuf,
        peer_connect: Option<TlsConnect>,
    ) -> Context {
        Context {
            node,
            cluster_id,
            members,
            limits,
            data_directory,
            channels: Mutex::new(BTreeMap::new()),
            client_tls: peer_connect.is_some(),
            peer_tls: peer_connect.is_some(),
            client_address: None,
            peer_connect,
        }
    }

    /// The peer URL of a member at `address` (`host:port`).
    pub fn peer_url(&self, address: &str) -> String {
        format!("{}://{address}", scheme(self.peer_tls))
    }

    /// The client URL of a member serving clients at `address`.
    pub fn client_url(&self, address: &str) -> String {
        format!("{}://{address}", scheme(self.client_tls))
    }

    /// Marks the client port as speaking TLS (client URLs are `https://`).
    pub fn serving_tls(mut self, tls: bool) -> Context {
        self.client_tls = tls;
        self
    }

    /// Peers have a port of their own, speaking TLS if `peer_tls`; clients
    /// reach this member at `client_address` (`host:port`).
    pub fn with_peer_port(mut self, peer_tls: bool, client_address: String) -> Context {
        self.peer_tls = peer_tls;
        self.client_address = Some(client_address);
        self
    }

    /// The client URLs this member publishes when peers have a port of
    /// their own.
    pub fn own_client_urls(&self) -> Option<Vec<String>> {
        let address = self.client_address.as_ref()?;
        Some(vec![self.client_url(address)])
    }

    /// The header fields of this node now.
    pub fn header(&self) -> HeaderFields {
        HeaderFields {
            cluster_id: self.cluster_id,
            member_id: self.node.options().id,
            raft_term: self.node.term(),
        }
    }

    /// A channel connected (lazily) to member `member`, shared by every
    /// request forwarded there.
    pub fn channel_of(&self, member: NodeId) -> Result<Channel, Status> {
        let address = self
            .node
            .with_membership(|view| view.addresses.get(&member).cloned())
            .or_else(|| self.members.get(&member).cloned())
            .ok_or_else(|| {
                Status::unavailable(format!("etcdserver: member {member}'s address is unknown"))
            })?;
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached, channel)) = channels.get(&member) {
            if *cached == address {
                return Ok(channel.clone());
            }
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|error| Status::internal(format!("bad member address {address}: {error}")))?
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(1))
            // The forwarding stream stays open: a member that stopped
            // answering (a partition, a paused process) is noticed within
            // about ten seconds, and the requests waiting on it fail.
            .http2_keep_alive_interval(std::time::Duration::from_secs(5))
            .keep_alive_timeout(std::time::Duration::from_secs(5));
        let channel = match &self.peer_connect {
            Some(tls) => tls.channel_lazy(endpoint),
            None => endpoint.connect_lazy(),
        };
        channels.insert(member, (address, channel.clone()));
        Ok(channel)
    }
}

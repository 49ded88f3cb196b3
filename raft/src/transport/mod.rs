//! The gRPC peer transport of `proto/raft.proto`.
//!
//! - [`peers`]: one task per peer keeps a long-lived stream open and sends
//!   that peer's messages on it, from a bounded queue, reconnecting with
//!   exponential backoff.
//! - [`server`]: the `RaftPeer` service, which checks every message's
//!   cluster id, sender and addressee and queues it for the event loop.
//! - [`convert`]: the only place where core messages and wire types meet.
//! - [`tls`]: TLS identities, trust, accepting and connecting.
//! - [`inbound`]: the queue from the service to the event loop, bounded by
//!   count and by bytes.
//! - [`snapshot_send`] and [`snapshot_receive`]: snapshots streamed over
//!   `InstallSnapshot`, in chunks, beside the message stream; the receiver
//!   keeps what it got as a candidate until the core decides.
//!
//! The node (`crate::node`) builds these and is their only caller; tonic
//! and wire types stay inside this folder, except the tonic service the
//! node hands its server ([`PeerService`]).
//!
//! Raft messages are one-way: an answer travels on the answering node's own
//! stream, so a leader pipelines appends without waiting for answers.

pub mod convert;
pub mod inbound;
pub mod peers;
pub mod server;
pub mod snapshot_receive;
pub mod snapshot_send;
pub mod tls;

pub use self::convert::{Admission, WireError};
pub use self::inbound::{inbound_queue, InboundClosed, InboundReceiver, InboundSender};
pub use self::peers::{PeerCounters, PeerLabels, PeerOptions, Peers};
pub use self::server::PeerService;
pub use self::snapshot_receive::{SnapshotReceiving, SnapshotRefused};
pub use self::snapshot_send::SnapshotSending;

//! The replicated state machine: a key-value store with etcd v3 semantics.
//!
//! Keys and values are bytes. Writes are etcd write requests (put,
//! delete-range, transaction) wrapped in a [`Command`] (beside which the
//! store keeps each member's published client URLs, [`members`]), proposed to Raft as
//! bytes and applied in log order with [`KvStore::apply`]; the same log gives
//! every replica the same store. Reads ([`KvStore::range`]) are served from
//! the local store; making them linearizable is the node's job (ReadIndex).
//!
//! ```
//! use raft::LogIndex;
//! use raft_client::kv::{Command, CommandResponse, KvStore, Limits};
//! use raft_proto::etcd::etcdserverpb::{PutRequest, RangeRequest};
//!
//! let mut store = KvStore::new();
//! let put = Command::Put(PutRequest {
//!     key: b"greeting".to_vec(),
//!     value: b"hello".to_vec(),
//!     ..PutRequest::default()
//! });
//! // The node validates and encodes, proposes, and applies once committed.
//! let entry = put.to_proposal(&Limits::default()).unwrap();
//! let response = store.apply(LogIndex(1), &entry).unwrap();
//! assert_eq!(response.revision(), 2);
//!
//! let read = store
//!     .range(&RangeRequest { key: b"greeting".to_vec(), ..RangeRequest::default() })
//!     .unwrap();
//! assert_eq!(read.kvs[0].value, b"hello");
//! assert_eq!(read.kvs[0].version, 1);
//! ```
//!
//! The store keeps the history of every change ([`history`]) since its
//! compacted revision, so a range with `revision` set (alone or inside a
//! transaction) answers as of that revision; a [`Command::Compact`] drops
//! the history before one.
//!
//! Not built yet, each refused with an [`Unsupported`] error (gRPC
//! Unimplemented): leases, and puts with `ignore_value` or `ignore_lease`.

mod command;
mod compare;
mod digest;
pub(crate) mod entry;
mod error;
mod header;
pub(crate) mod history;
mod history_records;
mod key_range;
pub mod members;
mod range;
mod shared_value;
mod snapshot;
mod store;
mod stored_key;
mod txn;
pub mod validation;

#[cfg(test)]
mod tests;

pub use command::{Command, CommandResponse};
pub use error::{ErrorClass, InvalidRequest, KvError, SnapshotError, Unsupported};
pub use header::HeaderFields;
pub use key_range::{prefix_end, KeyRange};
pub use store::{KvStore, INITIAL_REVISION};
pub use validation::Limits;

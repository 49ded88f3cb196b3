//! What the store keeps for one live key.

use std::sync::Arc;

use bytes::Bytes;
use raft_proto::etcd::mvccpb::KeyValue;

/// A live key's value and history counters. Deleting a key removes its
/// entry, so a key created again starts over at version 1.
///
/// The store holds entries behind an [`Arc`] (`SharedEntry`), never
/// changed in place: a put makes a new one. So the live map and the
/// history share one allocation for a key's latest entry, and the change
/// after it shares it as its `prev`: a map slot and a change are a pointer
/// each, not the whole entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Shared, so that copying the map (for a snapshot) copies no values.
    pub(crate) value: Bytes,
    /// Revision of the put that created the key.
    pub(crate) create_revision: i64,
    /// Revision of the latest put.
    pub(crate) mod_revision: i64,
    /// Number of puts since creation.
    pub(crate) version: i64,
    /// Attached lease; always 0 until leases are implemented, but kept,
    /// snapshotted and compared so that adding leases changes no format.
    pub(crate) lease: i64,
}

/// An entry as the store's map and history hold it.
pub(crate) type SharedEntry = Arc<Entry>;

impl Entry {
    /// The wire form of this entry under `key`, optionally without its value.
    pub(crate) fn to_key_value(&self, key: &[u8], with_value: bool) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: if with_value {
                self.value.to_vec()
            } else {
                Vec::new()
            },
            lease: self.lease,
        }
    }
}

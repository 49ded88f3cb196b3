//! The key-value store: live keys, the global revision, and applying writes.

use std::collections::BTreeMap;

use bytes::Bytes;
use imbl::OrdMap;

use raft::{LogIndex, NodeId};
use raft_proto::etcd::etcdserverpb::{
    CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    ResponseHeader,
};

use super::command::{Command, CommandResponse};
use super::entry::{Entry, SharedEntry};
use super::error::KvError;
use super::history::{Change, History};
use super::key_range::KeyRange;
use super::members::MemberAttributes;
use super::shared_value::put_value_slice;
use super::stored_key::StoredKey;
use super::txn::set_write_revisions;

/// The revision of an empty store; the first write gets revision 2 (as in
/// etcd, where revision 1 is the empty key space).
pub const INITIAL_REVISION: i64 = 1;

/// A key-value store with etcd v3 semantics: the latest value of each key,
/// and the history of every change since the compacted revision
/// ([`crate::kv::history`]), so that reads at earlier revisions answer as
/// of then.
///
/// Writes arrive as encoded [`Command`]s through [`KvStore::apply`], in log
/// order, and change the store deterministically: the same commands at the
/// same indexes give every replica the same store, down to its
/// [`KvStore::digest`]. Reads ([`KvStore::range`]) are served directly.
///
/// The revision counts write commands: every command that changes at least
/// one key (a put, a delete that deletes something, a transaction whose
/// branch did either) increments it by exactly one, and every key it touches
/// gets that revision. Each key also has a `create_revision` (the put that
/// created it), a `mod_revision` (the latest put) and a `version` (puts since
/// creation); deleting a key forgets all three.
///
/// Beside the key space it keeps what each member published about itself
/// ([`crate::kv::members`]), which moves no revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvStore {
    /// A persistent (copy-on-write) ordered map: cloning the store for a
    /// snapshot is O(1), and writes after the clone copy only the nodes
    /// they touch.
    pub(super) entries: OrdMap<StoredKey, SharedEntry>,
    /// Every change since the compacted revision.
    pub(super) history: History,
    pub(super) revision: i64,
    pub(super) applied_index: LogIndex,
    /// Each member's client URLs, as it last published them.
    pub(super) published: BTreeMap<NodeId, Vec<String>>,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore::new()
    }
}

/// Dropped history up to this many changes is freed where it is dropped.
const RELEASE_INLINE_UP_TO: usize = 4096;

/// The changes one write command is making: the revision they get, and
/// whether any was made (only then does the store's revision move).
pub(super) struct PendingWrite {
    pub(super) revision: i64,
    pub(super) changed: bool,
}

impl KvStore {
    /// An empty store at [`INITIAL_REVISION`], nothing applied.
    pub fn new() -> KvStore {
        KvStore {
            entries: OrdMap::new(),
            history: History::default(),
            revision: INITIAL_REVISION,
            applied_index: LogIndex(0),
            published: BTreeMap::new(),
        }
    }

    /// The revision of the latest write.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The revision at or below which history was compacted (0: none).
    pub fn compacted_revision(&self) -> i64 {
        self.history.compacted()
    }

    /// The history since the compacted revision: a copy that costs O(1)
    /// and stays as it is while the store moves on (watchers read it
    /// without holding the store).
    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// How many changes the history keeps.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// The index of the last log entry given to [`KvStore::apply`].
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// The client URLs member `member` last published, if it did.
    pub fn client_urls(&self, member: NodeId) -> Option<&[String]> {
        self.published.get(&member).map(Vec::as_slice)
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies the write command committed at log `index`.
    ///
    /// Indexes must increase (gaps are fine: not every log entry is a key
    /// space command); an index at or below [`KvStore::applied_index`] is
    /// refused with [`KvError::AlreadyApplied`] and changes nothing. Any other
    /// index is recorded as applied even when the command is refused: a
    /// refusal is the command's deterministic outcome, the same on every
    /// replica, and a refused command writes nothing.
    ///
    /// The response headers carry the store revision after the command; the
    /// node fills in the rest ([`CommandResponse::fill_headers`]).
    pub fn apply(&mut self, index: LogIndex, command: &[u8]) -> Result<CommandResponse, KvError> {
        self.apply_command(index, command, None)
    }

    /// [`KvStore::apply`], given the command as the log holds it: a put's
    /// value is kept as a slice of it, not a copy, so that the log and the
    /// store share it while both hold it.
    pub fn apply_shared(
        &mut self,
        index: LogIndex,
        command: &Bytes,
    ) -> Result<CommandResponse, KvError> {
        self.apply_command(index, command, Some(command))
    }

    fn apply_command(
        &mut self,
        index: LogIndex,
        bytes: &[u8],
        shared: Option<&Bytes>,
    ) -> Result<CommandResponse, KvError> {
        if index <= self.applied_index {
            return Err(KvError::AlreadyApplied {
                index,
                applied_index: self.applied_index,
            });
        }
        self.applied_index = index;
        let command = Command::from_bytes(bytes)?;
        let value = match (&command, shared) {
            (Command::Put(request), Some(shared)) => put_value_slice(shared, &request.value),
            _ => None,
        };
        self.execute(&command, value)
    }

    /// Carries out `command`; `value`, when given, is its put's value as a
    /// slice of the log entry.
    fn execute(
        &mut self,
        command: &Command,
        value: Option<Bytes>,
    ) -> Result<CommandResponse, KvError> {
        command.validate()?;
        let mut pending = PendingWrite {
            revision: self.revision + 1,
            changed: false,
        };
        let mut response = match command {
            Command::Put(request) => CommandResponse::Put(self.put(request, value, &mut pending)),
            Command::DeleteRange(request) => {
                CommandResponse::DeleteRange(self.delete_range(request, &mut pending))
            }
            Command::Txn(request) => CommandResponse::Txn(self.txn(request, &mut pending)?),
            Command::Publish(attributes) => {
                self.publish(attributes);
                CommandResponse::Published(None)
            }
            Command::Compact(request) => {
                self.compact(request.revision)?;
                CommandResponse::Compacted(CompactionResponse::default())
            }
        };
        if pending.changed {
            self.revision = pending.revision;
        }
        match &mut response {
            CommandResponse::Put(inner) => inner.header = header(self.revision),
            CommandResponse::DeleteRange(inner) => inner.header = header(self.revision),
            CommandResponse::Txn(inner) => set_write_revisions(inner, self.revision),
            CommandResponse::Published(inner) => *inner = header(self.revision),
            CommandResponse::Compacted(inner) => inner.header = header(self.revision),
        }
        Ok(response)
    }

    /// Puts one key, with `value` as its value when given (the request's,
    /// shared with the log entry), else a copy of the request's. The
    /// response's header is left for the caller to set, since a
    /// transaction's final revision is known only at its end.
    pub(super) fn put(
        &mut self,
        request: &PutRequest,
        value: Option<Bytes>,
        pending: &mut PendingWrite,
    ) -> PutResponse {
        pending.changed = true;
        let value = value.unwrap_or_else(|| Bytes::copy_from_slice(&request.value));
        // An existing key is updated in place: one descent of the map (which
        // copies the path only if a snapshot still shares it), not a lookup
        // followed by an insert.
        if let Some(slot) = self.entries.get_mut(request.key.as_slice()) {
            let prev = SharedEntry::clone(slot);
            let prev_kv = request
                .prev_kv
                .then(|| prev.to_key_value(&request.key, true));
            let entry = SharedEntry::new(Entry {
                value,
                create_revision: prev.create_revision,
                mod_revision: pending.revision,
                version: prev.version + 1,
                lease: request.lease,
            });
            *slot = SharedEntry::clone(&entry);
            let change = Change {
                revision: pending.revision,
                key: StoredKey::from_slice(&request.key),
                entry: Some(entry),
                prev: Some(prev),
            };
            self.history.record(change);
            return PutResponse {
                header: None,
                prev_kv,
            };
        }
        let entry = SharedEntry::new(Entry {
            value,
            create_revision: pending.revision,
            mod_revision: pending.revision,
            version: 1,
            lease: request.lease,
        });
        let key = StoredKey::from_slice(&request.key);
        self.history.record(Change {
            revision: pending.revision,
            key: key.clone(),
            entry: Some(SharedEntry::clone(&entry)),
            prev: None,
        });
        self.entries.insert(key, entry);
        PutResponse {
            header: None,
            prev_kv: None,
        }
    }

    /// Drops the history at and before `revision`: reads at revisions from
    /// it on still answer, earlier ones are [`KvError::Compacted`]. A
    /// revision past the store's is [`KvError::FutureRevision`]; one at or
    /// before the compacted revision is [`KvError::Compacted`] (etcd's
    /// rules and texts).
    fn compact(&mut self, revision: i64) -> Result<(), KvError> {
        self.check_compaction(revision)?;
        let dropped = self.history.compact(revision);
        // Millions of changes take hundreds of milliseconds to free: not on
        // the apply thread, which heartbeats and every write wait for.
        if dropped.len() > RELEASE_INLINE_UP_TO {
            raft::release::elsewhere(dropped);
        }
        Ok(())
    }

    /// Whether a compaction at `revision` would be taken now (see
    /// [`KvStore::apply`] of a compaction).
    pub fn check_compaction(&self, revision: i64) -> Result<(), KvError> {
        if revision > self.revision {
            return Err(KvError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision <= self.history.compacted() {
            return Err(KvError::Compacted {
                requested: revision,
                compacted: self.history.compacted(),
            });
        }
        Ok(())
    }

    /// Records a member's client URLs, replacing what it published before.
    fn publish(&mut self, attributes: &MemberAttributes) {
        self.published
            .insert(NodeId(attributes.member_id), attributes.client_urls.clone());
    }

    /// Deletes every key in the request's range; the header is left to the
    /// caller, as for [`KvStore::put`].
    pub(super) fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
        pending: &mut PendingWrite,
    ) -> DeleteRangeResponse {
        let range = KeyRange::new(&request.key, &request.range_end);
        let keys: Vec<StoredKey> = self
            .entries_in(&range)
            .map(|(key, _)| key.clone())
            .collect();
        let mut prev_kvs = Vec::new();
        for key in keys.iter() {
            let Some(removed) = self.entries.remove(key.as_slice()) else {
                continue;
            };
            if request.prev_kv {
                prev_kvs.push(removed.to_key_value(key, true));
            }
            self.history.record(Change {
                revision: pending.revision,
                key: key.clone(),
                entry: None,
                prev: Some(removed),
            });
        }
        if !keys.is_empty() {
            pending.changed = true;
        }
        DeleteRangeResponse {
            header: None,
            deleted: keys.len() as i64,
            prev_kvs,
        }
    }

    /// The live keys in `range`, in key order.
    pub(super) fn entries_in<'store>(
        &'store self,
        range: &KeyRange,
    ) -> impl Iterator<Item = (&'store StoredKey, &'store Entry)> + 'store {
        self.entries
            .range::<_, [u8]>(range.bounds())
            .map(|(key, entry)| (key, &**entry))
    }
}

/// A header carrying only `revision`.
pub(super) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

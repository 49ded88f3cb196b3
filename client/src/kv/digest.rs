//! A checksum of the store's content, for comparing replicas.

use super::entry::Entry;
use super::store::KvStore;

impl KvStore {
    /// CRC32C over the store revision and every live key in key order: the
    /// key, value, create and mod revisions, version and lease of each, with
    /// lengths so that no two different stores feed the same bytes. Replicas
    /// that applied the same log prefix have equal digests. The applied index
    /// is left out: it is Raft's bookkeeping, not content.
    pub fn digest(&self) -> u32 {
        let mut checksum = self.digest_start();
        for (key, entry) in &self.entries {
            checksum = digest_entry(checksum, key, entry);
        }
        checksum
    }

    /// The digest before any key: [`KvStore::digest`] is this fed with
    /// [`digest_entry`] for every live key in key order (as a snapshot
    /// writer does while it writes them, instead of a second pass).
    pub(super) fn digest_start(&self) -> u32 {
        crc32c::crc32c(&self.revision.to_le_bytes())
    }
}

/// `checksum` continued with one live key and its entry.
pub(super) fn digest_entry(mut checksum: u32, key: &[u8], entry: &Entry) -> u32 {
    for bytes in [key, entry.value.as_ref()] {
        checksum = crc32c::crc32c_append(checksum, &(bytes.len() as u64).to_le_bytes());
        checksum = crc32c::crc32c_append(checksum, bytes);
    }
    for number in [
        entry.create_revision,
        entry.mod_revision,
        entry.version,
        entry.lease,
    ] {
        checksum = crc32c::crc32c_append(checksum, &number.to_le_bytes());
    }
    checksum
}

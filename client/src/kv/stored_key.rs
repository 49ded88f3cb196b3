//! How the store holds a key.

use smallvec::SmallVec;

/// Bytes of a key kept inline.
pub(crate) const INLINE_KEY_BYTES: usize = 24;

/// A key as the store's map holds it: up to [`INLINE_KEY_BYTES`] bytes
/// inline, inside the map's node, longer keys on the heap. A lookup compares
/// the key it looks for with a few dozen stored keys; inline, those
/// comparisons read the node's own memory instead of following a pointer
/// per key (each a likely cache miss in a large store). It orders, and
/// borrows as `[u8]`, exactly like the bytes it holds.
pub(crate) type StoredKey = SmallVec<[u8; INLINE_KEY_BYTES]>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_order_like_their_bytes_inline_or_not() {
        let long = vec![b'k'; INLINE_KEY_BYTES + 1];
        let mut keys: Vec<&[u8]> = vec![b"b", b"a\0", b"a", b"", &long, b"kk", b"\xff"];
        let mut stored: Vec<StoredKey> =
            keys.iter().map(|key| StoredKey::from_slice(key)).collect();
        keys.sort();
        stored.sort();
        let stored: Vec<&[u8]> = stored.iter().map(|key| key.as_slice()).collect();
        assert_eq!(stored, keys);
        assert!(StoredKey::from_slice(&long).spilled());
        assert!(!StoredKey::from_slice(&long[..INLINE_KEY_BYTES]).spilled());
    }

    #[test]
    fn a_stored_key_is_the_size_of_its_inline_bytes_and_a_length() {
        assert_eq!(std::mem::size_of::<StoredKey>(), INLINE_KEY_BYTES + 8);
    }
}

//! The byte encoding of what a configuration holds besides its voters and
//! learners, shared by the WAL's configuration entries and the snapshot
//! header: the members' addresses, a count (u32), then per member its id
//! (u64), the address's length (u32) and its UTF-8 bytes; then the removed
//! ids, a count (u32) and the ids (u64 each); little-endian, ascending ids.
//! A configuration with neither encodes to nothing at all, so logs and
//! snapshots written before these existed read back unchanged (and a
//! trailer that ends after the addresses has no removed ids).

use std::collections::{BTreeMap, BTreeSet};

use crate::core::quorum::Membership;
use crate::types::NodeId;

/// The encoded size of `membership`'s addresses and removed ids.
pub(crate) fn extras_len(membership: &Membership) -> usize {
    if membership.addresses.is_empty() && membership.removed.is_empty() {
        return 0;
    }
    let addresses = match membership.addresses.is_empty() {
        true => 4,
        false => encoded_len(&membership.addresses),
    };
    addresses + 4 + 8 * membership.removed.len()
}

/// Appends the encoding of `membership`'s addresses and removed ids.
pub(crate) fn encode_extras(membership: &Membership, out: &mut Vec<u8>) {
    if membership.addresses.is_empty() && membership.removed.is_empty() {
        return;
    }
    if membership.addresses.is_empty() {
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    encode(&membership.addresses, out);
    let count = u32::try_from(membership.removed.len()).expect("fewer than 2^32 removed ids");
    out.extend_from_slice(&count.to_le_bytes());
    for node in &membership.removed {
        out.extend_from_slice(&node.0.to_le_bytes());
    }
}

/// The addresses and removed ids [`encode_extras`] wrote, which must be
/// all of `bytes`. On failure, the offset in `bytes` and the reason.
#[allow(clippy::type_complexity)]
pub(crate) fn decode_extras(
    bytes: &[u8],
) -> Result<(BTreeMap<NodeId, String>, BTreeSet<NodeId>), (usize, String)> {
    if bytes.is_empty() {
        return Ok(Default::default());
    }
    let addresses_end = addresses_len(bytes)?;
    let addresses = decode(&bytes[..addresses_end])?;
    let rest = &bytes[addresses_end..];
    let mut removed = BTreeSet::new();
    if rest.is_empty() {
        return Ok((addresses, removed));
    }
    let fail = |offset: usize, reason: &str| Err((addresses_end + offset, reason.to_string()));
    if rest.len() < 4 {
        return fail(0, "the removed ids end early");
    }
    let count = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    if rest.len() != 4 + count.saturating_mul(8) {
        return fail(
            0,
            "the removed ids do not fill the rest of the configuration",
        );
    }
    for position in 0..count {
        let at = 4 + 8 * position;
        let node = NodeId(u64::from_le_bytes(
            rest[at..at + 8].try_into().expect("8 bytes"),
        ));
        if node == NodeId(0) || removed.last().is_some_and(|last| *last >= node) {
            return fail(
                at,
                "the removed ids are not distinct, increasing, non-zero ids",
            );
        }
        removed.insert(node);
    }
    Ok((addresses, removed))
}

/// The length of the addresses section at the start of `bytes`.
fn addresses_len(bytes: &[u8]) -> Result<usize, (usize, String)> {
    let short = |offset| (offset, "the member addresses end early".to_string());
    let count = bytes
        .get(..4)
        .ok_or_else(|| short(0))
        .map(|count| u32::from_le_bytes(count.try_into().expect("4 bytes")))?;
    let mut offset = 4usize;
    for _ in 0..count {
        let length = bytes
            .get(offset + 8..offset + 12)
            .ok_or_else(|| short(offset))
            .map(|length| u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize)?;
        offset = offset
            .checked_add(12 + length)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| short(offset))?;
    }
    Ok(offset)
}

/// The longest address accepted, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 1024;

/// The encoded size of `addresses`.
pub(crate) fn encoded_len(addresses: &BTreeMap<NodeId, String>) -> usize {
    if addresses.is_empty() {
        return 0;
    }
    4 + addresses
        .values()
        .map(|address| 12 + address.len())
        .sum::<usize>()
}

/// Appends the encoding of `addresses` to `out`.
pub(crate) fn encode(addresses: &BTreeMap<NodeId, String>, out: &mut Vec<u8>) {
    if addresses.is_empty() {
        return;
    }
    let count = u32::try_from(addresses.len()).expect("fewer than 2^32 members");
    out.extend_from_slice(&count.to_le_bytes());
    for (node, address) in addresses {
        out.extend_from_slice(&node.0.to_le_bytes());
        let length = u32::try_from(address.len()).expect("an address shorter than 4 GiB");
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(address.as_bytes());
    }
}

/// Decodes what [`encode`] wrote, which must be all of `bytes`. On failure,
/// the offset in `bytes` and the reason.
pub(crate) fn decode(bytes: &[u8]) -> Result<BTreeMap<NodeId, String>, (usize, String)> {
    let mut addresses = BTreeMap::new();
    if bytes.is_empty() {
        return Ok(addresses);
    }
    let mut offset = 0;
    let take = |count: usize, offset: &mut usize| -> Result<&[u8], (usize, String)> {
        let end = offset
            .checked_add(count)
            .filter(|end| *end <= bytes.len())
            .ok_or((*offset, "the member addresses end early".to_string()))?;
        let taken = &bytes[*offset..end];
        *offset = end;
        Ok(taken)
    };
    let count = u32::from_le_bytes(take(4, &mut offset)?.try_into().expect("4 bytes"));
    for _ in 0..count {
        let at = offset;
        let node = NodeId(u64::from_le_bytes(
            take(8, &mut offset)?.try_into().expect("8 bytes"),
        ));
        let length =
            u32::from_le_bytes(take(4, &mut offset)?.try_into().expect("4 bytes")) as usize;
        if length > MAX_ADDRESS_BYTES {
            return Err((
                at,
                format!("member {node}'s address is {length} bytes long"),
            ));
        }
        let address = std::str::from_utf8(take(length, &mut offset)?)
            .map_err(|_| (at, format!("member {node}'s address is not UTF-8")))?;
        if node == NodeId(0)
            || addresses
                .keys()
                .next_back()
                .is_some_and(|last| *last >= node)
        {
            return Err((
                at,
                "member addresses are not by distinct, increasing, non-zero ids".to_string(),
            ));
        }
        addresses.insert(node, address.to_string());
    }
    if offset != bytes.len() {
        return Err((
            offset,
            format!(
                "{} unexpected bytes after the member addresses",
                bytes.len() - offset
            ),
        ));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn addresses_round_trip(addresses in proptest::collection::btree_map(1u64..100, "[a-z0-9.:]{0,20}", 0..6)) {
            let addresses: BTreeMap<NodeId, String> =
                addresses.into_iter().map(|(node, address)| (NodeId(node), address)).collect();
            let mut bytes = Vec::new();
            encode(&addresses, &mut bytes);
            prop_assert_eq!(bytes.len(), encoded_len(&addresses));
            prop_assert_eq!(decode(&bytes), Ok(addresses));
        }

        #[test]
        fn every_cut_is_refused(cut in 1usize..40) {
            let addresses = BTreeMap::from([(NodeId(1), "a:1".to_string()), (NodeId(7), "host-seven:2380".to_string())]);
            let mut bytes = Vec::new();
            encode(&addresses, &mut bytes);
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn removed_ids_follow_the_addresses() {
        let mut membership = Membership::with_voters([NodeId(1)]);
        membership.removed.insert(NodeId(4));
        membership.removed.insert(NodeId(9));
        for addresses in [
            BTreeMap::new(),
            BTreeMap::from([(NodeId(1), "h:1".to_string())]),
        ] {
            membership.addresses = addresses;
            let mut bytes = Vec::new();
            encode_extras(&membership, &mut bytes);
            assert_eq!(bytes.len(), extras_len(&membership));
            let (addresses, removed) = decode_extras(&bytes).unwrap();
            assert_eq!(
                (addresses, removed),
                (membership.addresses.clone(), membership.removed.clone())
            );
            // A cut at the end of the addresses reads as a trailer without
            // removed ids (the older form); any other cut is refused. (The
            // WAL's and the snapshot's checksums catch cuts anyway.)
            let boundary = bytes.len() - 4 - 8 * membership.removed.len();
            for cut in (1..bytes.len()).filter(|cut| *cut != boundary) {
                assert!(decode_extras(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        // Addresses alone, as written before removed ids existed.
        let mut bytes = Vec::new();
        encode(
            &BTreeMap::from([(NodeId(2), "x:1".to_string())]),
            &mut bytes,
        );
        let (addresses, removed) = decode_extras(&bytes).unwrap();
        assert_eq!((addresses.len(), removed.len()), (1, 0));
    }

    #[test]
    fn none_encode_to_nothing() {
        let mut bytes = Vec::new();
        encode(&BTreeMap::new(), &mut bytes);
        assert!(bytes.is_empty());
        assert_eq!(decode(&[]), Ok(BTreeMap::new()));
    }

    #[test]
    fn bad_addresses_are_refused() {
        let mut bytes = Vec::new();
        encode(
            &BTreeMap::from([(NodeId(2), "x".to_string()), (NodeId(3), "y".to_string())]),
            &mut bytes,
        );
        // Swap the ids: no longer increasing.
        let mut swapped = bytes.clone();
        swapped[4..12].copy_from_slice(&3u64.to_le_bytes());
        swapped[17..25].copy_from_slice(&2u64.to_le_bytes());
        assert!(decode(&swapped).unwrap_err().1.contains("increasing"));
        let mut not_utf8 = bytes.clone();
        not_utf8[16] = 0xff;
        assert!(decode(&not_utf8).unwrap_err().1.contains("UTF-8"));
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode(&trailing).unwrap_err().1.contains("unexpected"));
    }
}

//! The WAL record decoder on arbitrary bytes: it never panics, and whatever
//! it decodes re-encodes to exactly the bytes it was decoded from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use raft::storage::wal::record::{decode_record, encode_record};

fuzz_target!(|bytes: &[u8]| {
    if let Ok((record, len)) = decode_record(bytes) {
        let mut encoded = Vec::new();
        encode_record(&record, &mut encoded);
        assert_eq!(encoded, bytes[..len], "{record:?} re-encodes differently");
    }
});

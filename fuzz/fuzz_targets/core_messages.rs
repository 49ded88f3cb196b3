//! Arbitrary peer messages, decoded as the transport decodes them, stepped
//! into a leader and a follower between ticks, proposals and reads: no
//! input makes a core panic (`raft::testing::step_arbitrary_input`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    raft::testing::step_arbitrary_input(bytes);
});

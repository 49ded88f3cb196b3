//! Where a store's memory goes, per key:
//! `cargo run --release -p raft_client --example store_memory -- [KEYS] [VALUE_BYTES] [copied]`
//! (2,000,000 keys of 256-byte values by default, named as `raft_client
//! bench` names them).
//!
//! Applies one put per key, as a member's applier does, under a counting
//! allocator (over mimalloc, the node's allocator), keeping every entry as
//! a log does, and prints the bytes allocated per key: store and log, the
//! store once the log has let its entries go, and the live keys once the
//! history is compacted away. Also the process's RSS per key, which adds
//! the allocator's own overhead. A third argument `copied` applies as a
//! store that copies values out of its entries would.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use raft::LogIndex;
use raft_client::kv::{Command, KvStore, Limits};
use raft_proto::etcd::etcdserverpb::{CompactionRequest, PutRequest};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is passed on to mimalloc unchanged; only a counter is
// added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { mimalloc::MiMalloc.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { mimalloc::MiMalloc.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn rss_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    raft_client::server::process_metrics::resident_bytes(&status).unwrap_or(0)
}

fn main() {
    let mut arguments = std::env::args().skip(1);
    let keys: i64 = arguments
        .next()
        .map_or(2_000_000, |text| text.parse().expect("KEYS"));
    let value_bytes: usize = arguments
        .next()
        .map_or(256, |text| text.parse().expect("VALUE_BYTES"));
    let copied = arguments.next().as_deref() == Some("copied");
    let per_key = |bytes: i64| bytes as f64 / keys.max(1) as f64;

    let (before, rss_before) = (live_bytes(), rss_bytes());
    let mut store = KvStore::new();
    let value = vec![b'v'; value_bytes];
    // The log entries, as a member's log holds them until a snapshot.
    let mut log = Vec::new();
    let mut key_bytes = 0i64;
    for number in 0..keys {
        let key = format!("bench/{}/{}", number % 256, number / 256).into_bytes();
        key_bytes += key.len() as i64;
        let put = Command::Put(PutRequest {
            key,
            value: value.clone(),
            ..PutRequest::default()
        });
        let entry = Bytes::from(put.to_proposal(&Limits::default()).expect("a valid put"));
        let index = LogIndex(number as u64 + 1);
        if copied {
            store.apply(index, &entry).expect("applied");
        } else {
            store.apply_shared(index, &entry).expect("applied");
        }
        log.push(entry);
    }
    let store_and_log = live_bytes() - before;
    let rss_store_and_log = rss_bytes() - rss_before;
    drop(log);
    let store_alone = live_bytes() - before;

    let compact = Command::Compact(CompactionRequest {
        revision: store.revision(),
        physical: false,
    })
    .to_proposal(&Limits::default())
    .expect("a valid compaction");
    store
        .apply(LogIndex(keys as u64 + 1), &compact)
        .expect("compacted");
    // The compaction hands what it drops to another thread to free.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let live_only = live_bytes() - before;

    println!(
        "keys={keys} value_bytes={value_bytes} key_bytes_per_key={:.1} values={}",
        per_key(key_bytes),
        if copied { "copied" } else { "shared" }
    );
    println!(
        "allocated_per_key: store_and_log={:.1} store={:.1} log={:.1} live_keys={:.1} history={:.1}",
        per_key(store_and_log),
        per_key(store_alone),
        per_key(store_and_log - store_alone),
        per_key(live_only),
        per_key(store_alone - live_only)
    );
    println!(
        "rss_per_key_store_and_log={:.1} history_len={}",
        per_key(rss_store_and_log),
        store.history_len()
    );
}

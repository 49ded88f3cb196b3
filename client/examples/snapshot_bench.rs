//! Times writing and reading a snapshot of a store with history:
//! `cargo run --release -p raft_client --example snapshot_bench -- [KEYS] [VERSIONS]`
//! (100,000 keys × 10 versions of 64-byte values by default). Prints the
//! snapshot's size and the best of three write and read times.

use std::time::Instant;

use raft::LogIndex;
use raft_client::kv::{Command, KvStore, Limits};
use raft_proto::etcd::etcdserverpb::PutRequest;

fn main() {
    let mut arguments = std::env::args().skip(1);
    let keys: u64 = arguments
        .next()
        .map_or(100_000, |text| text.parse().expect("KEYS"));
    let versions: u64 = arguments
        .next()
        .map_or(10, |text| text.parse().expect("VERSIONS"));
    let mut store = KvStore::new();
    let value = vec![b'v'; 64];
    let mut index = 0;
    for _ in 0..versions {
        for key in 0..keys {
            index += 1;
            let put = Command::Put(PutRequest {
                key: format!("key/{key:08}").into_bytes(),
                value: value.clone(),
                ..PutRequest::default()
            });
            let entry = put.to_proposal(&Limits::default()).expect("a valid put");
            store.apply(LogIndex(index), &entry).expect("applied");
        }
    }
    let mut written = Vec::new();
    let mut write_best = f64::MAX;
    for _ in 0..3 {
        written.clear();
        let started = Instant::now();
        store.write_snapshot(&mut written).expect("written");
        write_best = write_best.min(started.elapsed().as_secs_f64());
    }
    let mut read_best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let read = KvStore::read_snapshot(&mut written.as_slice()).expect("read");
        read_best = read_best.min(started.elapsed().as_secs_f64());
        assert_eq!(read.digest(), store.digest());
    }
    println!(
        "keys={keys} versions={versions} history={} snapshot_bytes={} write_ms={:.1} read_ms={:.1}",
        store.history_len(),
        written.len(),
        write_best * 1e3,
        read_best * 1e3
    );
}

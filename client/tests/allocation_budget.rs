//! The node's allocation budget per put: a guard against losing speed
//! unnoticed, on the whole path a write takes.
//!
//! Three members run in this process (`raft_client::server::serve`, the
//! node `raft_client run` starts), and one client puts 256-byte values at
//! the leader through the etcd gRPC API, one at a time. What the process
//! allocates per put (client, gRPC, KV service, Raft, WAL, peer transport,
//! the followers, apply on three members, the answer) is counted and held
//! to a budget set from the code when it was written, with about 20%
//! headroom. Timing is not measured: it differs between machines and
//! drifts; allocations per put do not (the heartbeats are made rare, so
//! that they add next to nothing).
//!
//! One test in this binary: the counts are the whole process's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use raft::NodeId;
use raft_client::kv::Limits;
use raft_client::server::{serve, ServerOptions};
use raft_proto::etcd::etcdserverpb::kv_client::KvClient;
use raft_proto::etcd::etcdserverpb::maintenance_client::MaintenanceClient;
use raft_proto::etcd::etcdserverpb::{PutRequest, StatusRequest};
use tonic::transport::Channel;

/// Counts every allocation of the process; passes each to the system
/// allocator.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn count(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counting beside it never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// (allocations, bytes) since the process started.
fn counts() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// A port free on 127.0.0.1 now.
fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

fn options(id: u64, members: &BTreeMap<NodeId, String>, data: &std::path::Path) -> ServerOptions {
    let listen = members[&NodeId(id)].parse().expect("address");
    ServerOptions {
        id: NodeId(id),
        listen,
        members: members.clone(),
        data_directory: data.join(format!("node-{id}")),
        // Rare heartbeats: they allocate too, but not per put.
        election_timeout_min: Duration::from_millis(3_000),
        election_timeout_max: Duration::from_millis(6_000),
        heartbeat: Duration::from_millis(1_000),
        cluster_token: "allocation-budget".to_string(),
        limits: Limits::default(),
        snapshot_interval_entries: 10_000,
        snapshot_log_growth_ratio: 2,
        max_snapshot_bytes: raft::SnapshotPolicy::default().max_receive_bytes,
        metrics_address: None,
        join: false,
        tls: Default::default(),
        peer_port: None,
        auto_compaction: None,
        watch_progress_notify_interval: raft_client::server::watch::WatchSettings::default()
            .progress_notify_interval,
    }
}

/// The member that leads, once one does.
async fn leader(members: &BTreeMap<NodeId, String>) -> String {
    for _ in 0..400 {
        for address in members.values() {
            let Ok(channel) = Channel::from_shared(format!("http://{address}"))
                .expect("uri")
                .connect()
                .await
            else {
                continue;
            };
            let Ok(status) = MaintenanceClient::new(channel)
                .status(StatusRequest {})
                .await
            else {
                continue;
            };
            let status = status.into_inner();
            if status.leader != 0 && status.leader == status.header.map_or(0, |h| h.member_id) {
                return address.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader within 20 s");
}

async fn put(client: &mut KvClient<Channel>, number: u64) {
    client
        .put(PutRequest {
            key: format!("key-{number:06}").into_bytes(),
            value: vec![b'v'; 256],
            ..PutRequest::default()
        })
        .await
        .expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_allocates_within_its_budget() {
    let data = tempfile::tempdir().expect("data directory");
    let members: BTreeMap<NodeId, String> = (1..=3)
        .map(|id| (NodeId(id), free_address().to_string()))
        .collect();
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for id in 1..=3 {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        let options = options(id, &members, data.path());
        servers.push(tokio::spawn(serve(options, async move {
            let _ = stopped.await;
        })));
    }
    let leader = leader(&members).await;
    let channel = Channel::from_shared(format!("http://{leader}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the leader");
    let mut client = KvClient::new(channel);
    // Warm-up: connections, buffers and the store's first growth.
    for number in 0..500 {
        put(&mut client, number).await;
    }
    const PUTS: u64 = 2_000;
    let (allocations_before, bytes_before) = counts();
    for number in 500..500 + PUTS {
        put(&mut client, number).await;
    }
    let (allocations_after, bytes_after) = counts();
    for stop in stops {
        let _ = stop.send(());
    }
    for server in servers {
        server.await.expect("server task").expect("server");
    }
    let allocations = (allocations_after - allocations_before) as f64 / PUTS as f64;
    let bytes = (bytes_after - bytes_before) as f64 / PUTS as f64;
    println!(
        "per put, on three members and the client: {allocations:.1} allocations, {bytes:.0} bytes"
    );
    let where_to_look = "look for copies of a request, of entries or of messages on the \
        way (raft::Entries shares a batch between the log, the WAL, the peer streams and the \
        applier), and for buffers allocated per request instead of reused; the core alone \
        has its own budget (sim/tests/allocation_budget.rs), and `perf record -g` on a node \
        under `raft_client bench` shows where the time goes";
    assert!(
        allocations <= ALLOCATIONS_PER_PUT,
        "{allocations:.1} allocations per put, over the budget of {ALLOCATIONS_PER_PUT}: \
         {where_to_look}"
    );
    assert!(
        bytes <= BYTES_PER_PUT,
        "{bytes:.0} bytes allocated per put, over the budget of {BYTES_PER_PUT}: {where_to_look}"
    );
}

/// Measured when set: 119.4 allocations per put (the same in release and
/// test builds, run after run).
const ALLOCATIONS_PER_PUT: f64 = 143.0;

/// Measured when set: 57,800 bytes per put, of which 32,768 are tonic's
/// 8 KiB encode and decode buffers, two per call on each side.
const BYTES_PER_PUT: f64 = 69_500.0;

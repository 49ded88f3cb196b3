//! What the node tests share: a journal state machine and a cluster of
//! real nodes on 127.0.0.1.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use raft::node::{Node, NodeOptions, RequestFailure};
use raft::ClusterId;
use raft::{LogIndex, NodeId, Role, SnapshotMetadata, StateMachine, StateMachineSnapshot};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

/// A command the journal fails to apply.
pub const POISON: &[u8] = b"poison";

/// A command the journal takes [`SLOW_APPLY`] to apply, as a state machine
/// on a slow disk would.
pub const SLOW: &[u8] = b"slow";

/// How long the journal takes to apply [`SLOW`].
pub const SLOW_APPLY: Duration = Duration::from_millis(150);

/// Records every command, in order.
#[derive(Clone, Default)]
pub struct Journal {
    pub commands: Vec<Vec<u8>>,
    pub applied: LogIndex,
}

impl StateMachine for Journal {
    type Response = usize;
    type Error = io::Error;
    type Snapshot = Journal;

    fn apply(&mut self, index: LogIndex, command: &[u8]) -> io::Result<usize> {
        if command == POISON {
            return Err(io::Error::other("a poisoned command"));
        }
        if command == SLOW {
            std::thread::sleep(SLOW_APPLY);
        }
        self.commands.push(command.to_vec());
        self.applied = index;
        Ok(self.commands.len())
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&self) -> io::Result<Journal> {
        Ok(self.clone())
    }

    fn restore(
        &mut self,
        reader: &mut dyn io::Read,
        metadata: &SnapshotMetadata,
    ) -> io::Result<()> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        self.commands.clear();
        let mut rest = &bytes[..];
        while rest.len() >= 4 {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            self.commands.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        self.applied = metadata.index;
        Ok(())
    }
}

impl StateMachineSnapshot for Journal {
    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn write_to(&mut self, writer: &mut dyn io::Write) -> io::Result<()> {
        for command in &self.commands {
            writer.write_all(&(command.len() as u32).to_le_bytes())?;
            writer.write_all(command)?;
        }
        Ok(())
    }
}

pub struct Member {
    pub node: Node<Journal>,
    pub server: JoinHandle<()>,
}

pub struct Cluster {
    pub members: BTreeMap<NodeId, String>,
    pub listeners: BTreeMap<NodeId, SocketAddr>,
    pub running: BTreeMap<NodeId, Member>,
    pub directory: tempfile::TempDir,
    /// Snapshot every this many entries, keeping this many behind.
    pub snapshots: Option<(u64, u64)>,
    /// The policy's log growth ratio, when not the default.
    pub log_growth_ratio: Option<u64>,
    /// Changes every node's options before it starts.
    pub adjust: fn(&mut NodeOptions),
}

pub const LIMIT: Duration = Duration::from_secs(20);

impl Cluster {
    pub async fn new(size: u64) -> Cluster {
        Cluster::with_snapshots(size, None).await
    }

    pub async fn with_snapshots(size: u64, snapshots: Option<(u64, u64)>) -> Cluster {
        Cluster::adjusted(size, snapshots, |_| {}).await
    }

    /// A cluster whose nodes' options `adjust` changes.
    pub async fn adjusted(
        size: u64,
        snapshots: Option<(u64, u64)>,
        adjust: fn(&mut NodeOptions),
    ) -> Cluster {
        let mut members = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        for id in 1..=size {
            // Reserve a free port; the node binds it again when started.
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("address");
            members.insert(NodeId(id), address.to_string());
            listeners.insert(NodeId(id), address);
        }
        let mut cluster = Cluster {
            members,
            listeners,
            running: BTreeMap::new(),
            directory: tempfile::tempdir().expect("temporary directory"),
            snapshots,
            log_growth_ratio: None,
            adjust,
        };
        for id in 1..=size {
            cluster.start(NodeId(id)).await;
        }
        cluster
    }

    pub fn data(&self, id: NodeId) -> std::path::PathBuf {
        Path::new(self.directory.path()).join(format!("node-{id}"))
    }

    pub async fn start(&mut self, id: NodeId) {
        let mut options = NodeOptions::new(id, ClusterId(42), self.members.clone(), self.data(id));
        if let Some((interval, trailing)) = self.snapshots {
            options.snapshots.interval_entries = interval;
            options.snapshots.chunk_size_bytes = 64;
            options.raft.snapshot_trailing_entries = trailing;
        }
        if let Some(ratio) = self.log_growth_ratio {
            options.snapshots.log_growth_ratio = ratio;
        }
        (self.adjust)(&mut options);
        let node = Node::start(options, Journal::default()).expect("start node");
        let service = node.peer_service().expect("peer service");
        let listener = bind_retrying(self.listeners[&id]).await;
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        self.running.insert(id, Member { node, server });
    }

    pub async fn stop(&mut self, id: NodeId) {
        let member = self.running.remove(&id).expect("running");
        member.server.abort();
        let _ = member.server.await;
        member.node.shutdown().await;
    }

    /// Waits until every running node agrees on one leader.
    pub async fn leader(&self) -> NodeId {
        tokio::time::timeout(LIMIT, async {
            loop {
                let statuses: Vec<_> = self.running.values().map(|m| m.node.status()).collect();
                let leaders: Vec<_> = statuses.iter().filter(|s| s.role == Role::Leader).collect();
                if let [leader] = leaders.as_slice() {
                    if statuses.iter().all(|s| s.leader == Some(leader.id)) {
                        return leader.id;
                    }
                }
                // Wake on any status change.
                let mut watches: Vec<_> = self
                    .running
                    .values()
                    .map(|m| m.node.watch_status())
                    .collect();
                let changes = watches.iter_mut().map(|watch| Box::pin(watch.changed()));
                let _ = futures_select_any(changes.collect()).await;
            }
        })
        .await
        .expect("a leader is elected")
    }

    /// Stops every node, starts them all again, checks that a linearizable
    /// read sees `expected`, and stops them.
    pub async fn restart_all_and_expect(&mut self, expected: &[Vec<u8>]) {
        let ids: Vec<NodeId> = self.running.keys().copied().collect();
        for id in &ids {
            self.stop(*id).await;
        }
        for id in &ids {
            self.start(*id).await;
        }
        let leader = self.leader().await;
        let seen = self
            .node(leader)
            .read(|journal| journal.commands.clone())
            .await
            .expect("read after a full restart");
        assert_eq!(seen, expected);
        for id in ids {
            self.stop(id).await;
        }
    }

    pub fn node(&self, id: NodeId) -> &Node<Journal> {
        &self.running[&id].node
    }
}

pub async fn futures_select_any<F: std::future::Future + Unpin>(futures: Vec<F>) {
    // Resolves when the first of `futures` does (or after a short bound, so
    // a status that changed before we subscribed is re-read).
    let mut futures = futures;
    let bound = tokio::time::sleep(Duration::from_millis(50));
    tokio::pin!(bound);
    std::future::poll_fn(|context| {
        if bound.as_mut().poll(context).is_ready() {
            return std::task::Poll::Ready(());
        }
        for future in futures.iter_mut() {
            if std::pin::Pin::new(future).poll(context).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

pub async fn bind_retrying(address: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(address).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {address}");
}

/// Proposes at the leader, retrying while leadership settles.
pub async fn propose(cluster: &Cluster, command: &str) -> usize {
    tokio::time::timeout(LIMIT, async {
        loop {
            let leader = cluster.leader().await;
            match cluster
                .node(leader)
                .propose(command.as_bytes().to_vec().into())
                .await
            {
                Ok(count) => return count,
                Err(RequestFailure::NotLeader { .. } | RequestFailure::Indeterminate) => continue,
                Err(other) => panic!("proposal failed: {other}"),
            }
        }
    })
    .await
    .expect("the proposal commits")
}

//! Sending snapshots over the `InstallSnapshot` RPC: the leader reads its
//! latest snapshot file in chunks (one chunk in memory at a time) and
//! streams them on a call of their own beside the peer's message stream;
//! the follower ([`super::snapshot_receive`]) writes them to a temporary
//! file, checks the whole file, keeps it as a candidate and only then hands
//! its core the `InstallSnapshot` message. A transfer that breaks off
//! leaves nothing behind; the leader's core retries it later from the
//! start.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use raft_proto::raft as wire;
use raft_proto::raft::raft_peer_client::RaftPeerClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::core::message::Message;
use crate::storage::snapshot::{SnapshotSender, SnapshotStore};
use crate::transport::convert::snapshot_metadata_to_wire;
use crate::types::{ClusterId, LogIndex, NodeId};

/// The sending side of one node: its snapshots, and the peers a transfer
/// is running to, so that a retry does not start a second.
pub struct SnapshotSending {
    cluster: ClusterId,
    store: SnapshotStore,
    chunk_size_bytes: usize,
    sending: Arc<Mutex<BTreeSet<NodeId>>>,
}

impl SnapshotSending {
    /// Sends the snapshots of `store`, in chunks of `chunk_size_bytes`, as
    /// a member of `cluster`.
    pub fn new(
        cluster: ClusterId,
        store: SnapshotStore,
        chunk_size_bytes: usize,
    ) -> SnapshotSending {
        SnapshotSending {
            cluster,
            store,
            chunk_size_bytes,
            sending: Arc::default(),
        }
    }

    /// Streams the snapshot `message` (an `InstallSnapshot`) names to its
    /// addressee over `client`, in the background, unless a transfer to it
    /// is running already.
    pub(crate) fn send(&self, mut client: RaftPeerClient<Channel>, message: Message) {
        let to = message.to;
        {
            let mut sending = self
                .sending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !sending.insert(to) {
                return;
            }
        }
        let store = self.store.clone();
        let chunk_size = self.chunk_size_bytes;
        let cluster = self.cluster;
        let sending = self.sending.clone();
        tokio::spawn(async move {
            let result = stream_snapshot(&mut client, store, chunk_size, cluster, &message).await;
            match result {
                Ok(index) => tracing::info!(peer = %to, %index, "snapshot sent"),
                Err(reason) => tracing::warn!(peer = %to, %reason, "snapshot transfer failed"),
            }
            sending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&to);
        });
    }
}

async fn stream_snapshot(
    client: &mut RaftPeerClient<Channel>,
    store: SnapshotStore,
    chunk_size: usize,
    cluster: ClusterId,
    message: &Message,
) -> Result<LogIndex, String> {
    let file = tokio::task::spawn_blocking(move || store.latest())
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?
        .ok_or("there is no snapshot to send")?;
    let mut sender = SnapshotSender::new(&file, chunk_size).map_err(|error| error.to_string())?;
    let mut metadata = snapshot_metadata_to_wire(file.metadata());
    metadata.size = sender.size_bytes();
    let header = wire::Header {
        cluster_id: cluster.0,
        from: message.from.0,
        to: message.to.0,
        term: message.term.0,
    };
    let (chunks, stream) = mpsc::channel::<wire::InstallSnapshotChunk>(2);
    // Read chunks on a blocking thread; at most a few are in memory.
    let reader = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut first = true;
        while let Some(chunk) = sender.next_chunk().map_err(|error| error.to_string())? {
            let wire_chunk = wire::InstallSnapshotChunk {
                header: Some(header),
                metadata: first.then(|| metadata.clone()),
                offset: chunk.offset,
                data: chunk.data,
                done: chunk.done,
            };
            first = false;
            if chunks.blocking_send(wire_chunk).is_err() {
                return Err("the receiver closed the transfer".to_string());
            }
        }
        Ok(())
    });
    let answer = client
        .install_snapshot(ReceiverStream::new(stream))
        .await
        .map_err(|status| status.message().to_string());
    reader
        .await
        .map_err(|error| error.to_string())?
        .and(answer.map(|stored| LogIndex(stored.into_inner().last_included_index)))
}

//! Snapshot transfer for nodes without a snapshot store: such nodes never
//! take snapshots, so they never send one, and refuse to receive one.

use raft_proto::raft as wire;
use raft_proto::raft::raft_peer_client::RaftPeerClient;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::core::message::Message;
use crate::transport::{Admission, SnapshotSink, SnapshotSource};
use crate::types::LogIndex;

/// Refuses snapshot transfers in both directions, with a reason.
pub(crate) struct RefusedSnapshots;

impl SnapshotSource for RefusedSnapshots {
    fn send(&self, _client: RaftPeerClient<Channel>, message: Message) {
        tracing::error!(to = %message.to, "cannot send a snapshot: this node has no snapshot store");
    }
}

#[tonic::async_trait]
impl SnapshotSink for RefusedSnapshots {
    async fn receive(
        &self,
        _chunks: Streaming<wire::InstallSnapshotChunk>,
        _admission: &dyn Admission,
        _inbound: &mpsc::Sender<Message>,
    ) -> Result<LogIndex, Status> {
        Err(Status::failed_precondition(
            "this node has no snapshot store and cannot install snapshots",
        ))
    }
}

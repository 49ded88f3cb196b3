//! The receiving side of the peer transport: the `RaftPeer` gRPC service.
//!
//! Each peer keeps one long-lived stream open to this node; every message on
//! it is checked (cluster id, sender, addressee) and handed to the node's
//! event loop through a bounded queue, so a flood of messages slows its
//! sender (through HTTP/2 flow control) instead of growing memory.

use std::sync::Arc;

use raft_proto::raft as wire;
use raft_proto::raft::raft_peer_server::RaftPeer;
use tonic::{Request, Response, Status, Streaming};

use crate::transport::convert::{message_from_wire, Admission, WireError};
use crate::transport::inbound::InboundSender;
use crate::transport::snapshot_receive::{SnapshotReceiving, SnapshotRefused};

/// Told of every peer stream refused for a message that does not decode
/// or does not belong here: a counter and a rate-limited log, so that a
/// flood of refused streams floods neither.
pub type RefusalObserver = Arc<dyn Fn(&WireError) + Send + Sync>;

/// The `RaftPeer` service of one node.
pub struct PeerService {
    admission: Arc<dyn Admission>,
    inbound: InboundSender,
    snapshots: Arc<SnapshotReceiving>,
    refusals: RefusalObserver,
}

impl PeerService {
    /// A service that admits what `admission` allows and queues the
    /// messages on `inbound`; streamed snapshots go to `snapshots`.
    pub fn new(
        admission: Arc<dyn Admission>,
        inbound: InboundSender,
        snapshots: Arc<SnapshotReceiving>,
    ) -> PeerService {
        PeerService {
            admission,
            inbound,
            snapshots,
            refusals: Arc::new(|error: &WireError| {
                tracing::warn!(%error, "refusing a peer stream");
            }),
        }
    }

    /// Tells `observer`, instead of the log, of every stream refused.
    pub fn with_refusal_observer(mut self, observer: RefusalObserver) -> PeerService {
        self.refusals = observer;
        self
    }

    fn header(&self) -> Option<wire::Header> {
        Some(wire::Header {
            cluster_id: self.admission.cluster().0,
            from: self.admission.node().0,
            to: 0,
            term: 0,
        })
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn stream(
        &self,
        request: Request<Streaming<wire::PeerMessage>>,
    ) -> Result<Response<wire::StreamClosed>, Status> {
        let remote = request.remote_addr();
        let mut stream = request.into_inner();
        let mut received = 0u64;
        while let Some(message) = stream.message().await? {
            let message = match message_from_wire(message, self.admission.as_ref()) {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(?remote, %error, "refusing a peer stream");
                    (self.refusals)(&error);
                    return Err(Status::permission_denied(error.to_string()));
                }
            };
            received += 1;
            if self.inbound.send(message).await.is_err() {
                return Err(Status::unavailable("this node is shutting down"));
            }
        }
        Ok(Response::new(wire::StreamClosed {
            header: self.header(),
            messages_received: received,
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<wire::InstallSnapshotChunk>>,
    ) -> Result<Response<wire::SnapshotStored>, Status> {
        let remote = request.remote_addr();
        let stream = request.into_inner();
        match self
            .snapshots
            .receive(stream, self.admission.as_ref(), &self.inbound)
            .await
        {
            Ok(index) => Ok(Response::new(wire::SnapshotStored {
                header: self.header(),
                last_included_index: index.0,
            })),
            Err(SnapshotRefused::NotAdmitted(error)) => {
                tracing::debug!(?remote, %error, "refusing a snapshot transfer");
                (self.refusals)(&error);
                Err(Status::permission_denied(error.to_string()))
            }
            Err(SnapshotRefused::Failed(status)) => {
                tracing::warn!(?remote, %status, "a snapshot transfer failed");
                Err(status)
            }
        }
    }
}

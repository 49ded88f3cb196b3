//! Where a streamed snapshot goes on the receiving node.

use raft_proto::raft as wire;
use tonic::{Status, Streaming};

use crate::transport::convert::{Admission, WireError};
use crate::transport::inbound::InboundSender;
use crate::types::LogIndex;

/// Receives a snapshot streamed by a leader: stores it durably, then hands
/// the core its `InstallSnapshot` message through `inbound`.
#[tonic::async_trait]
pub trait SnapshotSink: Send + Sync + 'static {
    /// Reads every chunk of `chunks`, checking the sender with
    /// `admission`; returns the index the stored snapshot covers.
    async fn receive(
        &self,
        chunks: Streaming<wire::InstallSnapshotChunk>,
        admission: &dyn Admission,
        inbound: &InboundSender,
    ) -> Result<LogIndex, SnapshotRefused>;
}

/// Why a snapshot transfer was not taken.
#[derive(Debug)]
pub enum SnapshotRefused {
    /// Its header does not belong here (counted and logged as a refused
    /// peer stream is).
    NotAdmitted(WireError),
    /// It broke off, broke a rule or could not be stored.
    Failed(Status),
}

impl From<WireError> for SnapshotRefused {
    fn from(error: WireError) -> SnapshotRefused {
        SnapshotRefused::NotAdmitted(error)
    }
}

impl From<Status> for SnapshotRefused {
    fn from(status: Status) -> SnapshotRefused {
        SnapshotRefused::Failed(status)
    }
}

//! Errors of a running node.

use thiserror::Error;

use crate::core::membership_change::MembershipRefusal;
use crate::error::{CoreError, RequestError};
use crate::storage::StorageError;
use crate::types::NodeId;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The options are inconsistent.
    #[error("invalid node options: {0}")]
    Options(String),
    /// The data directory could not be opened or recovered.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The recovered state does not fit the core.
    #[error("the recovered state is inconsistent: {0}")]
    Core(#[from] CoreError),
    /// The latest snapshot could not be restored into the state machine.
    #[error("cannot restore the state machine from the latest snapshot: {0}")]
    Restore(String),
}

/// Why a proposal or a read did not succeed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RequestFailure {
    /// This node is not the leader; nothing happened. Retry at the leader.
    #[error("this node is not the leader{}", match leader_hint {
        Some(leader) => format!("; the leader is probably {leader}"),
        None => "; no leader is known".to_string(),
    })]
    NotLeader {
        /// The node this node believes is the leader.
        leader_hint: Option<NodeId>,
    },
    /// The proposal may or may not take effect: leadership changed after it
    /// was appended, or the state machine moved past it by a snapshot.
    #[error("the outcome of the request is unknown (leadership changed after it was accepted)")]
    Indeterminate,
    /// Another leader's entry replaced the proposal: it did not take effect.
    #[error("the proposal was overwritten by another leader's entry and did not take effect")]
    Lost,
    /// The configuration change cannot be made now; it had no effect.
    #[error("the configuration change was refused: {0}")]
    MembershipChangeRefused(MembershipRefusal),
    /// Too many requests are waiting; retry later.
    #[error("the node is overloaded: too many requests in flight")]
    Overloaded,
    /// The node is stopping or has stopped.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The node stopped after a failure of its storage or state machine.
    #[error("the node stopped after a failure: {0}")]
    NodeFailed(String),
}

impl From<RequestError> for RequestFailure {
    fn from(error: RequestError) -> RequestFailure {
        match error {
            RequestError::NotLeader { leader_hint } => RequestFailure::NotLeader { leader_hint },
            RequestError::LeadershipLost { .. } => RequestFailure::Indeterminate,
            RequestError::MembershipChangeRefused(refusal) => {
                RequestFailure::MembershipChangeRefused(refusal)
            }
            // Had no effect; the target is about to lead.
            RequestError::TransferringLeadership { target } => RequestFailure::NotLeader {
                leader_hint: Some(target),
            },
        }
    }
}

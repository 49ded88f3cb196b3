//! Mapping node and store errors to gRPC statuses the way etcd clients
//! expect: `Unavailable` (which they retry) when there is no leader or the
//! outcome is unknown, the error's own class otherwise.

use raft::node::RequestFailure;
use tonic::{Code, Status};

use crate::kv::{ErrorClass, KvError};

/// The status of a store error.
pub fn kv_status(error: &KvError) -> Status {
    let code = match error.class() {
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::Unimplemented => Code::Unimplemented,
        ErrorClass::OutOfRange => Code::OutOfRange,
        ErrorClass::Internal => Code::Internal,
    };
    Status::new(code, error.to_string())
}

/// The status of a request the node could not complete.
pub fn failure_status(failure: &RequestFailure) -> Status {
    match failure {
        RequestFailure::NotLeader { leader_hint: None } => {
            Status::unavailable("etcdserver: no leader")
        }
        RequestFailure::NotLeader {
            leader_hint: Some(leader),
        } => Status::unavailable(format!(
            "etcdserver: not the leader and the request cannot be forwarded; the leader is {leader}"
        )),
        RequestFailure::Indeterminate => Status::unavailable(
            "etcdserver: leader changed; the request may or may not have been applied",
        ),
        RequestFailure::Lost => {
            Status::unavailable("etcdserver: leader changed; the request was not applied, retry it")
        }
        RequestFailure::MembershipChangeRefused(refusal) => {
            Status::failed_precondition(format!("etcdserver: {refusal}"))
        }
        RequestFailure::Overloaded => Status::resource_exhausted("etcdserver: too many requests"),
        RequestFailure::ShuttingDown => Status::unavailable("etcdserver: server stopped"),
        RequestFailure::NodeFailed(reason) => Status::internal(format!(
            "etcdserver: the member stopped after a failure: {reason}"
        )),
    }
}

/// The status of an API feature that is not built yet.
pub fn not_built(feature: &str) -> Status {
    Status::unimplemented(format!(
        "{feature} is not implemented by RustyRaft yet; see the README for what is supported"
    ))
}

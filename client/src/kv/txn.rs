//! Transactions: every guard is decided on the store as it was before the
//! transaction, then the chosen branch runs in order.

use raft_proto::etcd::etcdserverpb::{
    request_op, response_op, ResponseOp, TxnRequest, TxnResponse,
};

use super::error::KvError;
use super::store::{header, KvStore, PendingWrite};

/// Which branch a transaction takes, and the decisions of the transactions
/// nested in that branch, in order. Deciding the whole tree before the first
/// write is etcd's rule: a nested guard does not see the writes of the
/// operations before it.
struct Decision {
    succeeded: bool,
    nested: Vec<Decision>,
}

impl KvStore {
    /// Runs a validated transaction. Headers of ranges carry the revision
    /// they read at; the others are set by [`set_write_revisions`] once the
    /// final revision is known. A range on the branches taken that reads at
    /// a revision the store cannot give (a future one, or one compacted
    /// away) fails the whole transaction before anything is written, as in
    /// etcd; ranges on branches not taken are not checked.
    pub(super) fn txn(
        &mut self,
        request: &TxnRequest,
        pending: &mut PendingWrite,
    ) -> Result<TxnResponse, KvError> {
        let decision = self.decide(request);
        self.check_reads(request, &decision)?;
        Ok(self.run(request, &decision, pending))
    }

    /// Whether every range on the branches `decision` takes can be read.
    fn check_reads(&self, request: &TxnRequest, decision: &Decision) -> Result<(), KvError> {
        let branch = if decision.succeeded {
            &request.success
        } else {
            &request.failure
        };
        let mut nested_decisions = decision.nested.iter();
        for operation in branch {
            match &operation.request {
                Some(request_op::Request::RequestRange(range)) => {
                    self.check_read_revision(range.revision)?
                }
                Some(request_op::Request::RequestTxn(nested)) => {
                    if let Some(nested_decision) = nested_decisions.next() {
                        self.check_reads(nested, nested_decision)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn decide(&self, request: &TxnRequest) -> Decision {
        let succeeded = request
            .compare
            .iter()
            .all(|comparison| self.compare_holds(comparison));
        let branch = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        let nested = branch
            .iter()
            .filter_map(|operation| match &operation.request {
                Some(request_op::Request::RequestTxn(nested)) => Some(self.decide(nested)),
                _ => None,
            })
            .collect();
        Decision { succeeded, nested }
    }

    fn run(
        &mut self,
        request: &TxnRequest,
        decision: &Decision,
        pending: &mut PendingWrite,
    ) -> TxnResponse {
        let branch = if decision.succeeded {
            &request.success
        } else {
            &request.failure
        };
        let mut nested_decisions = decision.nested.iter();
        let mut responses = Vec::with_capacity(branch.len());
        for operation in branch {
            let response = match &operation.request {
                Some(request_op::Request::RequestRange(range)) => {
                    let revision = if pending.changed {
                        pending.revision
                    } else {
                        self.revision
                    };
                    Some(response_op::Response::ResponseRange(
                        self.read_at(range, revision),
                    ))
                }
                Some(request_op::Request::RequestPut(put)) => Some(
                    response_op::Response::ResponsePut(self.put(put, None, pending)),
                ),
                Some(request_op::Request::RequestDeleteRange(delete)) => Some(
                    response_op::Response::ResponseDeleteRange(self.delete_range(delete, pending)),
                ),
                Some(request_op::Request::RequestTxn(nested)) => {
                    let response = match nested_decisions.next() {
                        Some(nested_decision) => self.run(nested, nested_decision, pending),
                        // Unreachable: `decide` made one decision per nested
                        // transaction of this branch. Deciding now keeps the
                        // store total instead of panicking.
                        None => {
                            let nested_decision = self.decide(nested);
                            self.run(nested, &nested_decision, pending)
                        }
                    };
                    Some(response_op::Response::ResponseTxn(response))
                }
                // Validation refuses empty operations before execution.
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        TxnResponse {
            header: None,
            succeeded: decision.succeeded,
            responses,
        }
    }
}

/// Sets `revision` (the store's revision after the transaction) in the
/// headers of the transaction and of its writes, nested ones included.
pub(super) fn set_write_revisions(response: &mut TxnResponse, revision: i64) {
    response.header = header(revision);
    for operation in &mut response.responses {
        match &mut operation.response {
            Some(response_op::Response::ResponsePut(inner)) => inner.header = header(revision),
            Some(response_op::Response::ResponseDeleteRange(inner)) => {
                inner.header = header(revision)
            }
            Some(response_op::Response::ResponseTxn(inner)) => set_write_revisions(inner, revision),
            Some(response_op::Response::ResponseRange(_)) | None => {}
        }
    }
}

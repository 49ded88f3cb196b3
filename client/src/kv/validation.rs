//! The rules a request must follow before it may touch the store.
//!
//! Two kinds of check live here, and the split matters for determinism:
//!
//! - The request's own rules (`validate_*`): empty keys, backwards ranges,
//!   duplicate keys in a transaction, unknown enum values, unsupported
//!   features. They depend on nothing but the request, so every replica
//!   reaches the same verdict, and [`crate::kv::KvStore::apply`] runs them
//!   again on each command.
//! - The node's configured [`Limits`] (request size, operations per
//!   transaction). Nodes may be configured differently, so these are checked
//!   only once, by the node that proposes the command
//!   ([`crate::kv::Command::to_proposal`]), never at apply time: a replica
//!   with a smaller limit must not refuse an entry the others applied.

use std::collections::BTreeSet;

use raft_proto::etcd::etcdserverpb::{
    compare, range_request, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

use super::error::{InvalidRequest, KvError, Unsupported};
use super::key_range::KeyRange;

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024 + 512 * 1024;

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPERATIONS: usize = 128;

/// Per-node limits on what a client may propose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded write request accepted.
    pub max_request_bytes: usize,
    /// Most compares, or operations in one branch, of a transaction
    /// (checked at every nesting level).
    pub max_txn_operations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_txn_operations: DEFAULT_MAX_TXN_OPERATIONS,
        }
    }
}

impl Limits {
    /// Refuses an encoded request larger than [`Limits::max_request_bytes`].
    pub fn check_size(&self, size_bytes: usize) -> Result<(), InvalidRequest> {
        if size_bytes > self.max_request_bytes {
            return Err(InvalidRequest::RequestTooLarge {
                size_bytes,
                limit_bytes: self.max_request_bytes,
            });
        }
        Ok(())
    }

    /// Refuses a transaction whose compare list or either branch (at any
    /// nesting level) is longer than [`Limits::max_txn_operations`].
    pub fn check_txn(&self, request: &TxnRequest) -> Result<(), InvalidRequest> {
        let longest = request
            .compare
            .len()
            .max(request.success.len())
            .max(request.failure.len());
        if longest > self.max_txn_operations {
            return Err(InvalidRequest::TooManyOperations {
                count: longest,
                limit: self.max_txn_operations,
            });
        }
        nested_txns(request).try_for_each(|nested| self.check_txn(nested))
    }
}

/// A range request's rules: a non-empty key, a forward range, and known sort
/// options. The requested revision is checked against the store by
/// [`crate::kv::KvStore::range`].
pub fn validate_range(request: &RangeRequest) -> Result<(), KvError> {
    KeyRange::check(&request.key, &request.range_end)?;
    if range_request::SortOrder::try_from(request.sort_order).is_err()
        || range_request::SortTarget::try_from(request.sort_target).is_err()
    {
        return Err(InvalidRequest::InvalidSortOption.into());
    }
    Ok(())
}

/// A put's rules: a non-empty key, no value or lease alongside the matching
/// `ignore_` flag; then the features not built yet (leases, `ignore_value`,
/// `ignore_lease`).
pub fn validate_put(request: &PutRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(InvalidRequest::EmptyKey.into());
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(InvalidRequest::ValueProvided.into());
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(InvalidRequest::LeaseProvided.into());
    }
    if request.ignore_value {
        return Err(Unsupported::IgnoreValue.into());
    }
    if request.ignore_lease {
        return Err(Unsupported::IgnoreLease.into());
    }
    if request.lease != 0 {
        return Err(Unsupported::Leases {
            lease: request.lease,
        }
        .into());
    }
    Ok(())
}

/// A delete's rules: a non-empty key and a forward range.
pub fn validate_delete_range(request: &DeleteRangeRequest) -> Result<(), KvError> {
    KeyRange::check(&request.key, &request.range_end)?;
    Ok(())
}

/// A transaction's rules: every compare and every operation of both branches
/// (nested transactions included) is valid, and no branch writes a key twice.
pub fn validate_txn(request: &TxnRequest) -> Result<(), KvError> {
    request.compare.iter().try_for_each(validate_compare)?;
    for operation in request.success.iter().chain(&request.failure) {
        match &operation.request {
            None => return Err(InvalidRequest::EmptyOperation.into()),
            Some(request_op::Request::RequestRange(range)) => validate_range(range)?,
            Some(request_op::Request::RequestPut(put)) => validate_put(put)?,
            Some(request_op::Request::RequestDeleteRange(delete)) => validate_delete_range(delete)?,
            Some(request_op::Request::RequestTxn(nested)) => validate_txn(nested)?,
        }
    }
    branch_writes(&request.success)?;
    branch_writes(&request.failure)?;
    Ok(())
}

fn validate_compare(comparison: &Compare) -> Result<(), KvError> {
    KeyRange::check(&comparison.key, &comparison.range_end)?;
    if compare::CompareResult::try_from(comparison.result).is_err() {
        return Err(InvalidRequest::InvalidCompare {
            reason: format!("unknown result {}", comparison.result),
        }
        .into());
    }
    if compare::CompareTarget::try_from(comparison.target).is_err() {
        return Err(InvalidRequest::InvalidCompare {
            reason: format!("unknown target {}", comparison.target),
        }
        .into());
    }
    Ok(())
}

/// The keys one branch may write, gathered to enforce etcd's rule that a
/// transaction never writes a key twice.
struct BranchWrites {
    puts: BTreeSet<Vec<u8>>,
    deletes: Vec<KeyRange>,
}

impl BranchWrites {
    fn deletes_key(&self, key: &[u8]) -> bool {
        self.deletes.iter().any(|range| range.contains(key))
    }
}

/// Collects a branch's writes, refusing a key put twice or put inside a
/// deleted range. The two branches of a nested transaction exclude each
/// other, so they may write the same key; each is checked against the writes
/// gathered so far at this level. Overlapping deletes are allowed.
fn branch_writes(operations: &[RequestOp]) -> Result<BranchWrites, InvalidRequest> {
    let mut writes = BranchWrites {
        puts: BTreeSet::new(),
        deletes: operations
            .iter()
            .filter_map(|operation| match &operation.request {
                Some(request_op::Request::RequestDeleteRange(delete)) => {
                    Some(KeyRange::new(&delete.key, &delete.range_end))
                }
                _ => None,
            })
            .collect(),
    };
    for operation in operations {
        let Some(request_op::Request::RequestTxn(nested)) = &operation.request else {
            continue;
        };
        let success = branch_writes(&nested.success)?;
        let failure = branch_writes(&nested.failure)?;
        for key in success.puts.iter().chain(&failure.puts) {
            if writes.puts.contains(key) || writes.deletes_key(key) {
                return Err(InvalidRequest::DuplicateKey);
            }
        }
        writes.puts.extend(success.puts);
        writes.puts.extend(failure.puts);
        writes.deletes.extend(success.deletes);
        writes.deletes.extend(failure.deletes);
    }
    for operation in operations {
        let Some(request_op::Request::RequestPut(put)) = &operation.request else {
            continue;
        };
        if writes.deletes_key(&put.key) || !writes.puts.insert(put.key.clone()) {
            return Err(InvalidRequest::DuplicateKey);
        }
    }
    Ok(writes)
}

/// The transactions nested directly in either branch of `request`.
fn nested_txns(request: &TxnRequest) -> impl Iterator<Item = &TxnRequest> {
    request
        .success
        .iter()
        .chain(&request.failure)
        .filter_map(|operation| match &operation.request {
            Some(request_op::Request::RequestTxn(nested)) => Some(nested),
            _ => None,
        })
}

//! Request builders and a store that applies commands at consecutive log
//! indexes, shared by the tests.

use raft::LogIndex;
use raft_proto::etcd::etcdserverpb::{
    compare, range_request, request_op, Compare, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use raft_proto::etcd::mvccpb::KeyValue;

use crate::kv::members::MemberAttributes;
use crate::kv::{Command, CommandResponse, KvError, KvStore};

/// A store plus the next log index to apply at.
pub(super) struct Replica {
    pub(super) store: KvStore,
    next_index: u64,
}

impl Replica {
    pub(super) fn new() -> Replica {
        Replica {
            store: KvStore::new(),
            next_index: 1,
        }
    }

    /// Encodes and applies `command` at the next log index.
    pub(super) fn apply(&mut self, command: Command) -> Result<CommandResponse, KvError> {
        let index = LogIndex(self.next_index);
        self.next_index += 1;
        self.store.apply(index, &command.into_bytes())
    }

    pub(super) fn put(&mut self, key: &str, value: &str) -> PutResponse {
        match self.apply(Command::Put(put_request(key, value))) {
            Ok(CommandResponse::Put(response)) => response,
            other => panic!("put {key}: unexpected {other:?}"),
        }
    }

    pub(super) fn put_request(&mut self, request: PutRequest) -> Result<PutResponse, KvError> {
        match self.apply(Command::Put(request))? {
            CommandResponse::Put(response) => Ok(response),
            other => panic!("put: unexpected {other:?}"),
        }
    }

    /// Publishes `urls` as member `member`'s client URLs.
    pub(super) fn publish(&mut self, member: u64, urls: &[&str]) -> Result<(), KvError> {
        let attributes = MemberAttributes {
            member_id: member,
            client_urls: urls.iter().map(|url| url.to_string()).collect(),
        };
        match self.apply(Command::Publish(attributes))? {
            CommandResponse::Published(_) => Ok(()),
            other => panic!("publish: unexpected {other:?}"),
        }
    }

    pub(super) fn delete(&mut self, request: DeleteRangeRequest) -> DeleteRangeResponse {
        match self.apply(Command::DeleteRange(request)) {
            Ok(CommandResponse::DeleteRange(response)) => response,
            other => panic!("delete: unexpected {other:?}"),
        }
    }

    pub(super) fn txn(&mut self, request: TxnRequest) -> Result<TxnResponse, KvError> {
        match self.apply(Command::Txn(request))? {
            CommandResponse::Txn(response) => Ok(response),
            other => panic!("txn: unexpected {other:?}"),
        }
    }

    /// The key-value stored under `key`, if live.
    pub(super) fn get(&self, key: &str) -> Option<KeyValue> {
        self.range(range_request(key, "")).kvs.into_iter().next()
    }

    pub(super) fn range(&self, request: RangeRequest) -> RangeResponse {
        self.store.range(&request).expect("valid range request")
    }

    /// The keys a range returns, as strings.
    pub(super) fn keys(&self, request: RangeRequest) -> Vec<String> {
        self.range(request)
            .kvs
            .iter()
            .map(|key_value| String::from_utf8_lossy(&key_value.key).into_owned())
            .collect()
    }
}

pub(super) fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..PutRequest::default()
    }
}

pub(super) fn range_request(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end.as_bytes().to_vec(),
        ..RangeRequest::default()
    }
}

pub(super) fn sorted_range_request(
    key: &str,
    range_end: &str,
    order: range_request::SortOrder,
    target: range_request::SortTarget,
) -> RangeRequest {
    RangeRequest {
        sort_order: order as i32,
        sort_target: target as i32,
        ..range_request(key, range_end)
    }
}

pub(super) fn delete_request(key: &str, range_end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end.as_bytes().to_vec(),
        ..DeleteRangeRequest::default()
    }
}

/// A compare of `target` of `key` against `operand`.
pub(super) fn compare(
    key: &str,
    target: compare::CompareTarget,
    result: compare::CompareResult,
    operand: compare::TargetUnion,
) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(operand),
    }
}

pub(super) fn compare_version(key: &str, result: compare::CompareResult, version: i64) -> Compare {
    compare(
        key,
        compare::CompareTarget::Version,
        result,
        compare::TargetUnion::Version(version),
    )
}

pub(super) fn compare_value(key: &str, result: compare::CompareResult, value: &str) -> Compare {
    compare(
        key,
        compare::CompareTarget::Value,
        result,
        compare::TargetUnion::Value(value.as_bytes().to_vec()),
    )
}

pub(super) fn put_operation(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_request(key, value))),
    }
}

pub(super) fn range_operation(key: &str, range_end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range_request(
            key, range_end,
        ))),
    }
}

pub(super) fn delete_operation(key: &str, range_end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(delete_request(
            key, range_end,
        ))),
    }
}

pub(super) fn txn_operation(request: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(request)),
    }
}

pub(super) fn txn_request(
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

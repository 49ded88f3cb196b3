//! Short ways to build the etcd requests the tests send.

use raft_client::kv::prefix_end;
use raft_proto::etcd::etcdserverpb::kv_client::KvClient;
use raft_proto::etcd::etcdserverpb::{
    compare, request_op, Compare, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
};
use tonic::transport::Channel;

/// A put of `key` = `value`.
pub fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..PutRequest::default()
    }
}

/// A linearizable read of one key.
pub fn get_request(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        ..RangeRequest::default()
    }
}

/// A linearizable read of every key that starts with `prefix`.
pub fn prefix_request(prefix: &str) -> RangeRequest {
    RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix.as_bytes()),
        ..RangeRequest::default()
    }
}

/// A linearizable read of the whole key space.
pub fn everything_request() -> RangeRequest {
    RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..RangeRequest::default()
    }
}

/// A transaction operation that puts `key` = `value`.
pub fn put_operation(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_request(key, value))),
    }
}

/// A transaction operation that reads `key`.
pub fn get_operation(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(get_request(key))),
    }
}

/// A compare of `key`'s value with `value` by `result`.
pub fn value_compare(key: &str, result: compare::CompareResult, value: &str) -> Compare {
    Compare {
        key: key.as_bytes().to_vec(),
        result: result.into(),
        target: compare::CompareTarget::Value.into(),
        target_union: Some(compare::TargetUnion::Value(value.as_bytes().to_vec())),
        range_end: Vec::new(),
    }
}

/// A compare of `key`'s version with `version` by `result`.
pub fn version_compare(key: &str, result: compare::CompareResult, version: i64) -> Compare {
    Compare {
        key: key.as_bytes().to_vec(),
        result: result.into(),
        target: compare::CompareTarget::Version.into(),
        target_union: Some(compare::TargetUnion::Version(version)),
        range_end: Vec::new(),
    }
}

/// Puts `key` = `value`; panics on failure.
pub async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> PutResponse {
    kv.put(put_request(key, value))
        .await
        .unwrap_or_else(|status| panic!("put {key:?}: {status}"))
        .into_inner()
}

/// Reads with `request`; panics on failure.
pub async fn range(kv: &mut KvClient<Channel>, request: RangeRequest) -> RangeResponse {
    let key = String::from_utf8_lossy(&request.key).into_owned();
    kv.range(request)
        .await
        .unwrap_or_else(|status| panic!("range from {key:?}: {status}"))
        .into_inner()
}

/// The keys of a read, as text.
pub fn keys(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

/// The values of a read, as text.
pub fn values(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .collect()
}

/// The revision in a response header (0 without a header).
pub fn revision_of(header: &Option<raft_proto::etcd::etcdserverpb::ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |header| header.revision)
}

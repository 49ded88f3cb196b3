//! Wire-format checks of the etcd API subset: etcd clients only understand us
//! if field numbers and types match etcd's, so a few messages are compared
//! byte for byte with encodings worked out by hand from the field numbers.

use prost::Message;
use raft_proto::etcd::etcdserverpb::{
    compare, request_op, Compare, Member, PutRequest, RangeRequest, RequestOp, ResponseHeader,
};
use raft_proto::etcd::mvccpb::KeyValue;

#[test]
fn put_request_uses_etcd_field_numbers() {
    let request = PutRequest {
        key: b"a".to_vec(),
        value: b"b".to_vec(),
        lease: 5,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: true,
    };
    // key=1 (bytes), value=2 (bytes), lease=3 (varint), prev_kv=4, ignore_lease=6.
    let expected = [0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 5, 0x20, 1, 0x30, 1];
    assert_eq!(request.encode_to_vec(), expected);
}

#[test]
fn range_request_filters_use_fields_ten_to_thirteen() {
    let request = RangeRequest {
        key: b"k".to_vec(),
        count_only: true,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: 4,
        ..RangeRequest::default()
    };
    let expected = [0x0a, 1, b'k', 0x48, 1, 0x50, 1, 0x58, 2, 0x60, 3, 0x68, 4];
    assert_eq!(request.encode_to_vec(), expected);
}

#[test]
fn compare_range_end_is_field_sixty_four() {
    let comparison = Compare {
        result: compare::CompareResult::NotEqual as i32,
        target: compare::CompareTarget::Value as i32,
        key: b"k".to_vec(),
        range_end: b"z".to_vec(),
        target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
    };
    // result=1 is 3 (NOT_EQUAL), target=2 is 3 (VALUE), key=3, value=7, and
    // range_end=64 takes a two-byte tag: (64 << 3 | 2) = 0x202 -> 0x82 0x04.
    let expected = [
        0x08, 3, 0x10, 3, 0x1a, 1, b'k', 0x3a, 1, b'v', 0x82, 0x04, 1, b'z',
    ];
    assert_eq!(comparison.encode_to_vec(), expected);
}

#[test]
fn nested_transaction_is_request_op_field_four() {
    let operation = RequestOp {
        request: Some(request_op::Request::RequestTxn(Default::default())),
    };
    assert_eq!(operation.encode_to_vec(), [0x22, 0]);
}

#[test]
fn key_value_and_header_field_numbers() {
    let key_value = KeyValue {
        key: b"k".to_vec(),
        create_revision: 2,
        mod_revision: 3,
        version: 4,
        value: b"v".to_vec(),
        lease: 6,
    };
    let expected = [
        0x0a, 1, b'k', 0x10, 2, 0x18, 3, 0x20, 4, 0x2a, 1, b'v', 0x30, 6,
    ];
    assert_eq!(key_value.encode_to_vec(), expected);

    let header = ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision: 3,
        raft_term: 4,
    };
    assert_eq!(header.encode_to_vec(), [0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4]);
}

#[test]
fn member_keeps_etcd_camel_case_fields() {
    let member = Member {
        id: 7,
        name: "n".to_string(),
        peer_ur_ls: vec!["p".to_string()],
        client_ur_ls: vec!["c".to_string()],
        is_learner: true,
    };
    let expected = [
        0x08, 7, 0x12, 1, b'n', 0x1a, 1, b'p', 0x22, 1, b'c', 0x28, 1,
    ];
    assert_eq!(member.encode_to_vec(), expected);
}

#[test]
fn services_carry_etcd_grpc_names() {
    use raft_proto::etcd::etcdserverpb::{
        cluster_server, kv_server, lease_server, maintenance_server, watch_server,
    };
    // Clients call `/<service name>/<method>`, so these must be etcd's names.
    assert_eq!(kv_server::SERVICE_NAME, "etcdserverpb.KV");
    assert_eq!(watch_server::SERVICE_NAME, "etcdserverpb.Watch");
    assert_eq!(lease_server::SERVICE_NAME, "etcdserverpb.Lease");
    assert_eq!(cluster_server::SERVICE_NAME, "etcdserverpb.Cluster");
    assert_eq!(maintenance_server::SERVICE_NAME, "etcdserverpb.Maintenance");
}

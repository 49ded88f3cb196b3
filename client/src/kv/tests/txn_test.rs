//! Transactions: compares (on missing keys too), branches, revisions, nested
//! transactions and the duplicate-key rule.

use raft_proto::etcd::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raft_proto::etcd::etcdserverpb::{
    request_op, response_op, Compare, PutRequest, RequestOp, TxnRequest, TxnResponse,
};

use super::support::{
    compare, compare_value, compare_version, delete_operation, put_operation, put_request,
    range_operation, range_request, txn_operation, txn_request, Replica,
};
use crate::kv::{CommandResponse, HeaderFields, InvalidRequest, KvError, Unsupported};

/// Runs a transaction guarded by `comparison` alone and says whether it held.
fn guard_holds(replica: &mut Replica, comparison: Compare) -> bool {
    let response = replica
        .txn(txn_request(vec![comparison], vec![], vec![]))
        .unwrap();
    response.succeeded
}

fn number_compare(key: &str, target: CompareTarget, result: CompareResult, number: i64) -> Compare {
    let operand = match target {
        CompareTarget::Version => TargetUnion::Version(number),
        CompareTarget::Create => TargetUnion::CreateRevision(number),
        CompareTarget::Mod => TargetUnion::ModRevision(number),
        CompareTarget::Lease => TargetUnion::Lease(number),
        CompareTarget::Value => unreachable!("value compares take bytes"),
    };
    compare(key, target, result, operand)
}

#[test]
fn a_missing_key_compares_as_zero_for_numbers() {
    let mut replica = Replica::new();
    for target in [
        CompareTarget::Version,
        CompareTarget::Create,
        CompareTarget::Mod,
        CompareTarget::Lease,
    ] {
        let holds = |replica: &mut Replica, result, number| {
            guard_holds(replica, number_compare("missing", target, result, number))
        };
        assert!(
            holds(&mut replica, CompareResult::Equal, 0),
            "{target:?} = 0"
        );
        assert!(
            holds(&mut replica, CompareResult::Less, 1),
            "{target:?} < 1"
        );
        assert!(
            !holds(&mut replica, CompareResult::Greater, 0),
            "{target:?} > 0"
        );
        assert!(
            !holds(&mut replica, CompareResult::NotEqual, 0),
            "{target:?} != 0"
        );
    }
}

#[test]
fn a_value_compare_on_a_missing_key_is_false_whatever_the_result() {
    let mut replica = Replica::new();
    for result in [
        CompareResult::Equal,
        CompareResult::NotEqual,
        CompareResult::Greater,
        CompareResult::Less,
    ] {
        assert!(!guard_holds(
            &mut replica,
            compare_value("missing", result, "")
        ));
        assert!(!guard_holds(
            &mut replica,
            compare_value("missing", result, "x")
        ));
    }
}

#[test]
fn value_compares_order_bytes() {
    let mut replica = Replica::new();
    replica.put("k", "m");
    assert!(guard_holds(
        &mut replica,
        compare_value("k", CompareResult::Equal, "m")
    ));
    assert!(guard_holds(
        &mut replica,
        compare_value("k", CompareResult::NotEqual, "n")
    ));
    assert!(guard_holds(
        &mut replica,
        compare_value("k", CompareResult::Greater, "l")
    ));
    assert!(guard_holds(
        &mut replica,
        compare_value("k", CompareResult::Less, "n")
    ));
    assert!(!guard_holds(
        &mut replica,
        compare_value("k", CompareResult::Less, "m")
    ));
    // "m" sorts after the empty value.
    assert!(guard_holds(
        &mut replica,
        compare_value("k", CompareResult::Greater, "")
    ));
}

#[test]
fn number_compares_read_the_key_fields() {
    let mut replica = Replica::new();
    replica.put("k", "1"); // create 2
    replica.put("other", "1");
    replica.put("k", "2"); // mod 4, version 2
    let holds = |replica: &mut Replica, target, result, number| {
        guard_holds(replica, number_compare("k", target, result, number))
    };
    assert!(holds(
        &mut replica,
        CompareTarget::Version,
        CompareResult::Equal,
        2
    ));
    assert!(holds(
        &mut replica,
        CompareTarget::Create,
        CompareResult::Equal,
        2
    ));
    assert!(holds(
        &mut replica,
        CompareTarget::Mod,
        CompareResult::Equal,
        4
    ));
    assert!(holds(
        &mut replica,
        CompareTarget::Mod,
        CompareResult::Greater,
        3
    ));
    assert!(holds(
        &mut replica,
        CompareTarget::Create,
        CompareResult::Less,
        3
    ));
    assert!(holds(
        &mut replica,
        CompareTarget::Lease,
        CompareResult::Equal,
        0
    ));
    assert!(!holds(
        &mut replica,
        CompareTarget::Version,
        CompareResult::NotEqual,
        2
    ));
}

#[test]
fn a_compare_over_a_range_needs_every_key_to_pass() {
    let mut replica = Replica::new();
    replica.put("p/a", "1");
    replica.put("p/b", "2");
    let over_prefix = |result, number| Compare {
        range_end: b"p0".to_vec(),
        ..number_compare("p/", CompareTarget::Version, result, number)
    };
    assert!(guard_holds(
        &mut replica,
        over_prefix(CompareResult::Equal, 1)
    ));
    replica.put("p/b", "3");
    assert!(!guard_holds(
        &mut replica,
        over_prefix(CompareResult::Equal, 1)
    ));
    assert!(guard_holds(
        &mut replica,
        over_prefix(CompareResult::Greater, 0)
    ));
}

#[test]
fn the_guard_picks_the_branch() {
    let mut replica = Replica::new();
    let create_if_absent = || {
        txn_request(
            vec![compare_version("lock", CompareResult::Equal, 0)],
            vec![put_operation("lock", "me")],
            vec![range_operation("lock", "")],
        )
    };
    let first = replica.txn(create_if_absent()).unwrap();
    assert!(first.succeeded);
    assert!(matches!(
        first.responses[0].response,
        Some(response_op::Response::ResponsePut(_))
    ));

    let second = replica.txn(create_if_absent()).unwrap();
    assert!(!second.succeeded);
    let Some(response_op::Response::ResponseRange(range)) = &second.responses[0].response else {
        panic!("the failure branch reads: {second:?}");
    };
    assert_eq!(range.kvs[0].value, b"me");
    assert_eq!(replica.get("lock").unwrap().version, 1);
}

#[test]
fn no_compares_means_success() {
    let mut replica = Replica::new();
    let response = replica
        .txn(txn_request(vec![], vec![put_operation("a", "1")], vec![]))
        .unwrap();
    assert!(response.succeeded);
    assert_eq!(replica.get("a").unwrap().value, b"1");
}

#[test]
fn all_writes_of_a_transaction_share_one_revision() {
    let mut replica = Replica::new();
    replica.put("old", "1");
    let response = replica
        .txn(txn_request(
            vec![],
            vec![
                put_operation("a", "1"),
                put_operation("b", "1"),
                delete_operation("old", ""),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(replica.store.revision(), 3);
    assert_eq!(response.header.unwrap().revision, 3);
    assert_eq!(replica.get("a").unwrap().mod_revision, 3);
    assert_eq!(replica.get("b").unwrap().create_revision, 3);
    for operation in &response.responses {
        let header = match &operation.response {
            Some(response_op::Response::ResponsePut(put)) => put.header,
            Some(response_op::Response::ResponseDeleteRange(delete)) => delete.header,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(header.unwrap().revision, 3);
    }
}

#[test]
fn a_transaction_without_changes_keeps_the_revision() {
    let mut replica = Replica::new();
    replica.put("a", "1");
    let read_only = replica
        .txn(txn_request(
            vec![compare_version("a", CompareResult::Equal, 1)],
            vec![range_operation("a", ""), delete_operation("missing", "")],
            vec![],
        ))
        .unwrap();
    assert!(read_only.succeeded);
    assert_eq!(read_only.header.unwrap().revision, 2);
    assert_eq!(replica.store.revision(), 2);
}

#[test]
fn a_read_after_a_write_in_the_same_transaction_sees_it() {
    let mut replica = Replica::new();
    replica.put("a", "old");
    let response = replica
        .txn(txn_request(
            vec![],
            vec![
                range_operation("a", ""),
                put_operation("a", "new"),
                range_operation("a", ""),
            ],
            vec![],
        ))
        .unwrap();
    let read = |position: usize| match &response.responses[position].response {
        Some(response_op::Response::ResponseRange(range)) => range.clone(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(read(0).kvs[0].value, b"old");
    assert_eq!(read(0).header.unwrap().revision, 2);
    assert_eq!(read(2).kvs[0].value, b"new");
    assert_eq!(read(2).kvs[0].version, 2);
    assert_eq!(read(2).header.unwrap().revision, 3);
}

#[test]
fn nested_guards_are_decided_before_any_write() {
    let mut replica = Replica::new();
    let nested = txn_request(
        vec![compare_version("a", CompareResult::Equal, 0)],
        vec![put_operation("nested", "saw no a")],
        vec![put_operation("nested", "saw a")],
    );
    let response = replica
        .txn(txn_request(
            vec![],
            vec![put_operation("a", "1"), txn_operation(nested)],
            vec![],
        ))
        .unwrap();
    assert_eq!(replica.get("nested").unwrap().value, b"saw no a");
    let Some(response_op::Response::ResponseTxn(inner)) = &response.responses[1].response else {
        panic!("unexpected {response:?}");
    };
    assert!(inner.succeeded);
    assert_eq!(inner.header.unwrap().revision, 2);
    assert_eq!(replica.store.revision(), 2);
}

fn duplicate_error(replica: &mut Replica, success: Vec<RequestOp>) -> Option<KvError> {
    replica.txn(txn_request(vec![], success, vec![])).err()
}

#[test]
fn a_branch_may_not_write_a_key_twice() {
    let mut replica = Replica::new();
    let duplicate = Some(KvError::Invalid(InvalidRequest::DuplicateKey));
    assert_eq!(
        duplicate_error(
            &mut replica,
            vec![put_operation("a", "1"), put_operation("a", "2")]
        ),
        duplicate
    );
    assert_eq!(
        duplicate_error(
            &mut replica,
            vec![delete_operation("a", "c"), put_operation("b", "1")]
        ),
        duplicate
    );
    let nested_put = txn_operation(txn_request(vec![], vec![put_operation("a", "1")], vec![]));
    assert_eq!(
        duplicate_error(&mut replica, vec![put_operation("a", "2"), nested_put]),
        duplicate
    );
    let nested_delete = txn_operation(txn_request(vec![], vec![delete_operation("a", "")], vec![]));
    assert_eq!(
        duplicate_error(&mut replica, vec![nested_delete, put_operation("a", "2")]),
        duplicate
    );
    assert_eq!(
        replica.store.revision(),
        1,
        "refused transactions write nothing"
    );
}

#[test]
fn writes_that_cannot_both_happen_may_share_a_key() {
    let mut replica = Replica::new();
    // The two branches of a nested transaction exclude each other.
    let either = txn_operation(txn_request(
        vec![compare_version("a", CompareResult::Equal, 0)],
        vec![put_operation("a", "created")],
        vec![put_operation("a", "updated")],
    ));
    assert_eq!(duplicate_error(&mut replica, vec![either]), None);
    // Overlapping deletes are fine, and so are a put in one top-level branch
    // and a delete in the other.
    assert_eq!(
        duplicate_error(
            &mut replica,
            vec![delete_operation("a", "c"), delete_operation("b", "")]
        ),
        None
    );
    let response = replica
        .txn(txn_request(
            vec![],
            vec![put_operation("x", "1")],
            vec![delete_operation("x", "")],
        ))
        .unwrap();
    assert!(response.succeeded);
}

#[test]
fn an_unsupported_operation_in_either_branch_refuses_the_whole_transaction() {
    let mut replica = Replica::new();
    let leased = PutRequest {
        lease: 42,
        ..put_request("b", "1")
    };
    let leased_operation = RequestOp {
        request: Some(request_op::Request::RequestPut(leased)),
    };
    let error = replica
        .txn(txn_request(
            vec![],
            vec![put_operation("a", "1")],
            vec![leased_operation],
        ))
        .unwrap_err();
    assert_eq!(
        error,
        KvError::Unsupported(Unsupported::Leases { lease: 42 })
    );
    assert_eq!(replica.get("a"), None);
    assert_eq!(replica.store.revision(), 1);
}

/// A transaction whose success branch is `operations`.
fn txn_of(operations: Vec<RequestOp>) -> TxnRequest {
    txn_request(vec![], operations, vec![])
}

fn range_at(key: &str, revision: i64) -> RequestOp {
    let mut range = range_request(key, "");
    range.revision = revision;
    RequestOp {
        request: Some(request_op::Request::RequestRange(range)),
    }
}

#[test]
fn a_range_at_a_fixed_revision_inside_a_transaction_reads_as_of_then() {
    let mut replica = Replica::new();
    replica.put("a", "1");
    replica.put("a", "2");
    // Revision 2 held "1"; the read undoes this transaction's own write too.
    let response = replica
        .txn(txn_of(vec![
            put_operation("a", "3"),
            range_at("a", 2),
            range_at("a", 3),
        ]))
        .unwrap();
    let values: Vec<Vec<u8>> = response.responses[1..]
        .iter()
        .map(|operation| match &operation.response {
            Some(response_op::Response::ResponseRange(read)) => read.kvs[0].value.clone(),
            other => panic!("a range answers a range: {other:?}"),
        })
        .collect();
    assert_eq!(values, vec![b"1".to_vec(), b"2".to_vec()]);
    assert_eq!(replica.store.revision(), 4);
}

#[test]
fn a_range_at_a_revision_the_store_cannot_give_fails_the_transaction_before_any_write() {
    use raft_proto::etcd::etcdserverpb::CompactionRequest;

    let mut replica = Replica::new();
    replica.put("a", "1");
    replica.put("a", "2");
    let future = replica
        .txn(txn_of(vec![put_operation("b", "x"), range_at("a", 9)]))
        .unwrap_err();
    assert_eq!(
        future,
        KvError::FutureRevision {
            requested: 9,
            current: 3
        }
    );
    replica
        .apply(crate::kv::Command::Compact(CompactionRequest {
            revision: 3,
            physical: false,
        }))
        .unwrap();
    let compacted = replica
        .txn(txn_of(vec![put_operation("b", "x"), range_at("a", 2)]))
        .unwrap_err();
    assert!(matches!(
        compacted,
        KvError::Compacted {
            requested: 2,
            compacted: 3
        }
    ));
    assert_eq!(replica.store.revision(), 3, "nothing was written");
    // A read on the branch not taken is not checked (etcd's rule).
    let untaken = txn_request(
        vec![compare_value("a", CompareResult::Equal, "2")],
        vec![put_operation("b", "y")],
        vec![range_at("a", 99)],
    );
    assert!(replica.txn(untaken).unwrap().succeeded);
}

#[test]
fn an_empty_operation_is_refused() {
    let mut replica = Replica::new();
    let error = replica
        .txn(txn_request(
            vec![],
            vec![RequestOp { request: None }],
            vec![],
        ))
        .unwrap_err();
    assert_eq!(error, KvError::Invalid(InvalidRequest::EmptyOperation));
}

#[test]
fn transaction_responses_keep_their_shape_through_header_filling() {
    let mut replica = Replica::new();
    let nested = txn_operation(txn_request(vec![], vec![range_operation("a", "")], vec![]));
    let mut response = CommandResponse::Txn(
        replica
            .txn(txn_request(
                vec![],
                vec![put_operation("a", "1"), nested],
                vec![],
            ))
            .unwrap(),
    );
    response.fill_headers(HeaderFields {
        cluster_id: 1,
        member_id: raft::NodeId(2),
        raft_term: raft::Term(3),
    });
    let CommandResponse::Txn(TxnResponse { responses, .. }) = response else {
        unreachable!()
    };
    let Some(response_op::Response::ResponseTxn(inner)) = &responses[1].response else {
        panic!("unexpected {responses:?}");
    };
    let Some(response_op::Response::ResponseRange(range)) = &inner.responses[0].response else {
        panic!("unexpected {inner:?}");
    };
    let header = range.header.unwrap();
    assert_eq!(
        (header.cluster_id, header.member_id, header.raft_term),
        (1, 2, 3)
    );
    assert_eq!(header.revision, 2);
}

//! Bad input is refused with a reason, before anything is written.

use raft_proto::etcd::etcdserverpb::range_request::SortOrder;
use raft_proto::etcd::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, TxnRequest};

use super::support::{
    compare_version, delete_request, put_operation, put_request, range_request, txn_request,
};
use crate::kv::validation::{
    validate_delete_range, validate_put, validate_range, validate_txn, DEFAULT_MAX_REQUEST_BYTES,
};
use crate::kv::{Command, ErrorClass, InvalidRequest, KvError, KvStore, Limits, Unsupported};

fn invalid(reason: InvalidRequest) -> Result<(), KvError> {
    Err(KvError::Invalid(reason))
}

#[test]
fn empty_keys_are_refused_everywhere() {
    assert_eq!(
        validate_put(&put_request("", "v")),
        invalid(InvalidRequest::EmptyKey)
    );
    assert_eq!(
        validate_range(&range_request("", "z")),
        invalid(InvalidRequest::EmptyKey)
    );
    assert_eq!(
        validate_delete_range(&delete_request("", "")),
        invalid(InvalidRequest::EmptyKey)
    );
    let compare_empty_key = Compare {
        key: Vec::new(),
        ..compare_version("x", Default::default(), 0)
    };
    assert_eq!(
        validate_txn(&txn_request(vec![compare_empty_key], vec![], vec![])),
        invalid(InvalidRequest::EmptyKey)
    );
    assert_eq!(
        validate_txn(&txn_request(vec![], vec![], vec![put_operation("", "v")])),
        invalid(InvalidRequest::EmptyKey)
    );
    assert_eq!(
        KvStore::new().range(&range_request("", "")),
        Err(KvError::Invalid(InvalidRequest::EmptyKey))
    );
}

#[test]
fn a_range_end_before_the_key_is_refused() {
    assert_eq!(
        validate_range(&range_request("b", "a")),
        invalid(InvalidRequest::RangeEndBeforeKey)
    );
    assert_eq!(
        validate_delete_range(&delete_request("b", "a")),
        invalid(InvalidRequest::RangeEndBeforeKey)
    );
    // "\0" and empty are conventions, not ends; an end equal to the key is an
    // empty range.
    for range_end in ["\0", "", "b", "c"] {
        assert_eq!(
            validate_range(&range_request("b", range_end)),
            Ok(()),
            "{range_end:?}"
        );
    }
}

#[test]
fn unknown_sort_and_compare_enums_are_refused() {
    let mut range = range_request("a", "");
    range.sort_order = 7;
    assert_eq!(
        validate_range(&range),
        invalid(InvalidRequest::InvalidSortOption)
    );
    range.sort_order = SortOrder::Ascend as i32;
    range.sort_target = 9;
    assert_eq!(
        validate_range(&range),
        invalid(InvalidRequest::InvalidSortOption)
    );

    let mut comparison = compare_version("a", Default::default(), 0);
    comparison.result = 4;
    assert!(matches!(
        validate_txn(&txn_request(vec![comparison], vec![], vec![])),
        Err(KvError::Invalid(InvalidRequest::InvalidCompare { .. }))
    ));
}

#[test]
fn ignore_flags_with_a_value_or_lease_are_invalid_and_alone_unsupported() {
    let keep_value = PutRequest {
        ignore_value: true,
        ..put_request("a", "")
    };
    assert_eq!(
        validate_put(&PutRequest {
            value: b"v".to_vec(),
            ..keep_value.clone()
        }),
        invalid(InvalidRequest::ValueProvided)
    );
    assert_eq!(
        validate_put(&keep_value),
        Err(KvError::Unsupported(Unsupported::IgnoreValue))
    );

    let keep_lease = PutRequest {
        ignore_lease: true,
        ..put_request("a", "v")
    };
    assert_eq!(
        validate_put(&PutRequest {
            lease: 5,
            ..keep_lease.clone()
        }),
        invalid(InvalidRequest::LeaseProvided)
    );
    assert_eq!(
        validate_put(&keep_lease),
        Err(KvError::Unsupported(Unsupported::IgnoreLease))
    );
    let leased = PutRequest {
        lease: 5,
        ..put_request("a", "v")
    };
    let error = validate_put(&leased).unwrap_err();
    assert_eq!(
        error,
        KvError::Unsupported(Unsupported::Leases { lease: 5 })
    );
    assert_eq!(error.class(), ErrorClass::Unimplemented);
}

#[test]
fn a_proposal_over_the_size_limit_is_refused() {
    assert_eq!(Limits::default().max_request_bytes, 1_572_864);
    assert_eq!(DEFAULT_MAX_REQUEST_BYTES, 1_572_864);
    let limits = Limits {
        max_request_bytes: 64,
        ..Limits::default()
    };
    let small = Command::Put(put_request("k", &"v".repeat(32)));
    let bytes = small.clone().to_proposal(&limits).unwrap();
    assert_eq!(Command::from_bytes(&bytes).unwrap(), small);

    let large = Command::Put(put_request("k", &"v".repeat(64)));
    let error = large.to_proposal(&limits).unwrap_err();
    let KvError::Invalid(InvalidRequest::RequestTooLarge {
        size_bytes,
        limit_bytes,
    }) = error
    else {
        panic!("expected a size refusal, got {error:?}");
    };
    assert!(size_bytes > 64);
    assert_eq!(limit_bytes, 64);
    assert_eq!(error.class(), ErrorClass::InvalidArgument);
    assert_eq!(error.to_string(), "etcdserver: request is too large");
}

#[test]
fn a_transaction_over_the_operation_limit_is_refused_at_any_depth() {
    let limits = Limits {
        max_txn_operations: 2,
        ..Limits::default()
    };
    let puts = |count: usize| {
        (0..count)
            .map(|key| put_operation(&key.to_string(), "v"))
            .collect()
    };
    let within = Command::Txn(txn_request(vec![], puts(2), puts(2)));
    assert!(within.to_proposal(&limits).is_ok());

    let too_many = Command::Txn(txn_request(vec![], puts(3), vec![]));
    assert_eq!(
        too_many.to_proposal(&limits),
        Err(KvError::Invalid(InvalidRequest::TooManyOperations {
            count: 3,
            limit: 2
        }))
    );

    let deep = TxnRequest {
        success: vec![super::support::txn_operation(txn_request(
            vec![],
            vec![],
            puts(3),
        ))],
        ..TxnRequest::default()
    };
    assert!(matches!(
        Command::Txn(deep).to_proposal(&limits),
        Err(KvError::Invalid(InvalidRequest::TooManyOperations { .. }))
    ));
}

#[test]
fn proposals_are_validated_before_encoding() {
    let error = Command::DeleteRange(DeleteRangeRequest::default())
        .to_proposal(&Limits::default())
        .unwrap_err();
    assert_eq!(error, KvError::Invalid(InvalidRequest::EmptyKey));
    assert_eq!(error.to_string(), "etcdserver: key is not provided");
}

#[test]
fn a_proposal_from_another_member_is_checked_by_the_same_rules() {
    let limits = Limits {
        max_request_bytes: 64,
        max_txn_operations: 2,
    };
    let bytes = Command::Put(put_request("k", "v"))
        .to_proposal(&Limits::default())
        .unwrap();
    assert_eq!(Command::check_proposal(&bytes, &limits), Ok(()));
    // Made under a larger limit than this node's: refused here.
    let large = Command::Put(put_request("k", &"v".repeat(64))).into_bytes();
    assert!(matches!(
        Command::check_proposal(&large, &limits),
        Err(KvError::Invalid(InvalidRequest::RequestTooLarge { .. }))
    ));
    let puts = (0..3)
        .map(|key| put_operation(&key.to_string(), "v"))
        .collect();
    let too_many = Command::Txn(txn_request(vec![], puts, vec![])).into_bytes();
    assert!(matches!(
        Command::check_proposal(&too_many, &limits),
        Err(KvError::Invalid(InvalidRequest::TooManyOperations { .. }))
    ));
    let empty_key = Command::Put(put_request("", "v")).into_bytes();
    assert!(Command::check_proposal(&empty_key, &limits).is_err());
    assert!(matches!(
        Command::check_proposal(b"\xff\xff garbage", &limits),
        Err(KvError::MalformedCommand { .. })
    ));
}

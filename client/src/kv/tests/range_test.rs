//! Ranges: etcd's key range conventions, limit and more, counts, filters,
//! sorting, and which revisions can be read.

use raft_proto::etcd::etcdserverpb::range_request::{SortOrder, SortTarget};
use raft_proto::etcd::etcdserverpb::{RangeRequest, RangeResponse};

use super::support::{delete_request, range_request, sorted_range_request, Replica};
use crate::kv::{prefix_end, ErrorClass, KeyRange, KvError};

/// Keys "a", "ab", "abc", "b", "b\xff", "c" put in that order (revisions 2 to 7).
fn replica_with_keys() -> Replica {
    let mut replica = Replica::new();
    for key in ["a", "ab", "abc", "b"] {
        replica.put(key, key);
    }
    replica
        .put_request(raft_proto::etcd::etcdserverpb::PutRequest {
            key: b"b\xff".to_vec(),
            value: b"b-ff".to_vec(),
            ..Default::default()
        })
        .unwrap();
    replica.put("c", "c");
    replica
}

fn raw_range(key: &[u8], range_end: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        range_end: range_end.to_vec(),
        ..RangeRequest::default()
    }
}

#[test]
fn an_empty_range_end_reads_one_key() {
    let replica = replica_with_keys();
    assert_eq!(replica.keys(range_request("ab", "")), ["ab"]);
    assert_eq!(replica.keys(range_request("aa", "")), Vec::<String>::new());
}

#[test]
fn a_range_end_reads_the_half_open_interval() {
    let replica = replica_with_keys();
    assert_eq!(replica.keys(range_request("ab", "b")), ["ab", "abc"]);
    assert_eq!(replica.keys(range_request("a", "ab")), ["a"]);
    // [key, key) is empty, not an error.
    assert_eq!(replica.keys(range_request("b", "b")), Vec::<String>::new());
}

#[test]
fn a_nul_range_end_reads_every_key_from_key_on() {
    let replica = replica_with_keys();
    assert_eq!(replica.keys(range_request("b", "\0")).len(), 3);
    assert_eq!(replica.keys(range_request("b", "\0"))[0], "b");
    // Key and range end both "\0": the whole key space.
    assert_eq!(replica.range(range_request("\0", "\0")).kvs.len(), 6);
}

#[test]
fn prefix_end_increments_the_last_byte_that_can_be() {
    assert_eq!(prefix_end(b"a"), b"b");
    assert_eq!(prefix_end(b"ab"), b"ac");
    assert_eq!(prefix_end(b"a\xff"), b"b");
    assert_eq!(prefix_end(b"a\xff\xff"), b"b");
    // Nothing follows an all-0xff prefix: "\0" means "to the end".
    assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    assert_eq!(prefix_end(b""), b"\0");
}

#[test]
fn prefix_ranges_select_keys_with_the_prefix() {
    let replica = replica_with_keys();
    let prefix = |key: &[u8]| raw_range(key, &prefix_end(key));
    let keys = |request| -> Vec<Vec<u8>> {
        replica
            .range(request)
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect()
    };
    assert_eq!(keys(prefix(b"ab")), [b"ab".to_vec(), b"abc".to_vec()]);
    assert_eq!(keys(prefix(b"b")), [b"b".to_vec(), b"b\xff".to_vec()]);
    assert_eq!(keys(prefix(b"b\xff")), [b"b\xff".to_vec()]);
    assert_eq!(
        KeyRange::prefix(b"ab"),
        KeyRange::Interval {
            start: b"ab".to_vec(),
            end: b"ac".to_vec()
        }
    );
}

#[test]
fn limit_cuts_the_answer_and_sets_more() {
    let replica = replica_with_keys();
    let limited = |limit| {
        replica.range(RangeRequest {
            limit,
            ..range_request("a", "\0")
        })
    };
    let two = limited(2);
    assert_eq!(two.kvs.len(), 2);
    assert!(two.more);
    assert_eq!(two.count, 6, "count ignores the limit");

    let exact = limited(6);
    assert_eq!(exact.kvs.len(), 6);
    assert!(
        !exact.more,
        "nothing is left when the limit equals the count"
    );

    let unlimited = limited(0);
    assert_eq!(unlimited.kvs.len(), 6);
    assert!(!unlimited.more);
}

#[test]
fn count_only_returns_just_the_count() {
    let replica = replica_with_keys();
    let response = replica.range(RangeRequest {
        count_only: true,
        limit: 1,
        ..range_request("a", "b")
    });
    assert_eq!(response.count, 3);
    assert!(response.kvs.is_empty());
    assert!(!response.more);
}

#[test]
fn keys_only_leaves_out_values_but_not_revisions() {
    let replica = replica_with_keys();
    let response = replica.range(RangeRequest {
        keys_only: true,
        ..range_request("ab", "")
    });
    let key_value = &response.kvs[0];
    assert_eq!(key_value.key, b"ab");
    assert!(key_value.value.is_empty());
    assert_eq!((key_value.mod_revision, key_value.version), (3, 1));
}

#[test]
fn the_header_carries_the_current_revision() {
    let replica = replica_with_keys();
    let response = replica.range(range_request("zzz", ""));
    assert_eq!(response.header.unwrap().revision, 7);
    assert_eq!(response.count, 0);
}

#[test]
fn revision_filters_apply_before_the_limit_but_not_to_count() {
    let mut replica = replica_with_keys();
    replica.put("a", "again"); // "a": create 2, mod 8.
    let keys = |request: RangeRequest| -> Vec<Vec<u8>> {
        replica
            .range(request)
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect()
    };
    let base = range_request("a", "\0");

    let modified_between = keys(RangeRequest {
        min_mod_revision: 4,
        max_mod_revision: 6,
        ..base.clone()
    });
    assert_eq!(
        modified_between,
        [b"abc".to_vec(), b"b".to_vec(), b"b\xff".to_vec()]
    );

    let created_at_three = replica.range(RangeRequest {
        min_create_revision: 3,
        max_create_revision: 3,
        ..base.clone()
    });
    assert_eq!(created_at_three.kvs.len(), 1);
    assert_eq!(created_at_three.kvs[0].key, b"ab");
    assert_eq!(created_at_three.count, 6, "count ignores the filters");

    let limited = replica.range(RangeRequest {
        min_mod_revision: 8,
        limit: 1,
        ..base
    });
    assert_eq!(limited.kvs.len(), 1);
    assert_eq!(limited.kvs[0].key, b"a");
    assert!(!limited.more, "only one key passes the filter");
}

#[test]
fn descending_key_order_reverses_the_range() {
    let replica = replica_with_keys();
    let request = RangeRequest {
        limit: 2,
        ..sorted_range_request("a", "b", SortOrder::Descend, SortTarget::Key)
    };
    let response = replica.range(request);
    assert_eq!(response.kvs[0].key, b"abc");
    assert_eq!(response.kvs[1].key, b"ab");
    assert!(response.more);
}

#[test]
fn sorting_by_a_field_keeps_key_order_among_equals() {
    let mut replica = replica_with_keys();
    replica.put("c", "c2"); // "c" is now the only key at version 2.
    let keys = |order, target| replica.keys(sorted_range_request("a", "\0", order, target));
    assert_eq!(
        keys(SortOrder::Descend, SortTarget::Version),
        ["c", "a", "ab", "abc", "b", "b\u{fffd}"]
    );
    // A target other than the key with no order sorts ascending (etcd).
    assert_eq!(
        keys(SortOrder::None, SortTarget::Version),
        ["a", "ab", "abc", "b", "b\u{fffd}", "c"]
    );
    assert_eq!(
        keys(SortOrder::Descend, SortTarget::Create),
        ["c", "b\u{fffd}", "b", "abc", "ab", "a"]
    );
    assert_eq!(
        keys(SortOrder::Ascend, SortTarget::Value),
        ["a", "ab", "abc", "b", "b\u{fffd}", "c"]
    );
}

#[test]
fn sorting_happens_before_the_limit() {
    let replica = replica_with_keys();
    let response = replica.range(RangeRequest {
        limit: 1,
        ..sorted_range_request("a", "\0", SortOrder::Descend, SortTarget::Mod)
    });
    assert_eq!(response.kvs.len(), 1);
    assert_eq!(response.kvs[0].key, b"c");
    assert!(response.more);
}

/// Reads "a" at `revision` from the store of [`replica_with_keys`], which is
/// at revision 7.
fn read_at_revision(revision: i64) -> Result<RangeResponse, KvError> {
    replica_with_keys().store.range(&RangeRequest {
        revision,
        ..range_request("a", "")
    })
}

#[test]
fn reading_the_current_revision_explicitly_is_the_latest() {
    assert_eq!(read_at_revision(7).unwrap().kvs.len(), 1);
    assert_eq!(
        read_at_revision(-1).unwrap().kvs.len(),
        1,
        "negative means latest"
    );
}

#[test]
fn a_future_revision_is_out_of_range() {
    let error = read_at_revision(8).unwrap_err();
    assert_eq!(
        error,
        KvError::FutureRevision {
            requested: 8,
            current: 7
        }
    );
    assert_eq!(error.class(), ErrorClass::OutOfRange);
    assert_eq!(
        error.to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
}

#[test]
fn an_earlier_revision_reads_the_keys_as_they_were_then() {
    // Revisions: a=2, ab=3, abc=4, b=5, b\xff=6, c=7.
    let mut replica = replica_with_keys();
    replica.put("a", "a2");
    replica.delete(delete_request("ab", ""));
    let keys_at = |revision: i64| -> Vec<(String, String, i64)> {
        replica
            .range(RangeRequest {
                revision,
                ..range_request("a", "b")
            })
            .kvs
            .into_iter()
            .map(|kv| {
                let key = String::from_utf8(kv.key).unwrap();
                (key, String::from_utf8(kv.value).unwrap(), kv.version)
            })
            .collect()
    };
    let entry = |key: &str, value: &str, version| (key.to_string(), value.to_string(), version);
    assert_eq!(keys_at(1), vec![]);
    assert_eq!(keys_at(3), vec![entry("a", "a", 1), entry("ab", "ab", 1)]);
    assert_eq!(
        keys_at(8),
        vec![
            entry("a", "a2", 2),
            entry("ab", "ab", 1),
            entry("abc", "abc", 1)
        ]
    );
    assert_eq!(
        keys_at(9),
        vec![entry("a", "a2", 2), entry("abc", "abc", 1)]
    );
    // The header names the store's revision, whatever revision was read.
    let response = replica.range(RangeRequest {
        revision: 3,
        ..range_request("a", "")
    });
    assert_eq!(response.header.unwrap().revision, 9);
    assert_eq!(response.kvs[0].mod_revision, 2);
}

#[test]
fn compaction_keeps_reads_from_its_revision_on_and_refuses_earlier_ones() {
    use raft_proto::etcd::etcdserverpb::CompactionRequest;

    use crate::kv::Command;

    // Revisions 2 to 7; then "a" again at 8.
    let mut replica = replica_with_keys();
    replica.put("a", "a2");
    let compact = |replica: &mut Replica, revision| {
        replica.apply(Command::Compact(CompactionRequest {
            revision,
            physical: false,
        }))
    };
    let response = compact(&mut replica, 5).unwrap();
    assert_eq!(response.revision(), 8, "compaction moves no revision");
    assert_eq!(replica.store.compacted_revision(), 5);
    let read = |replica: &Replica, revision| {
        replica.store.range(&RangeRequest {
            revision,
            ..range_request("a", "")
        })
    };
    assert_eq!(read(&replica, 5).unwrap().kvs[0].value, b"a");
    assert_eq!(read(&replica, 8).unwrap().kvs[0].value, b"a2");
    let error = read(&replica, 4).unwrap_err();
    assert_eq!(
        error,
        KvError::Compacted {
            requested: 4,
            compacted: 5
        }
    );
    assert_eq!(error.class(), ErrorClass::OutOfRange);
    assert_eq!(
        error.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    // Again at or before the compacted revision, or past the store's.
    for revision in [5, 3] {
        assert!(matches!(
            compact(&mut replica, revision),
            Err(KvError::Compacted { .. })
        ));
    }
    assert!(matches!(
        compact(&mut replica, 9),
        Err(KvError::FutureRevision { .. })
    ));
    // Compacting to the latest keeps the latest readable, and its put (etcd
    // keeps the version at the compacted revision, for watchers from it).
    compact(&mut replica, 8).unwrap();
    assert_eq!(replica.store.history_len(), 1);
    assert_eq!(read(&replica, 8).unwrap().kvs[0].value, b"a2");
}

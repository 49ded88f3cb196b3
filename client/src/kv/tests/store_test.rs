//! Revisions, versions, puts and deletes, and the apply contract.

use raft::{LogIndex, NodeId, Term};
use raft_proto::etcd::etcdserverpb::{DeleteRangeRequest, PutRequest};

use super::support::{delete_request, put_request, range_request, Replica};
use crate::kv::{
    Command, CommandResponse, ErrorClass, HeaderFields, InvalidRequest, KvError, KvStore,
    INITIAL_REVISION,
};

#[test]
fn an_empty_store_is_at_revision_one() {
    let store = KvStore::new();
    assert_eq!(store.revision(), INITIAL_REVISION);
    assert_eq!(INITIAL_REVISION, 1);
    assert_eq!(store.applied_index(), LogIndex(0));
    assert!(store.is_empty());
}

#[test]
fn each_put_is_one_revision_and_one_version() {
    let mut replica = Replica::new();
    let first = replica.put("a", "1");
    assert_eq!(first.header.unwrap().revision, 2);
    let created = replica.get("a").unwrap();
    assert_eq!(
        (
            created.create_revision,
            created.mod_revision,
            created.version
        ),
        (2, 2, 1)
    );

    replica.put("a", "2");
    let updated = replica.get("a").unwrap();
    assert_eq!(updated.value, b"2");
    assert_eq!(
        (
            updated.create_revision,
            updated.mod_revision,
            updated.version
        ),
        (2, 3, 2)
    );

    replica.put("b", "1");
    assert_eq!(replica.store.revision(), 4);
    // A put to another key leaves "a" as it was.
    assert_eq!(replica.get("a").unwrap(), updated);
}

#[test]
fn deleting_resets_a_key_and_recreating_starts_over() {
    let mut replica = Replica::new();
    replica.put("a", "1");
    replica.put("a", "2");
    let deleted = replica.delete(delete_request("a", ""));
    assert_eq!(deleted.deleted, 1);
    assert_eq!(deleted.header.unwrap().revision, 4);
    assert_eq!(replica.get("a"), None);

    replica.put("a", "3");
    let recreated = replica.get("a").unwrap();
    assert_eq!(
        (
            recreated.create_revision,
            recreated.mod_revision,
            recreated.version
        ),
        (5, 5, 1)
    );
}

#[test]
fn deleting_nothing_keeps_the_revision() {
    let mut replica = Replica::new();
    replica.put("a", "1");
    let response = replica.delete(delete_request("b", ""));
    assert_eq!(response.deleted, 0);
    assert_eq!(response.header.unwrap().revision, 2);
    assert_eq!(replica.store.revision(), 2);
}

#[test]
fn deleting_a_range_is_one_revision_for_all_its_keys() {
    let mut replica = Replica::new();
    for key in ["a", "b1", "b2", "c"] {
        replica.put(key, "v");
    }
    let response = replica.delete(DeleteRangeRequest {
        prev_kv: true,
        ..delete_request("b", "c")
    });
    assert_eq!(response.deleted, 2);
    assert_eq!(response.header.unwrap().revision, 6);
    let deleted_keys: Vec<_> = response.prev_kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(deleted_keys, [b"b1".to_vec(), b"b2".to_vec()]);
    assert_eq!(response.prev_kvs[0].mod_revision, 3);
    assert_eq!(replica.keys(range_request("a", "\0")), ["a", "c"]);
}

#[test]
fn delete_returns_previous_values_only_when_asked() {
    let mut replica = Replica::new();
    replica.put("a", "1");
    let response = replica.delete(delete_request("a", ""));
    assert_eq!(response.deleted, 1);
    assert!(response.prev_kvs.is_empty());
}

#[test]
fn put_returns_the_previous_key_value_only_when_asked() {
    let mut replica = Replica::new();
    let asked = PutRequest {
        prev_kv: true,
        ..put_request("a", "1")
    };
    let first = replica.put_request(asked.clone()).unwrap();
    assert_eq!(first.prev_kv, None, "a new key has no previous value");

    let second = replica
        .put_request(PutRequest {
            value: b"2".to_vec(),
            ..asked
        })
        .unwrap();
    let previous = second.prev_kv.unwrap();
    assert_eq!(previous.value, b"1");
    assert_eq!((previous.mod_revision, previous.version), (2, 1));

    let third = replica.put_request(put_request("a", "3")).unwrap();
    assert_eq!(third.prev_kv, None);
}

#[test]
fn an_empty_value_is_a_value() {
    let mut replica = Replica::new();
    replica.put("a", "");
    let stored = replica.get("a").unwrap();
    assert!(stored.value.is_empty());
    assert_eq!(stored.version, 1);
}

#[test]
fn applying_an_index_twice_is_refused_and_changes_nothing() {
    let mut store = KvStore::new();
    let command = Command::Put(put_request("a", "1")).into_bytes();
    store.apply(LogIndex(3), &command).unwrap();
    let before = store.clone();

    for index in [LogIndex(3), LogIndex(2)] {
        let error = store.apply(index, &command).unwrap_err();
        assert_eq!(
            error,
            KvError::AlreadyApplied {
                index,
                applied_index: LogIndex(3)
            }
        );
        assert_eq!(error.class(), ErrorClass::Internal);
    }
    assert_eq!(store, before);
}

#[test]
fn indexes_may_skip_entries_that_are_not_commands() {
    let mut store = KvStore::new();
    store
        .apply(
            LogIndex(2),
            &Command::Put(put_request("a", "1")).into_bytes(),
        )
        .unwrap();
    store
        .apply(
            LogIndex(7),
            &Command::Put(put_request("b", "1")).into_bytes(),
        )
        .unwrap();
    assert_eq!(store.applied_index(), LogIndex(7));
    assert_eq!(store.revision(), 3);
}

#[test]
fn a_refused_command_writes_nothing_but_is_applied() {
    let mut replica = Replica::new();
    replica.put("a", "1");
    let mut expected = replica.store.clone();

    let error = replica
        .apply(Command::Put(put_request("", "1")))
        .unwrap_err();
    assert_eq!(error, KvError::Invalid(InvalidRequest::EmptyKey));
    // The entry's outcome is the refusal: the index is consumed, and only it.
    expected.applied_index = LogIndex(2);
    assert_eq!(replica.store, expected);
}

#[test]
fn undecodable_command_bytes_are_refused() {
    let mut store = KvStore::new();
    let error = store.apply(LogIndex(1), &[0xff, 0xff, 0xff]).unwrap_err();
    assert!(
        matches!(error, KvError::MalformedCommand { .. }),
        "{error:?}"
    );
    // An empty envelope decodes but holds no request.
    let error = store.apply(LogIndex(2), &[]).unwrap_err();
    assert!(
        matches!(error, KvError::MalformedCommand { .. }),
        "{error:?}"
    );
    assert_eq!(store.revision(), INITIAL_REVISION);
    assert!(store.is_empty());
}

#[test]
fn commands_survive_encoding() {
    let command = Command::DeleteRange(DeleteRangeRequest {
        prev_kv: true,
        ..delete_request("a", "b")
    });
    let decoded = Command::from_bytes(&command.clone().into_bytes()).unwrap();
    assert_eq!(decoded, command);
}

#[test]
fn the_node_fills_in_header_fields_and_the_revision_stays() {
    let mut replica = Replica::new();
    let mut response = replica.apply(Command::Put(put_request("a", "1"))).unwrap();
    response.fill_headers(HeaderFields {
        cluster_id: 9,
        member_id: NodeId(3),
        raft_term: Term(4),
    });
    let CommandResponse::Put(put) = &response else {
        panic!("expected a put response, got {response:?}");
    };
    let header = put.header.unwrap();
    assert_eq!(
        (
            header.cluster_id,
            header.member_id,
            header.raft_term,
            header.revision
        ),
        (9, 3, 4, 2)
    );
    assert_eq!(response.revision(), 2);
}

#[test]
fn a_publish_records_client_urls_and_moves_no_revision_or_digest() {
    let mut replica = Replica::new();
    replica.put("a", "1");
    let (revision, digest) = (replica.store.revision(), replica.store.digest());
    replica.publish(2, &["http://127.0.0.1:2379"]).unwrap();
    replica.publish(2, &["https://10.0.0.2:2379"]).unwrap();
    assert_eq!(
        replica.store.client_urls(NodeId(2)),
        Some(&["https://10.0.0.2:2379".to_string()][..]),
        "the latest publish replaces the earlier one"
    );
    assert_eq!(replica.store.client_urls(NodeId(1)), None);
    assert_eq!(replica.store.revision(), revision);
    assert_eq!(replica.store.digest(), digest);
    assert_eq!(replica.store.applied_index(), LogIndex(3));

    let answer = replica
        .apply(Command::Publish(crate::kv::members::MemberAttributes {
            member_id: 1,
            client_urls: vec!["http://h:1".to_string()],
        }))
        .unwrap();
    assert_eq!(
        answer.revision(),
        revision,
        "a publish answers the revision"
    );
}

#[test]
fn an_invalid_publish_is_refused_and_records_nothing() {
    let mut replica = Replica::new();
    replica.publish(2, &["http://a:1"]).unwrap();
    let error = replica.publish(2, &["http://a"]).unwrap_err();
    assert_eq!(error.class(), ErrorClass::InvalidArgument);
    assert_eq!(
        replica.store.client_urls(NodeId(2)),
        Some(&["http://a:1".to_string()][..])
    );
    let decoded = Command::from_bytes(
        &Command::Publish(crate::kv::members::MemberAttributes {
            member_id: 2,
            client_urls: vec!["http://a:1".to_string()],
        })
        .into_bytes(),
    )
    .unwrap();
    assert!(matches!(decoded, Command::Publish(_)), "{decoded:?}");
}

#[test]
fn a_shared_apply_keeps_the_value_inside_the_log_entry_and_answers_alike() {
    let (mut shared, mut copied) = (KvStore::new(), KvStore::new());
    let commands = [
        Command::Put(put_request("a", "first")),
        Command::Put(put_request("a", "second")),
        Command::Put(put_request("b", "x")),
        Command::DeleteRange(delete_request("b", "")),
    ];
    let mut entries = Vec::new();
    for (number, command) in commands.into_iter().enumerate() {
        let entry = bytes::Bytes::from(command.into_bytes());
        let index = LogIndex(number as u64 + 1);
        let answer = shared.apply_shared(index, &entry).expect("applied");
        assert_eq!(copied.apply(index, &entry).expect("applied"), answer);
        entries.push(entry);
    }
    assert_eq!(shared, copied);
    assert_eq!(shared.digest(), copied.digest());
    // The live value is the log entry's own bytes, not a copy; the copying
    // store's is elsewhere.
    let inside = entries[1].as_ptr_range();
    let live = |store: &KvStore| store.entries.get(b"a".as_slice()).expect("live").clone();
    assert!(inside.contains(&live(&shared).value.as_ptr()));
    assert!(!inside.contains(&live(&copied).value.as_ptr()));
}

#[test]
fn the_live_map_and_the_history_share_one_entry_per_put() {
    let mut replica = Replica::new();
    replica.put("a", "1");
    replica.put("a", "2");
    let store = &replica.store;
    let live = store.entries.get(b"a".as_slice()).expect("live");
    let changes: Vec<_> = store.history.iter().collect();
    let latest = changes[1].entry.as_ref().expect("a put");
    assert!(std::sync::Arc::ptr_eq(live, latest));
    let first = changes[0].entry.as_ref().expect("a put");
    let prev = changes[1].prev.as_ref().expect("a previous entry");
    assert!(std::sync::Arc::ptr_eq(first, prev));
}

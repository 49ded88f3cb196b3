use bytes::Bytes;
use raft_proto::etcd::mvccpb::event::EventType;

use super::*;
use crate::kv::entry::{Entry, SharedEntry};
use crate::kv::history::Change;
use crate::kv::prefix_end;

/// A history of `(revision, key, value)` changes (value `None`: a
/// deletion), each with the key's previous change as its `prev`.
fn history(changes: &[(i64, &str, Option<&str>)]) -> History {
    let mut history = History::default();
    let mut live: std::collections::BTreeMap<&str, SharedEntry> = Default::default();
    for &(revision, key, value) in changes {
        let prev = live.get(key).cloned();
        let now = value.map(|value| {
            let version = prev.as_ref().map_or(1, |prev| prev.version + 1);
            let created = prev.as_ref().map_or(revision, |prev| prev.create_revision);
            SharedEntry::new(Entry {
                value: Bytes::copy_from_slice(value.as_bytes()),
                create_revision: created,
                mod_revision: revision,
                version,
                lease: 0,
            })
        });
        match &now {
            Some(now) => live.insert(key, now.clone()),
            None => live.remove(key),
        };
        history.record(Change {
            revision,
            key: key.as_bytes().into(),
            entry: now,
            prev,
        });
    }
    history
}

fn view(revision: i64, history: History) -> StoreView {
    StoreView { revision, history }
}

fn watcher(key: &str, prefix: bool, start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end: if prefix {
            prefix_end(key.as_bytes())
        } else {
            Vec::new()
        },
        start_revision,
        ..WatchCreateRequest::default()
    }
}

/// `(type, key, value, revision)` of each event.
fn summary(owed: &Owed) -> Vec<(&'static str, String, String, i64)> {
    let Owed::Events { events, .. } = owed else {
        return Vec::new();
    };
    events
        .iter()
        .map(|event| {
            let kv = event.kv.as_ref().expect("an event has its key");
            let kind = match EventType::try_from(event.r#type) {
                Ok(EventType::Delete) => "DELETE",
                _ => "PUT",
            };
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            (kind, text(&kv.key), text(&kv.value), kv.mod_revision)
        })
        .collect()
}

const SOME: &[(i64, &str, Option<&str>)] = &[
    (2, "a/1", Some("x")),
    (3, "b", Some("y")),
    (4, "a/2", Some("z")),
    (4, "a/1", None),
    (5, "a/2", Some("w")),
];

#[test]
fn a_watcher_from_the_past_is_owed_its_keys_events_in_order_then_nothing() {
    let view = view(5, history(SOME));
    let mut watcher = Watcher::new(0, &watcher("a/", true, 2), 5).unwrap();
    let owed = watcher.take_owed(&view);
    assert_eq!(
        summary(&owed),
        vec![
            ("PUT", "a/1".into(), "x".into(), 2),
            ("PUT", "a/2".into(), "z".into(), 4),
            ("DELETE", "a/1".into(), "".into(), 4),
            ("PUT", "a/2".into(), "w".into(), 5),
        ]
    );
    assert!(matches!(owed, Owed::Events { revision: 5, .. }));
    assert_eq!(watcher.take_owed(&view), Owed::Nothing);
    assert!(watcher.has_seen(5));
}

#[test]
fn a_watcher_without_a_start_revision_starts_after_the_current_one() {
    let mut changes = SOME.to_vec();
    let mut watcher = Watcher::new(0, &watcher("a/2", false, 0), 4).unwrap();
    assert_eq!(
        watcher.take_owed(&view(4, history(&changes[..4]))),
        Owed::Nothing
    );
    changes.push((6, "a/2", None));
    let owed = watcher.take_owed(&view(6, history(&changes)));
    assert_eq!(
        summary(&owed),
        vec![
            ("PUT", "a/2".into(), "w".into(), 5),
            ("DELETE", "a/2".into(), "".into(), 6)
        ]
    );
}

#[test]
fn filters_drop_puts_or_deletions_and_prev_kv_brings_the_value_before() {
    let view = view(5, history(SOME));
    let mut request = watcher("a/", true, 1);
    request.filters = vec![FilterType::Noput as i32];
    request.prev_kv = true;
    let mut deletions = Watcher::new(0, &request, 5).unwrap();
    let Owed::Events { events, .. } = deletions.take_owed(&view) else {
        panic!("events owed");
    };
    assert_eq!(events.len(), 1);
    let prev = events[0].prev_kv.as_ref().expect("the deleted key's value");
    assert_eq!(
        (prev.key.as_slice(), prev.value.as_slice()),
        (&b"a/1"[..], &b"x"[..])
    );

    request.filters = vec![FilterType::Nodelete as i32];
    request.prev_kv = false;
    let mut puts = Watcher::new(0, &request, 5).unwrap();
    let owed = puts.take_owed(&view);
    assert_eq!(summary(&owed).len(), 3);
    let Owed::Events { events, .. } = owed else {
        unreachable!()
    };
    assert!(events.iter().all(|event| event.prev_kv.is_none()));
}

#[test]
fn a_watcher_behind_the_compacted_revision_is_told_so_and_one_at_it_gets_its_puts() {
    let mut history = history(SOME);
    history.compact(4);
    let view = view(5, history);
    let mut behind = Watcher::new(0, &watcher("a/", true, 3), 5).unwrap();
    assert_eq!(behind.take_owed(&view), Owed::Compacted(4));
    // etcd keeps the puts at the compacted revision (not the deletions),
    // and cannot give their previous values.
    let mut request = watcher("a/", true, 4);
    request.prev_kv = true;
    let mut at = Watcher::new(0, &request, 5).unwrap();
    let owed = at.take_owed(&view);
    assert_eq!(
        summary(&owed),
        vec![
            ("PUT", "a/2".into(), "z".into(), 4),
            ("PUT", "a/2".into(), "w".into(), 5)
        ]
    );
    let Owed::Events { events, .. } = owed else {
        unreachable!()
    };
    assert!(events[0].prev_kv.is_none());
    assert!(events[1].prev_kv.is_some());
}

#[test]
fn a_watcher_far_behind_catches_up_in_steps_that_never_split_a_revision() {
    let total = REVISIONS_PER_RESPONSE as i64 * 2 + 10;
    let mut changes = Vec::new();
    for revision in 2..2 + total {
        // Two keys per revision, as a transaction writes them.
        changes.push((revision, "k/1", Some("v")));
        changes.push((revision, "k/2", Some("v")));
    }
    let last = 1 + total;
    let view = view(last, history(&changes));
    let mut watcher = Watcher::new(0, &watcher("k/", true, 2), last).unwrap();
    let mut steps = Vec::new();
    loop {
        match watcher.take_owed(&view) {
            Owed::Nothing => break,
            Owed::Events { revision, events } => {
                assert_eq!(events.len() % 2, 0, "a revision split over responses");
                steps.push((revision, events.len()));
            }
            Owed::Compacted(_) => panic!("nothing was compacted"),
        }
    }
    let per_step = REVISIONS_PER_RESPONSE * 2;
    assert_eq!(
        steps,
        vec![
            (1 + REVISIONS_PER_RESPONSE as i64, per_step),
            (1 + 2 * REVISIONS_PER_RESPONSE as i64, per_step),
            (last, 20),
        ]
    );
}

#[test]
fn a_range_that_ends_at_or_before_its_key_is_refused_and_an_empty_key_is_nul() {
    let mut backwards = watcher("b", false, 0);
    backwards.range_end = b"a".to_vec();
    assert_eq!(
        Watcher::new(0, &backwards, 1).unwrap_err().to_string(),
        "mvcc: watcher range is empty"
    );
    let everything = WatchCreateRequest {
        range_end: vec![0],
        ..WatchCreateRequest::default()
    };
    let mut all = Watcher::new(0, &everything, 1).unwrap();
    let owed = all.take_owed(&view(5, history(SOME)));
    assert_eq!(summary(&owed).len(), 5);
}

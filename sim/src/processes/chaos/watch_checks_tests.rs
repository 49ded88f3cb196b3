//! The watch checker on small hand-made runs: a faithful pair of watchers
//! passes, and each way a watcher can lie (a gap, a repeat, a swap, a
//! changed value, a lost tail) is caught and named.

use super::*;

/// An answered write of `value` to `key`, at `revision`, called at
/// `call_time` and answered 5 later.
fn answered(key: Key, value: u64, call_time: u64, revision: i64) -> AttemptedWrite {
    AttemptedWrite {
        key,
        value,
        call_time,
        completion_time: Some(call_time + 5),
        revision: Some(revision),
    }
}

fn event(revision: i64, key: Key, value: u64) -> WatchEvent {
    WatchEvent {
        revision,
        key,
        value: Some(value),
    }
}

/// Five writes: four answered (revisions 2 to 5), and an unanswered one
/// that took effect at revision 6.
fn writes() -> Vec<AttemptedWrite> {
    vec![
        answered(1, 101, 0, 2),
        answered(2, 201, 10, 3),
        answered(15, 1501, 20, 4),
        answered(1, 102, 30, 5),
        AttemptedWrite {
            key: 2,
            value: 202,
            call_time: 40,
            completion_time: None,
            revision: None,
        },
    ]
}

/// Watcher 0 sees everything; watcher 1 sees keys 0 to 9.
fn faithful_logs() -> Vec<WatcherLog> {
    let everything = WatcherLog {
        watcher: 0,
        member: 1,
        prefix: b"chaos/".to_vec(),
        start_revision: 1,
        events: vec![
            event(2, 1, 101),
            event(3, 2, 201),
            event(4, 15, 1501),
            event(5, 1, 102),
            event(6, 2, 202),
        ],
        told_up_to: 6,
        ..WatcherLog::default()
    };
    let first_ten = WatcherLog {
        watcher: 1,
        member: 2,
        prefix: b"chaos/000000000".to_vec(),
        events: vec![
            event(2, 1, 101),
            event(3, 2, 201),
            event(5, 1, 102),
            event(6, 2, 202),
        ],
        ..everything.clone()
    };
    vec![everything, first_ten]
}

fn final_state() -> FinalState {
    FinalState {
        revision: Some(6),
        values: BTreeMap::from([(1, Some(102)), (2, Some(202)), (15, Some(1501))]),
    }
}

/// The violations found when `change` is made to the faithful logs.
fn violations_after(change: impl FnOnce(&mut Vec<WatcherLog>)) -> Vec<String> {
    let mut logs = faithful_logs();
    change(&mut logs);
    check_watches(&writes(), &logs, &final_state()).violations
}

fn assert_caught(violations: &[String], expected: &str) {
    assert!(
        violations
            .iter()
            .any(|violation| violation.contains(expected)),
        "expected a violation containing {expected:?}, got {violations:#?}"
    );
}

#[test]
fn faithful_watchers_pass() {
    let verdict = check_watches(&writes(), &faithful_logs(), &final_state());
    assert_eq!(verdict.violations, Vec::<String>::new());
    assert_eq!(verdict.events_checked, 9);
}

#[test]
fn a_skipped_event_is_a_gap() {
    let violations = violations_after(|logs| {
        logs[1].events.remove(1);
    });
    assert_eq!(
        violations,
        vec![
            "watcher 1 (member 2, prefix \"chaos/000000000\"): key 2 at revision 3: missed \
             (value Some(201)), though told everything from 1 to 6"
        ]
    );
}

#[test]
fn a_repeated_event_is_caught() {
    let violations = violations_after(|logs| {
        let again = logs[0].events[2];
        logs[0].events.insert(3, again);
    });
    assert_caught(
        &violations,
        "watcher 0 (member 1, prefix \"chaos/\"): key 15 at revision 4: told twice",
    );
}

#[test]
fn swapped_events_are_out_of_order() {
    let violations = violations_after(|logs| logs[0].events.swap(1, 2));
    assert_caught(&violations, "watcher 0 (member 1, prefix \"chaos/\"): key 2 at revision 3: out of order, after revision 4");
}

#[test]
fn a_changed_value_is_caught() {
    let violations = violations_after(|logs| logs[1].events[2].value = Some(999));
    assert_caught(&violations, "watcher 1 (member 2, prefix \"chaos/000000000\"): key 1 at revision 5: value 999, which no client wrote");
    assert_caught(&violations, "key 1 at revision 5: value Some(999), where another watcher or the write's answer says Some(102)");
}

#[test]
fn a_value_at_the_wrong_revision_or_key_is_caught() {
    let violations = violations_after(|logs| logs[0].events[3].key = 2);
    assert_caught(
        &violations,
        "key 2 at revision 5: value 102, which was written to key 1",
    );
    let violations = violations_after(|logs| {
        logs[0].events[4].revision = 7;
        logs[0].told_up_to = 7;
    });
    assert_caught(
        &violations,
        "key 2 at revision 6: value 202, which another watcher saw at revision 7",
    );
}

#[test]
fn an_unanswered_write_one_watcher_missed_is_caught() {
    // Nobody answered the write of 202, but watcher 0 saw it happen.
    let violations = violations_after(|logs| {
        logs[1].events.pop();
        logs[1].told_up_to = 6;
    });
    assert_caught(
        &violations,
        "watcher 1 (member 2, prefix \"chaos/000000000\"): key 2 at revision 6: missed",
    );
    assert_caught(
        &violations,
        "the final read at revision 6 returned Some(202)",
    );
}

#[test]
fn a_lost_tail_is_caught_by_the_final_reads() {
    let violations = violations_after(|logs| {
        for log in logs.iter_mut() {
            log.events.pop();
        }
    });
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert_caught(&violations, "watcher 0 (member 1, prefix \"chaos/\"): key 2 at revision 3: last saw Some(201), but the final read at revision 6 returned Some(202)");
}

#[test]
fn a_watcher_is_only_held_to_what_it_was_told() {
    // Told everything up to 3 only (it never caught up): the writes after
    // are not owed, and the final values are not checked.
    let violations = violations_after(|logs| {
        logs[1].events.truncate(2);
        logs[1].told_up_to = 3;
    });
    assert_eq!(violations, Vec::<String>::new());
}

#[test]
fn a_delete_or_a_key_outside_the_prefix_is_caught() {
    let violations = violations_after(|logs| logs[0].events[0].value = None);
    assert_caught(
        &violations,
        "key 1 at revision 2: a delete, and no client deletes",
    );
    let violations = violations_after(|logs| logs[1].events.insert(2, event(4, 15, 1501)));
    assert_caught(
        &violations,
        "key 15 at revision 4: outside the watched prefix",
    );
}

#[test]
fn revisions_must_agree_with_real_time() {
    // The write of 1501 was called after the write of 201 was answered,
    // yet the watchers put it first.
    let mut writes = writes();
    writes[1].revision = None;
    writes[2].revision = None;
    let mut logs = faithful_logs();
    logs[0].events[1] = event(3, 15, 1501);
    logs[0].events[2] = event(4, 2, 201);
    logs[1].events[1] = event(4, 2, 201);
    let violations = check_watches(&writes, &logs, &final_state()).violations;
    assert_eq!(
        violations,
        vec![
            "key 15 at revision 3: value 1501 was written after key 2's value 201 was \
             answered at revision 4"
        ]
    );
}

#[test]
fn the_writes_are_puts_and_compare_and_sets_that_may_have_swapped() {
    let operation = |input, completion| Operation {
        client: 0,
        key: 7,
        input,
        call_time: 1,
        completion,
    };
    let history = [
        operation(KvInput::Put { value: 1 }, Some((2, KvOutput::Put))),
        operation(KvInput::Put { value: 2 }, None),
        operation(
            KvInput::Cas {
                expected: None,
                new: 3,
            },
            Some((2, KvOutput::Cas { succeeded: false })),
        ),
        operation(
            KvInput::Cas {
                expected: None,
                new: 4,
            },
            Some((2, KvOutput::Cas { succeeded: true })),
        ),
        operation(KvInput::Get, Some((2, KvOutput::Get(Some(1))))),
    ];
    let revisions = BTreeMap::from([(1, 10), (4, 11)]);
    let writes = attempted_writes(&history, &revisions);
    let summary: Vec<(u64, Option<i64>, bool)> = writes
        .iter()
        .map(|write| (write.value, write.revision, write.completion_time.is_some()))
        .collect();
    assert_eq!(
        summary,
        vec![(1, Some(10), true), (2, None, false), (4, Some(11), true)]
    );
}

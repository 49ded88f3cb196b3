//! A follower accepting the leader's entries (Raft paper §5.3, Figure 2).

use super::fixture::*;
use crate::{LogIndex, Term};

#[test]
fn append_past_the_end_of_the_log_is_rejected_as_too_short() {
    // Raft paper Figure 2, AppendEntries rule 2: "Reply false if log doesn't
    // contain an entry at prevLogIndex"; the hint lets the leader jump back
    // to the follower's last index (§5.3, "the follower can include the
    // term of the conflicting entry and the first index it stores").
    let mut core = CoreBuilder::new(1).log(&[1, 1]).term(1).build();
    let outputs = deliver(
        &mut core,
        message(2, 1, 1, append_entries((5, 1), vec![entry(6, 1)], 0, 3)),
    );
    assert_eq!(
        outputs,
        vec![send(1, 2, 1, append_rejected(5, log_too_short(2), 2, 3))]
    );
}

#[test]
fn append_with_a_term_conflict_is_rejected_with_the_conflicting_run() {
    // Raft paper §5.3: on a mismatch "the follower can include the term of
    // the conflicting entry and the first index it stores for that term".
    let mut core = CoreBuilder::new(1).log(&[1, 2, 2, 2]).term(3).build();
    let outputs = deliver(
        &mut core,
        message(2, 1, 3, append_entries((4, 3), vec![entry(5, 3)], 0, 0)),
    );
    assert_eq!(
        outputs,
        vec![send(1, 2, 3, append_rejected(4, term_mismatch(2, 2), 4, 0))]
    );
    assert_eq!(core.status().last_index, LogIndex(4));
}

#[test]
fn conflicting_suffix_is_replaced_but_committed_entries_are_kept() {
    // Raft paper Figure 2, AppendEntries rule 3: "If an existing entry
    // conflicts with a new one (same index but different terms), delete the
    // existing entry and all that follow it". Committed entries never
    // conflict (§5.4.3), so entry 1 is not rewritten even though the append
    // repeats it.
    let mut core = CoreBuilder::new(1)
        .log(&[1, 2, 2])
        .term(3)
        .applied(1)
        .build();
    let outputs = deliver(
        &mut core,
        message(
            2,
            1,
            3,
            append_entries((0, 0), vec![entry(1, 1), entry(2, 3)], 1, 0),
        ),
    );
    // The acknowledgement waits for the write (see below).
    assert_eq!(outputs, vec![append_log(vec![entry(2, 3)])]);
    let status = core.status();
    assert_eq!(
        (status.last_index, status.last_term),
        (LogIndex(2), Term(3))
    );
    assert_eq!(status.persisted_index, LogIndex(1));
}

#[test]
fn duplicate_append_does_not_truncate_later_entries() {
    // Raft paper Figure 2, AppendEntries rule 3 deletes entries only on a
    // conflict: a delayed append whose entries are already present must not
    // cut off the entries that followed it.
    let mut core = CoreBuilder::new(1)
        .log(&[1, 1, 1])
        .term(1)
        .applied(2)
        .build();
    let outputs = deliver(
        &mut core,
        message(2, 1, 1, append_entries((0, 0), entries(1, &[1, 1]), 2, 0)),
    );
    assert_eq!(outputs, vec![send(1, 2, 1, append_accepted(2, 3, 0))]);
    assert_eq!(core.status().last_index, LogIndex(3));
}

#[test]
fn commit_is_capped_by_the_last_new_entry() {
    // Raft paper Figure 2, AppendEntries rule 5: "If leaderCommit >
    // commitIndex, set commitIndex = min(leaderCommit, index of last new
    // entry)": entries after the append's last one are not known to match
    // the leader's log.
    let mut core = CoreBuilder::new(1).log(&[1, 1, 1]).term(1).build();
    let outputs = deliver(
        &mut core,
        message(2, 1, 1, append_entries((1, 1), vec![], 3, 0)),
    );
    assert_eq!(
        outputs,
        vec![
            send(1, 2, 1, append_accepted(1, 3, 0)),
            apply(vec![entry(1, 1)])
        ]
    );
    assert_eq!(core.commit_index(), LogIndex(1));
}

#[test]
fn acknowledgement_is_held_until_the_entries_are_durable() {
    // Raft paper Figure 2: a follower answers only after its persistent
    // state (the log) is on stable storage; a leader counts the entry as
    // replicated from the answer (§5.3). Committed entries are applied only
    // once durable locally.
    let mut core = CoreBuilder::new(1).term(1).build();
    let outputs = deliver(
        &mut core,
        message(2, 1, 1, append_entries((0, 0), entries(1, &[1, 1]), 1, 0)),
    );
    assert_eq!(outputs, vec![append_log(entries(1, &[1, 1]))]);
    assert_eq!(core.commit_index(), LogIndex(1));
    assert_eq!(
        step(&mut core, persisted(2, 1)),
        vec![
            send(1, 2, 1, append_accepted(2, 2, 0)),
            apply(vec![entry(1, 1)])
        ]
    );
}

#[test]
fn held_acknowledgement_of_replaced_entries_is_never_sent() {
    // Raft paper §5.3: a follower's acknowledgement tells the leader the
    // entries are stored; entries replaced by a later leader before they
    // became durable must never be acknowledged, even when the write that
    // held them completes.
    let mut core = CoreBuilder::new(1).log(&[1]).term(2).build();
    let outputs = deliver(
        &mut core,
        message(2, 1, 2, append_entries((1, 1), entries(2, &[2, 2]), 0, 0)),
    );
    assert_eq!(outputs, vec![append_log(entries(2, &[2, 2]))]);
    let outputs = deliver(
        &mut core,
        message(3, 1, 3, append_entries((1, 1), vec![entry(2, 3)], 0, 0)),
    );
    assert_eq!(
        outputs,
        vec![save_hard_state(3, None), append_log(vec![entry(2, 3)])]
    );
    // The first write completes: its entries are gone, nothing is sent.
    assert_eq!(step(&mut core, persisted(3, 2)), vec![]);
    // The second write completes: only node 3's append is acknowledged.
    assert_eq!(
        step(&mut core, persisted(2, 3)),
        vec![send(1, 3, 3, append_accepted(2, 2, 0))]
    );
}

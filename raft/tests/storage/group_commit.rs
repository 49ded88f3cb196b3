//! Group commit and the non-blocking driver path: concurrent appenders
//! share fdatasyncs, the listener reports durability in order, hard states
//! are ordered with entries, and memory stays bounded.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use raft::storage::{ClusterId, Durable, LogStore, WalOptions};
use raft::{HardState, LogIndex, NodeId, Term};

use super::support::{entry, open, small_options};

#[test]
fn concurrent_appenders_share_fdatasyncs() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let options = WalOptions::new(ClusterId(1), NodeId(1));
    let wal = open(directory.path(), &options);
    let next_index = Mutex::new(1u64);
    let threads = 16;
    let appends_per_thread = 40;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..appends_per_thread {
                    // Indexes are handed out in submission order, as a
                    // leader's log does.
                    let ticket = {
                        let mut next = next_index.lock().expect("lock");
                        let ticket = wal
                            .submit_append(vec![entry(*next, 1, 256)].into())
                            .expect("submit");
                        *next += 1;
                        ticket
                    };
                    let durable = wal.wait(ticket).expect("wait");
                    assert!(durable.sequence >= ticket.sequence);
                }
            });
        }
    });
    let total = threads * appends_per_thread;
    let stats = wal.stats();
    assert_eq!(stats.entries_submitted, total);
    assert!(
        stats.fdatasyncs < total,
        "{} fdatasyncs for {total} entries: no batching",
        stats.fdatasyncs
    );
    assert_eq!(wal.durable().last_index, LogIndex(total));
    wal.close().expect("close");
    let wal = open(directory.path(), &options);
    let all = wal.entries(LogIndex(1), LogIndex(total + 1)).expect("read");
    assert_eq!(
        all,
        (1..=total)
            .map(|index| entry(index, 1, 256))
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_listener_reports_every_submission_in_order() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let wal = open(directory.path(), &small_options());
    let (sender, reports) = mpsc::channel::<Durable>();
    wal.set_durable_listener(move |durable| {
        let _ = sender.send(durable);
    });
    let mut last_ticket = None;
    for index in 1..=300u64 {
        let term = 1 + index / 100;
        last_ticket = Some(
            wal.submit_append(vec![entry(index, term, 100)].into())
                .expect("submit"),
        );
        // Readable at once, durable or not.
        assert_eq!(wal.last_index(), LogIndex(index));
        assert_eq!(
            wal.entries(LogIndex(index), LogIndex(index + 1))
                .expect("read"),
            vec![entry(index, term, 100)]
        );
    }
    let last_ticket = last_ticket.expect("a ticket");
    let mut previous = 0;
    let last = loop {
        let report = reports.recv().expect("a report");
        assert!(report.sequence > previous, "reports go forward");
        previous = report.sequence;
        if report.sequence >= last_ticket.sequence {
            break report;
        }
    };
    assert_eq!((last.last_index, last.last_term), (LogIndex(300), Term(4)));
}

#[test]
fn a_submission_to_wait_for_is_written_by_the_waiter_and_reported() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let options = WalOptions::new(ClusterId(1), NodeId(1));
    let wal = open(directory.path(), &options);
    let (sender, reports) = mpsc::channel::<Durable>();
    wal.set_durable_listener(move |durable| {
        let _ = sender.send(durable);
    });
    let first = wal
        .submit_append_to_wait(vec![entry(1, 1, 64), entry(2, 1, 64)].into())
        .expect("submit");
    let second = wal
        .submit_append_to_wait(vec![entry(3, 1, 64)].into())
        .expect("submit");
    assert_eq!(wal.last_index(), LogIndex(3), "readable at once");
    let durable = wal.wait(second).expect("wait");
    assert!(durable.sequence >= second.sequence && second.sequence > first.sequence);
    assert_eq!(
        (durable.last_index, durable.last_term),
        (LogIndex(3), Term(1))
    );
    // Reported to the listener like any batch.
    let report = reports.recv().expect("a report");
    assert_eq!(report.last_index, LogIndex(3));
    assert_eq!(wal.stats().entries_submitted, 3);
    wal.close().expect("close");
    let wal = open(directory.path(), &options);
    assert_eq!(
        wal.entries(LogIndex(1), LogIndex(4)).expect("read"),
        vec![entry(1, 1, 64), entry(2, 1, 64), entry(3, 1, 64)]
    );
}

#[test]
fn hard_states_and_entries_reach_the_disk_in_submission_order() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let options = small_options();
    let wal = open(directory.path(), &options);
    let mut tickets = Vec::new();
    for term in 1..=20u64 {
        let hard_state = HardState {
            term: Term(term),
            voted_for: Some(NodeId(1)),
        };
        tickets.push(wal.submit_hard_state(hard_state).expect("hard state"));
        tickets.push(
            wal.submit_append(vec![entry(term, term, 300)].into())
                .expect("append"),
        );
    }
    let last = *tickets.last().expect("tickets");
    wal.wait(last).expect("wait");
    for ticket in tickets {
        // Every earlier ticket is durable once a later one is.
        wal.wait(ticket).expect("wait");
    }
    wal.close().expect("close");
    let wal = open(directory.path(), &options);
    assert_eq!(wal.hard_state().term, Term(20));
    assert_eq!(wal.last_index(), LogIndex(20));
    assert_eq!(wal.term(LogIndex(20)).ok(), Some(Term(20)));
}

#[test]
fn memory_stays_bounded_and_old_entries_come_from_disk() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let options = WalOptions {
        segment_size_bytes: 1 << 20,
        cache_size_bytes: 256 << 10,
        ..WalOptions::new(ClusterId(1), NodeId(1))
    };
    let mut wal = open(directory.path(), &options);
    let count = 16_000u64; // 16 MiB of payload, 64 times the cache
    for first in (1..=count).step_by(100) {
        let batch = (first..first + 100)
            .map(|index| entry(index, 1, 1024))
            .collect();
        wal.append(batch).expect("append");
        assert!(
            wal.cache_size_bytes() <= options.cache_size_bytes,
            "cache holds {} bytes",
            wal.cache_size_bytes()
        );
    }
    for (low, high) in [(1, 50), (7_777, 7_800), (15_990, 16_001)] {
        let read = wal.entries(LogIndex(low), LogIndex(high)).expect("read");
        let expected: Vec<_> = (low..high).map(|index| entry(index, 1, 1024)).collect();
        assert_eq!(read, expected);
    }
    // A purge removes whole segments below the snapshot.
    let segments_before = super::support::segments(directory.path()).len();
    wal.purge_to(LogIndex(12_000), Term(1)).expect("purge");
    let segments_after = super::support::segments(directory.path()).len();
    assert!(
        segments_before >= 16 && segments_after <= 6,
        "{segments_before} -> {segments_after}"
    );
    assert_eq!(wal.first_index(), LogIndex(12_001));
}

#[test]
fn a_wal_shared_between_threads_through_an_arc() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let wal = Arc::new(open(directory.path(), &small_options()));
    let writer = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            for index in 1..=200 {
                let ticket = wal
                    .submit_append(vec![entry(index, 1, 50)].into())
                    .expect("submit");
                if index % 50 == 0 {
                    wal.wait(ticket).expect("wait");
                }
            }
        })
    };
    // Reads run alongside the appends.
    while wal.durable().last_index < LogIndex(200) {
        let last = wal.last_index();
        if last >= LogIndex(1) {
            let read = wal.entries(LogIndex(1), last.next()).expect("read");
            assert_eq!(read.len() as u64, last.0);
        }
    }
    writer.join().expect("writer thread");
}

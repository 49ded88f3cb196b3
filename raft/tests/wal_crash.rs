//! Real crashes: a child process appends (with truncations, hard states and
//! purges) and prints what the WAL acknowledged as durable; the test kills
//! it with SIGKILL at random moments, recovers, and checks that the
//! acknowledged log is there, entry for entry, and that nothing invalid
//! (past a torn record) is returned.
//!
//! Every entry embeds a hash chain: its own hash and its predecessor's,
//! where `hash = mix(previous hash, index, term)`. An entry's hash therefore
//! pins down the whole log before it, and the chain lets the parent check
//! every recovered entry without knowing the child's history.
//!
//! The child prints, before each append, `SUB <sequence> <first index>
//! <term> <hash before it>`, and once a submission is durable, `ACK
//! <sequence> <last index> <its term> <its hash> <hard state term>`. Like a
//! Raft follower, the child may later overwrite acknowledged entries, so
//! the recovered log must either hold the last acknowledged entry, or hold a
//! later append that replaced it: the prefix it was appended to (by hash)
//! and at least its first entry.
//!
//! The child is this test binary itself, re-run on the one test
//! [`child_process_for_crash_test`], which does nothing unless the
//! environment asks it to be the child. It lives in its own test binary:
//! a child spawned while another test holds a data directory's lock would
//! inherit the lock's descriptor until it execs, and that test's reopen
//! would find the directory busy.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft::storage::{ClusterId, Durable, LogStore, Wal, WalOptions};
use raft::{Entry, EntryPayload, HardState, LogIndex, NodeId, Term};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const CHILD_DIRECTORY: &str = "RUSTYRAFT_CRASH_CHILD_DIRECTORY";
const CHILD_SEED: &str = "RUSTYRAFT_CRASH_CHILD_SEED";
const KILLS: u64 = 30;

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 16 << 10,
        cache_size_bytes: 8 << 10,
        ..WalOptions::new(ClusterId(5), NodeId(1))
    }
}

fn mix(previous: u64, index: u64, term: u64) -> u64 {
    // splitmix64's finaliser over the three inputs.
    let mut value = previous ^ index.rotate_left(17) ^ term.rotate_left(41) ^ 0x9e37_79b9_7f4a_7c15;
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

fn chained_entry(index: u64, term: u64, previous: u64) -> (Entry, u64) {
    let hash = mix(previous, index, term);
    let mut payload = Vec::with_capacity(16 + 200);
    payload.extend_from_slice(&hash.to_le_bytes());
    payload.extend_from_slice(&previous.to_le_bytes());
    payload.resize(16 + (hash % 200) as usize, hash as u8);
    let entry = Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Command(payload.into()),
    };
    (entry, hash)
}

/// Checks an entry's payload against its index and term; returns its hash
/// and its predecessor's.
fn check_entry(entry: &Entry) -> Result<(u64, u64), String> {
    let EntryPayload::Command(payload) = &entry.payload else {
        return Err(format!("entry {} is not a command", entry.index));
    };
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            payload.get(at..at + 8)?.try_into().ok()?,
        ))
    };
    let (Some(hash), Some(previous)) = (word(0), word(8)) else {
        return Err(format!("entry {} is too short", entry.index));
    };
    let (expected, _) = chained_entry(entry.index.0, entry.term.0, previous);
    if entry != &expected {
        return Err(format!(
            "entry {} does not match its own hash chain",
            entry.index
        ));
    }
    Ok((hash, previous))
}

/// The child: appends forever (until killed), printing acknowledgements.
#[test]
fn child_process_for_crash_test() {
    let (Ok(directory), Ok(seed)) = (std::env::var(CHILD_DIRECTORY), std::env::var(CHILD_SEED))
    else {
        return; // not the child: nothing to do
    };
    let seed: u64 = seed.parse().expect("seed");
    let wal = Wal::open(&directory, options()).expect("child: open");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // The live log's hashes, from first_index on.
    let mut first = wal.first_index().0;
    let mut hashes: VecDeque<u64> = VecDeque::new();
    let recovered = wal
        .entries(wal.first_index(), wal.last_index().next())
        .expect("child: read");
    for entry in &recovered {
        hashes.push_back(check_entry(entry).expect("child: recovered entry").0);
    }
    let mut term = wal
        .last_term()
        .expect("last term")
        .0
        .max(wal.hard_state().term.0)
        .max(1);
    let mut hard_state_term = wal.hard_state().term.0;

    // Submissions awaiting durability, each with what it will make durable,
    // printed by the listener once durable.
    let pending: Arc<Mutex<VecDeque<Acknowledged>>> = Arc::default();
    let listener_pending = pending.clone();
    wal.set_durable_listener(move |durable: Durable| {
        let mut latest = None;
        {
            let mut pending = listener_pending.lock().expect("lock");
            while pending
                .front()
                .is_some_and(|item| item.sequence <= durable.sequence)
            {
                latest = pending.pop_front();
            }
        }
        if let Some(Acknowledged {
            sequence,
            index,
            term,
            hash,
            hard_state_term,
        }) = latest
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "ACK {sequence} {index} {term} {hash} {hard_state_term}"
            );
            let _ = out.flush();
        }
    });
    // The sequence number the next submission gets.
    let mut next_sequence = 1u64;
    println!("READY");
    let _ = std::io::stdout().flush();

    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let last = first + hashes.len() as u64 - 1;
        let ticket = match rng.next_u64() % 100 {
            0..=4 if hashes.len() > 1 => {
                // A new leader overwrites a suffix.
                let back = 1 + rng.next_u64() % (hashes.len() as u64 - 1).min(20);
                let start = last + 1 - back;
                hashes.truncate((start - first) as usize);
                term += 1;
                hard_state_term = term;
                wal.submit_hard_state(HardState {
                    term: Term(term),
                    voted_for: Some(NodeId(2)),
                })
                .expect("child: hard state");
                next_sequence += 1;
                let count = 1 + rng.next_u64() % 5;
                append(&wal, &mut hashes, start, count, term, next_sequence)
            }
            5..=9 => {
                hard_state_term = hard_state_term.max(term);
                wal.submit_hard_state(HardState {
                    term: Term(hard_state_term),
                    voted_for: None,
                })
                .expect("child: hard state")
            }
            10..=12 if hashes.len() > 60 => {
                let index = first + rng.next_u64() % (hashes.len() as u64 - 40);
                let index_term = wal.term(LogIndex(index)).expect("child: term").0;
                let ticket = wal
                    .submit_purge(LogIndex(index), Term(index_term))
                    .expect("child: purge");
                hashes.drain(..(index + 1 - first) as usize);
                first = index + 1;
                ticket
            }
            _ => {
                let count = 1 + rng.next_u64() % 16;
                append(&wal, &mut hashes, last + 1, count, term, next_sequence)
            }
        };
        assert_eq!(ticket.sequence, next_sequence, "child: sequence numbers");
        next_sequence += 1;
        let last = first + hashes.len() as u64 - 1;
        let hash = hashes.back().copied().unwrap_or(0);
        pending.lock().expect("lock").push_back(Acknowledged {
            sequence: ticket.sequence,
            index: last,
            term: wal.term(LogIndex(last)).expect("term").0,
            hash,
            hard_state_term,
        });
        if ticket.sequence > wal.durable().sequence + 64 {
            wal.wait(ticket).expect("child: wait");
        }
    }
    wal.close().expect("child: close");
}

/// Submits `count` chained entries from `start`, announcing them first;
/// returns the ticket.
fn append(
    wal: &Wal,
    hashes: &mut VecDeque<u64>,
    start: u64,
    count: u64,
    term: u64,
    next_sequence: u64,
) -> raft::storage::Ticket {
    let mut previous = hashes.back().copied().unwrap_or(0);
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "SUB {next_sequence} {start} {term} {previous}");
        let _ = out.flush();
    }
    let mut entries = Vec::new();
    for index in start..start + count {
        let (entry, hash) = chained_entry(index, term, previous);
        hashes.push_back(hash);
        previous = hash;
        entries.push(entry);
    }
    wal.submit_append(entries.into()).expect("child: append")
}

/// The last acknowledgement seen: the log up to `index` (whose term and
/// hash are given) and the hard state term are durable.
#[derive(Clone, Copy, Debug, Default)]
struct Acknowledged {
    sequence: u64,
    index: u64,
    term: u64,
    hash: u64,
    hard_state_term: u64,
}

/// An append the child announced: entries from `start` of `term`, after
/// the entry of hash `previous`.
#[derive(Clone, Copy, Debug)]
struct Submitted {
    sequence: u64,
    start: u64,
    term: u64,
    previous: u64,
}

#[derive(Debug, Default)]
struct ChildOutput {
    ready: bool,
    acknowledged: Option<Acknowledged>,
    submitted: Vec<Submitted>,
    acknowledgements: u64,
}

impl ChildOutput {
    fn read_line(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let tag = words.next();
        let numbers: Vec<u64> = words.filter_map(|word| word.parse().ok()).collect();
        match (tag, numbers.as_slice()) {
            (Some("READY"), _) => self.ready = true,
            (Some("ACK"), &[sequence, index, term, hash, hard_state_term]) => {
                self.acknowledgements += 1;
                self.acknowledged = Some(Acknowledged {
                    sequence,
                    index,
                    term,
                    hash,
                    hard_state_term,
                });
            }
            (Some("SUB"), &[sequence, start, term, previous]) => self.submitted.push(Submitted {
                sequence,
                start,
                term,
                previous,
            }),
            _ => {}
        }
    }
}

#[test]
fn acknowledged_entries_survive_sigkill() {
    let data = tempfile::tempdir().expect("temporary directory");
    let executable = std::env::current_exe().expect("test executable");
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_c4a5);
    let mut acknowledged = Acknowledged::default();
    // The appends announced since `acknowledged`, over every generation
    // since it: a generation that prints no acknowledgement leaves both in
    // force, and the replacements made before it are still on disk.
    let mut later: Vec<Submitted> = Vec::new();
    let (mut entries_checked, mut acknowledgements, mut torn_tails) = (0u64, 0u64, 0u64);
    let mut replaced_after_acknowledgement = 0u64;
    for generation in 0..KILLS {
        let mut child = Command::new(&executable)
            .args(["--exact", "child_process_for_crash_test"])
            .args(["--nocapture", "--test-threads=1", "--quiet"])
            .env(CHILD_DIRECTORY, data.path())
            .env(CHILD_SEED, generation.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child");
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let kill_after = rng.next_u64() % 120;
        let mut output = ChildOutput::default();
        let mut line = String::new();
        // Read until READY and `kill_after` acknowledgements, then kill.
        while !output.ready || output.acknowledgements < kill_after {
            line.clear();
            if stdout.read_line(&mut line).expect("read child") == 0 {
                panic!("generation {generation}: the child ended early");
            }
            output.read_line(&line);
        }
        // A little more run time, so the kill lands anywhere in a batch.
        let spin = Duration::from_micros(rng.next_u64() % 1500);
        let start = Instant::now();
        while start.elapsed() < spin {
            std::hint::spin_loop();
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap the child");
        // Lines printed before the kill are still in the pipe; a partial
        // last line is not one.
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).expect("drain");
        for line in rest
            .split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
        {
            output.read_line(line);
        }
        acknowledgements += output.acknowledgements;
        // Sequence numbers restart with each child; appends announced after
        // the last acknowledgement, in this generation or in earlier ones
        // that printed none, may have replaced acknowledged entries.
        match output.acknowledged {
            Some(last) => {
                acknowledged = last;
                later.clear();
                later.extend(
                    output
                        .submitted
                        .iter()
                        .filter(|sub| sub.sequence > last.sequence),
                );
            }
            None => later.extend(output.submitted.iter().copied()),
        }

        let wal = Wal::open(data.path(), options()).expect("recover after SIGKILL");
        torn_tails += u64::from(wal.recovery_report().torn_tail.is_some());
        let (checked, replaced) = check_recovered(&wal, acknowledged, &later, generation);
        entries_checked += checked;
        replaced_after_acknowledgement += u64::from(replaced);
        wal.close().expect("close");
    }
    eprintln!(
        "crash test: {KILLS} SIGKILLs, {acknowledgements} acknowledgements, \
         {entries_checked} recovered entries checked, {torn_tails} torn tails cut, \
         {replaced_after_acknowledgement} acknowledged logs legitimately replaced by a later append"
    );
    assert!(acknowledgements > 0);
}

/// Checks the recovered log's chain and that it holds the acknowledged log
/// or a later append that replaced it; returns the number of entries
/// checked, and whether a later append replaced the acknowledged entry.
fn check_recovered(
    wal: &Wal,
    acknowledged: Acknowledged,
    later: &[Submitted],
    generation: u64,
) -> (u64, bool) {
    let context = format!("after kill {generation}");
    let entries = wal
        .entries(wal.first_index(), wal.last_index().next())
        .unwrap_or_else(|error| panic!("{context}: reading the log: {error}"));
    let mut previous_hash = None;
    let mut hashes = Vec::with_capacity(entries.len());
    for entry in &entries {
        let (hash, previous) =
            check_entry(entry).unwrap_or_else(|error| panic!("{context}: {error}"));
        if let Some(expected) = previous_hash {
            assert_eq!(
                previous, expected,
                "{context}: entry {} breaks the chain",
                entry.index
            );
        }
        previous_hash = Some(hash);
        hashes.push(hash);
    }
    assert!(
        wal.hard_state().term.0 >= acknowledged.hard_state_term,
        "{context}: hard state term {} below the acknowledged {}",
        wal.hard_state().term,
        acknowledged.hard_state_term
    );
    let first = wal.first_index().0;
    // The hash of the recovered entry at `index` (None past the end);
    // Some(None) for an index in the snapshot, which cannot be checked.
    let hash_at = |index: u64| -> Option<Option<u64>> {
        if index < first {
            return Some(None);
        }
        hashes.get((index - first) as usize).map(|hash| Some(*hash))
    };
    let holds_acknowledged = match hash_at(acknowledged.index) {
        Some(None) => true,
        Some(Some(hash)) => hash == acknowledged.hash,
        None => false,
    };
    if holds_acknowledged {
        return (entries.len() as u64, false);
    }
    // A later append replaced it if the recovered log holds that append's
    // chain: its first entry, or (if a later purge removed that one) the
    // first recovered entry, with the hash the append's chain gives there.
    // (Entries appended later in the same term continue the same chain.)
    let replaced = later.iter().any(|sub| {
        if sub.start > acknowledged.index {
            return false;
        }
        let at = sub.start.max(first);
        let mut expected = sub.previous;
        for index in sub.start..=at {
            expected = mix(expected, index, sub.term);
        }
        hash_at(at) == Some(Some(expected))
    });
    assert!(
        replaced,
        "{context}: the acknowledged log (up to {}, {}) is missing and no later append \
         replaced it (recovered log: {} to {})",
        acknowledged.index,
        acknowledged.term,
        wal.first_index(),
        wal.last_index()
    );
    (entries.len() as u64, true)
}

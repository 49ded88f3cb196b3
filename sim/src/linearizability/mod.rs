//! Linearizability checking of client histories against a key-value model.
//!
//! The model is one register per key. A register starts absent (`None`);
//! `Put` overwrites it, `Get` reads it, and `Cas` writes `new` only if the
//! register holds `expected`. A history is linearizable if every operation can
//! be given one instant between its call and its completion such that, taken
//! in that order, the operations are a legal sequential run of the model.
//! Operation A must come before B when A completed strictly before B was
//! called; equal times mean the two were concurrent.
//!
//! Keys never interact, and linearizability is compositional, so each key is
//! checked on its own, which keeps every search small.
//!
//! The search for one key is Wing and Gong's backtracking algorithm with
//! Lowe's memoisation. Call and return events sit in one time-ordered list.
//! Any operation whose call comes before the first return still in the list
//! may be linearized next; doing so unlinks both of its events and restarts
//! the scan. Reaching a return means its operation was never placed, so the
//! last choice is undone. A set of (operations linearized, register value)
//! pairs remembers the states already explored, because reaching one again
//! cannot lead anywhere new.
//!
//! An operation whose client never learned the outcome (`completion: None`)
//! may take effect at any time after its call, or never; it has no return
//! event, so it never forces a backtrack, and the search succeeds once every
//! answered operation is placed. Such writes are what make a failing search
//! expensive, since each subset of them placed is another state, so two exact
//! reductions keep them in check: an unanswered write that nothing left can
//! observe or need is taken never to happen rather than tried, and of the
//! unanswered writes whose values nothing left can tell apart only the
//! earliest called is tried next.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// Key of a register. Each key is an independent register, checked separately.
pub type Key = u64;

/// What a client asked one key's register to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Overwrite the register.
    Put {
        /// The value written; distinct from every other write in the history.
        value: u64,
    },
    /// Read the register.
    Get,
    /// Write `new` if and only if the register holds `expected`.
    Cas {
        /// The value the register must hold for the swap; `None` means absent.
        expected: Option<u64>,
        /// The value written on success; distinct from every other write.
        new: u64,
    },
}

/// What the register answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The put took effect.
    Put,
    /// The value read; `None` means the key was absent.
    Get(Option<u64>),
    /// The compare-and-swap's outcome.
    Cas {
        /// True if the register held `expected` and now holds `new`.
        succeeded: bool,
    },
}

/// One client request on one key, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it; only used in explanations.
    pub client: u64,
    /// The register it addressed.
    pub key: Key,
    /// The request.
    pub input: KvInput,
    /// Logical time the client invoked it.
    pub call_time: u64,
    /// Logical time the client got the answer, and the answer; `None` means
    /// indeterminate: the client never learned the outcome, so it may have
    /// taken effect at any time after `call_time`, or never.
    pub completion: Option<(u64, KvOutput)>,
}

/// The outcome of [`check_history`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's operations have a legal linearization.
    Linearizable,
    /// Some key's operations have none.
    NotLinearizable {
        /// The smallest such key.
        key: Key,
        /// The key's operations and the longest linearizable prefix found,
        /// written for a developer hunting the bug.
        explanation: String,
    },
    /// No key was found to be bad, but the search for this one gave up after
    /// exploring `max_states_per_key` states.
    Unknown {
        /// The smallest key whose search gave up.
        key: Key,
        /// How far the search got.
        reason: String,
    },
}

/// Checks that `operations` is linearizable, one key at a time.
///
/// The search for each key records at most `max_states_per_key` distinct
/// states (operations linearized plus register value); needing more gives
/// [`Verdict::Unknown`]. A bad key wins over an unknown one, and among keys of
/// the same verdict the smallest is reported, so the result never depends on
/// the order of `operations`. Explanations name operations `#i`, their index in
/// `operations`.
///
/// # Panics
///
/// If an operation completes before it is called: the history is malformed.
pub fn check_history(operations: &[Operation], max_states_per_key: usize) -> Verdict {
    let mut indices_by_key: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for (index, operation) in operations.iter().enumerate() {
        if let Some((completion_time, _)) = operation.completion {
            assert!(
                completion_time >= operation.call_time,
                "malformed history: operation #{index} completes at {completion_time}, before its call at {}",
                operation.call_time
            );
        } else if operation.input == KvInput::Get {
            // An unanswered read neither changes the register nor observes it.
            continue;
        }
        indices_by_key.entry(operation.key).or_default().push(index);
    }
    let mut first_unknown = None;
    for (&key, indices) in &indices_by_key {
        match KeySearch::new(key, operations, indices).run(max_states_per_key) {
            Outcome::Linearizable => {}
            Outcome::NotLinearizable(explanation) => {
                return Verdict::NotLinearizable { key, explanation }
            }
            Outcome::GaveUp(reason) => {
                first_unknown.get_or_insert(Verdict::Unknown { key, reason });
            }
        }
    }
    first_unknown.unwrap_or(Verdict::Linearizable)
}

/// The register after `input` takes effect on `register`, or `None` if
/// `output` is not what the model would answer there. A missing output (the
/// client never heard back) fits any answer.
fn apply(register: Option<u64>, input: KvInput, output: Option<KvOutput>) -> Option<Option<u64>> {
    match (input, output) {
        (KvInput::Put { value }, None | Some(KvOutput::Put)) => Some(Some(value)),
        (KvInput::Get, None) => Some(register),
        (KvInput::Get, Some(KvOutput::Get(read))) => (read == register).then_some(register),
        (KvInput::Cas { expected, new }, output) => {
            let swaps = register == expected;
            let fits = match output {
                None => true,
                Some(KvOutput::Cas { succeeded }) => succeeded == swaps,
                Some(_) => false,
            };
            fits.then_some(if swaps { Some(new) } else { register })
        }
        _ => None,
    }
}

/// Why `operation` cannot take effect on `register` (assumes it cannot).
fn misfit_reason(register: Option<u64>, operation: &Operation) -> String {
    let held = show(register);
    match (
        operation.input,
        operation.completion.map(|(_, output)| output),
    ) {
        (KvInput::Get, Some(KvOutput::Get(read))) => {
            format!("read {} but the register held {held}", show(read))
        }
        (KvInput::Cas { expected, .. }, Some(KvOutput::Cas { succeeded: true })) => format!(
            "succeeded but the register held {held}, not {}",
            show(expected)
        ),
        (KvInput::Cas { .. }, Some(KvOutput::Cas { succeeded: false })) => {
            format!("failed but the register held {held}, so it would have swapped")
        }
        (input, output) => format!("{} is not an answer to {input}", show_output(output)),
    }
}

fn show(register: Option<u64>) -> String {
    register.map_or_else(|| "absent".to_string(), |value| value.to_string())
}

fn show_output(output: Option<KvOutput>) -> String {
    output.map_or_else(|| "?".to_string(), |output| output.to_string())
}

impl fmt::Display for KvInput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvInput::Put { value } => write!(formatter, "put({value})"),
            KvInput::Get => write!(formatter, "get"),
            KvInput::Cas { expected, new } => {
                write!(formatter, "cas({} -> {new})", show(*expected))
            }
        }
    }
}

impl fmt::Display for KvOutput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Put => write!(formatter, "ok"),
            KvOutput::Get(read) => write!(formatter, "{}", show(*read)),
            KvOutput::Cas { succeeded: true } => write!(formatter, "succeeded"),
            KvOutput::Cas { succeeded: false } => write!(formatter, "failed"),
        }
    }
}

/// One call or return in the event list.
struct Event {
    /// Position of the operation in `KeySearch::operations`.
    operation: usize,
    /// For the call of an answered operation, its return event.
    return_event: Option<usize>,
    is_call: bool,
    previous: usize,
    next: usize,
}

/// Events in time order, as a doubly linked list between two sentinels (the
/// first and last events). An unlinked event keeps its neighbours, so undoing
/// the latest unlinks relinks them in O(1).
struct EventList {
    events: Vec<Event>,
}

impl EventList {
    fn new(operations: &[&Operation]) -> Self {
        // Calls sort before returns at the same time: equal times overlap.
        let mut order = Vec::new();
        for (position, operation) in operations.iter().enumerate() {
            order.push((operation.call_time, false, position));
            if let Some((completion_time, _)) = operation.completion {
                order.push((completion_time, true, position));
            }
        }
        order.sort_unstable();
        let event = |operation, is_call, index: usize| Event {
            operation,
            return_event: None,
            is_call,
            previous: index.wrapping_sub(1),
            next: index + 1,
        };
        let mut events = vec![event(usize::MAX, false, 0)];
        let mut call_events = vec![0; operations.len()];
        for (_, is_return, position) in order {
            let index = events.len();
            if is_return {
                events[call_events[position]].return_event = Some(index);
            } else {
                call_events[position] = index;
            }
            events.push(event(position, !is_return, index));
        }
        events.push(event(usize::MAX, false, events.len()));
        EventList { events }
    }

    fn first(&self) -> usize {
        self.events[0].next
    }

    /// Unlinks a call event and its return event.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if let Some(return_event) = self.events[call].return_event {
            self.unlink(return_event);
        }
    }

    /// Undoes the latest `lift`, which must have been of `call`.
    fn unlift(&mut self, call: usize) {
        if let Some(return_event) = self.events[call].return_event {
            self.relink(return_event);
        }
        self.relink(call);
    }

    fn unlink(&mut self, event: usize) {
        let (previous, next) = (self.events[event].previous, self.events[event].next);
        self.events[previous].next = next;
        self.events[next].previous = previous;
    }

    fn relink(&mut self, event: usize) {
        let (previous, next) = (self.events[event].previous, self.events[event].next);
        self.events[previous].next = event;
        self.events[next].previous = event;
    }
}

/// The search states already explored and failed: a bitset of the
/// operations placed, followed by the register value as two words.
#[derive(Default)]
struct Explored {
    states: HashSet<Box<[u64]>>,
    scratch: Vec<u64>,
}

impl Explored {
    /// Records a state; false if it was explored before.
    fn insert(&mut self, placed: &[u64], register: Option<u64>) -> bool {
        self.scratch.clear();
        self.scratch.extend_from_slice(placed);
        self.scratch
            .extend([u64::from(register.is_some()), register.unwrap_or(0)]);
        !self.states.contains(self.scratch.as_slice())
            && self.states.insert(self.scratch.clone().into_boxed_slice())
    }
}

enum Outcome {
    Linearizable,
    NotLinearizable(String),
    GaveUp(String),
}

/// What the search does next at an event.
enum Step {
    /// Place the operation; the register then holds this.
    Place(Option<u64>),
    /// Take the operation never to happen, which loses no linearization.
    Never,
    /// Pass over the operation: it does not fit, or a twin is tried instead.
    Skip,
    /// Undo the latest choice: a return was reached, so its operation had to
    /// be placed by now, and nothing left here places it.
    Backtrack,
}

/// A step on the search path: a lifted call event.
#[derive(Clone)]
struct Placement {
    call: usize,
    operation: usize,
    register_before: Option<u64>,
    /// True if the operation was taken never to happen rather than placed.
    never: bool,
}

fn output_of(operation: &Operation) -> Option<KvOutput> {
    operation.completion.map(|(_, output)| output)
}

fn written_value(input: KvInput) -> Option<u64> {
    match input {
        KvInput::Put { value } => Some(value),
        KvInput::Cas { new, .. } => Some(new),
        KvInput::Get => None,
    }
}

fn flip(bits: &mut [u64], position: usize) {
    bits[position / 64] ^= 1 << (position % 64);
}

/// The search over one key's operations, and its current state.
struct KeySearch<'a> {
    key: Key,
    /// The key's operations; a position here is a bit in `placed`.
    operations: Vec<&'a Operation>,
    /// Each operation's index in the caller's history.
    history_indices: &'a [usize],
    events: EventList,
    /// For each value, the operations that need the register to hold it:
    /// reads that returned it, and CASes expecting it that did not fail.
    observers_of: BTreeMap<u64, Vec<usize>>,
    /// For each value, the answered CASes that expected it and failed.
    failed_expecting: BTreeMap<u64, Vec<usize>>,
    /// For each value, the operations that may write it.
    writers_of: BTreeMap<u64, Vec<usize>>,
    /// The answered CASes that failed, with the value each expected.
    failed_cases: Vec<(usize, Option<u64>)>,
    /// The unanswered operations (all writes), in event-list order.
    unanswered: Vec<usize>,
    placed: Vec<u64>,
    register: Option<u64>,
    path: Vec<Placement>,
    unplaced_answered: usize,
}

impl<'a> KeySearch<'a> {
    fn new(key: Key, history: &'a [Operation], history_indices: &'a [usize]) -> Self {
        let operations: Vec<&Operation> = history_indices
            .iter()
            .map(|&index| &history[index])
            .collect();
        let mut observers_of: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut failed_expecting: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut writers_of: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let (mut failed_cases, mut unanswered) = (Vec::new(), Vec::new());
        for (position, operation) in operations.iter().enumerate() {
            if let Some(value) = written_value(operation.input) {
                writers_of.entry(value).or_default().push(position);
            }
            let expected = match operation.input {
                KvInput::Cas { expected, .. } => expected,
                _ => None,
            };
            let needs = match output_of(operation) {
                Some(KvOutput::Get(read)) => read,
                Some(KvOutput::Cas { succeeded: false }) => {
                    failed_cases.push((position, expected));
                    if let Some(expected) = expected {
                        failed_expecting.entry(expected).or_default().push(position);
                    }
                    None
                }
                None => {
                    unanswered.push(position);
                    expected
                }
                _ => expected,
            };
            if let Some(value) = needs {
                observers_of.entry(value).or_default().push(position);
            }
        }
        unanswered.sort_by_key(|&position| (operations[position].call_time, position));
        KeySearch {
            key,
            events: EventList::new(&operations),
            placed: vec![0; operations.len().div_ceil(64)],
            unplaced_answered: operations.len() - unanswered.len(),
            operations,
            history_indices,
            observers_of,
            failed_expecting,
            writers_of,
            failed_cases,
            unanswered,
            register: None,
            path: Vec::new(),
        }
    }

    fn is_placed(&self, position: usize) -> bool {
        self.placed[position / 64] & (1 << (position % 64)) != 0
    }

    fn all_placed(&self, positions: Option<&Vec<usize>>) -> bool {
        positions.is_none_or(|positions| positions.iter().all(|&other| self.is_placed(other)))
    }

    /// An unanswered write is anonymous when nothing left can tell its value
    /// from another such write's: nothing left observes it, no failed CAS
    /// left expects it, and nothing else writes it.
    fn is_anonymous(&self, position: usize) -> bool {
        written_value(self.operations[position].input).is_some_and(|value| {
            self.writers_of[&value].len() == 1
                && self.all_placed(self.observers_of.get(&value))
                && self.all_placed(self.failed_expecting.get(&value))
        })
    }

    fn next_step(&self, event: usize) -> Step {
        let Event {
            operation: position,
            is_call,
            ..
        } = self.events.events[event];
        if !is_call {
            return Step::Backtrack;
        }
        let operation = self.operations[position];
        let Some(after) = apply(self.register, operation.input, output_of(operation)) else {
            return Step::Skip;
        };
        let value = match (operation.completion, written_value(operation.input)) {
            (None, Some(value)) if self.all_placed(self.observers_of.get(&value)) => value,
            _ => return Step::Place(after),
        };
        // An unanswered write nothing left observes: placed anywhere, its
        // value would last until the next put unread, so its only use is to
        // make a failed CAS left fail. If none could need it (a CAS expecting
        // a value that is gone fails regardless, as values never come back
        // once all their writers are placed, and nothing writes `None`),
        // taking it never to happen is as good as placing it.
        let needed = self.failed_cases.iter().any(|&(failed, expected)| {
            !self.is_placed(failed)
                && expected != Some(value)
                && (expected == self.register
                    || expected.is_some_and(|gone| !self.all_placed(self.writers_of.get(&gone))))
        });
        if !needed {
            return Step::Never;
        }
        // Anonymous writes are interchangeable (swapping two in any
        // linearization leaves one), so only the earliest called is tried.
        let has_earlier_twin = self.is_anonymous(position)
            && self
                .unanswered
                .iter()
                .take_while(|&&other| other != position)
                .any(|&other| !self.is_placed(other) && self.is_anonymous(other));
        if has_earlier_twin {
            Step::Skip
        } else {
            Step::Place(after)
        }
    }

    fn run(&mut self, max_states: usize) -> Outcome {
        let mut explored = Explored::default();
        let mut longest_path = Vec::new();
        let mut event = self.events.first();
        while self.unplaced_answered > 0 {
            let position = self.events.events[event].operation;
            let next = self.events.events[event].next;
            let (after, never) = match self.next_step(event) {
                Step::Place(after) => (after, false),
                Step::Never => (self.register, true),
                Step::Skip => {
                    event = next;
                    continue;
                }
                Step::Backtrack => {
                    let Some(resume) = self.backtrack() else {
                        return Outcome::NotLinearizable(self.explain(&longest_path));
                    };
                    event = resume;
                    continue;
                }
            };
            flip(&mut self.placed, position);
            if !explored.insert(&self.placed, after) {
                flip(&mut self.placed, position);
                // Taking a write never to happen is not a choice: if that
                // failed, so does the state before it.
                let resume = if never { self.backtrack() } else { Some(next) };
                let Some(resume) = resume else {
                    return Outcome::NotLinearizable(self.explain(&longest_path));
                };
                event = resume;
                continue;
            }
            if explored.states.len() > max_states {
                return Outcome::GaveUp(format!(
                    "key {}: gave up after {max_states} states, with at most {} of {} operations linearized; raise max_states_per_key or check a shorter history",
                    self.key,
                    longest_path.len(),
                    self.operations.len()
                ));
            }
            let register_before = self.register;
            self.path.push(Placement {
                call: event,
                operation: position,
                register_before,
                never,
            });
            self.register = after;
            self.events.lift(event);
            self.unplaced_answered -= usize::from(self.operations[position].completion.is_some());
            if self.path.len() > longest_path.len() {
                longest_path.clone_from(&self.path);
            }
            event = self.events.first();
        }
        Outcome::Linearizable
    }

    /// Undoes placements up to and including the latest real choice, and
    /// returns the event after that choice's call, where the scan resumes;
    /// `None` if no choice is left to undo.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let placement = self.path.pop()?;
            flip(&mut self.placed, placement.operation);
            self.register = placement.register_before;
            self.events.unlift(placement.call);
            let operation = self.operations[placement.operation];
            self.unplaced_answered += usize::from(operation.completion.is_some());
            if !placement.never {
                return Some(self.events.events[placement.call].next);
            }
        }
    }

    fn describe(&self, position: usize) -> String {
        let operation = self.operations[position];
        let outcome = match operation.completion {
            Some((time, output)) => format!(
                "{output} (called at {}, returned at {time})",
                operation.call_time
            ),
            None => format!("? (called at {}, never answered)", operation.call_time),
        };
        let index = self.history_indices[position];
        format!(
            "#{index} client {}: {} -> {outcome}",
            operation.client, operation.input
        )
    }

    fn explain(&self, longest_path: &[Placement]) -> String {
        const PATH_SHOWN: usize = 12;
        let count = self.operations.len();
        let mut text = format!(
            "key {}: no linearization of these {count} operations exists (#i = index in the history):\n",
            self.key
        );
        let mut by_call: Vec<usize> = (0..count).collect();
        by_call.sort_by_key(|&position| (self.operations[position].call_time, position));
        for &position in &by_call {
            text += &format!("  {}\n", self.describe(position));
        }
        text += &format!(
            "longest linearizable prefix found ({} of {count}), with the register after each:\n",
            longest_path.len()
        );
        let hidden = longest_path.len().saturating_sub(PATH_SHOWN);
        if hidden > 0 {
            text += &format!("  ... {hidden} earlier operations\n");
        }
        let mut register = None;
        let mut placed = vec![false; count];
        for (step, placement) in longest_path.iter().enumerate() {
            let operation = self.operations[placement.operation];
            if !placement.never {
                register = apply(register, operation.input, output_of(operation))
                    .expect("every path the search recorded replays");
            }
            placed[placement.operation] = true;
            let effect = if placement.never {
                "never happens".to_string()
            } else {
                show(register)
            };
            if step >= hidden {
                let index = self.history_indices[placement.operation];
                text += &format!("  #{index} {} => {effect}\n", operation.input);
            }
        }
        if longest_path.is_empty() {
            text += "  (none)\n";
        }
        // The earliest return not yet placed is the deadline; everything
        // called by then was a candidate for the next place.
        let deadline = (0..count)
            .filter(|&position| !placed[position])
            .filter_map(|position| Some((self.operations[position].completion?.0, position)))
            .min();
        if let Some((deadline_time, deadline_position)) = deadline {
            text += &format!(
                "then the register holds {} and #{} must take effect by time {deadline_time}, but no candidate for the next place works:\n",
                show(register),
                self.history_indices[deadline_position]
            );
            for &position in &by_call {
                let operation = self.operations[position];
                if placed[position] || operation.call_time > deadline_time {
                    continue;
                }
                let reason = match apply(register, operation.input, output_of(operation)) {
                    None => misfit_reason(register, operation),
                    Some(_) => "fits here, but every continuation after it fails".to_string(),
                };
                let (index, output) = (
                    self.history_indices[position],
                    show_output(output_of(operation)),
                );
                text += &format!("  #{index} {} -> {output}: {reason}\n", operation.input);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests;

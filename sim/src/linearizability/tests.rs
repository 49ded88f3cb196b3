//! Tests of the linearizability checker: known good and bad histories,
//! and property tests against generated and brute-force-checked ones.

use super::*;
use proptest::prelude::*;

const BUDGET: usize = 1_000_000;

fn answered(
    client: u64,
    input: KvInput,
    call_time: u64,
    completion_time: u64,
    output: KvOutput,
) -> Operation {
    Operation {
        client,
        key: 0,
        input,
        call_time,
        completion: Some((completion_time, output)),
    }
}

fn put(client: u64, value: u64, call_time: u64, completion_time: u64) -> Operation {
    answered(
        client,
        KvInput::Put { value },
        call_time,
        completion_time,
        KvOutput::Put,
    )
}

fn get(client: u64, read: Option<u64>, call_time: u64, completion_time: u64) -> Operation {
    answered(
        client,
        KvInput::Get,
        call_time,
        completion_time,
        KvOutput::Get(read),
    )
}

fn cas(
    client: u64,
    expected: Option<u64>,
    new: u64,
    succeeded: bool,
    call_time: u64,
    completion_time: u64,
) -> Operation {
    answered(
        client,
        KvInput::Cas { expected, new },
        call_time,
        completion_time,
        KvOutput::Cas { succeeded },
    )
}

fn unanswered_put(client: u64, value: u64, call_time: u64) -> Operation {
    Operation {
        client,
        key: 0,
        input: KvInput::Put { value },
        call_time,
        completion: None,
    }
}

fn on_key(key: Key, operation: Operation) -> Operation {
    Operation { key, ..operation }
}

fn check(operations: &[Operation]) -> Verdict {
    check_history(operations, BUDGET)
}

fn assert_violation_on(key: Key, verdict: Verdict) -> String {
    match verdict {
        Verdict::NotLinearizable {
            key: bad_key,
            explanation,
        } if bad_key == key => explanation,
        other => panic!("expected key {key} not to be linearizable, got {other:?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(check(&[]), Verdict::Linearizable);
}

#[test]
fn sequential_history_that_follows_the_model_is_linearizable() {
    // One client: read absent, write 1, read 1, write 2, read 2.
    let history = [
        get(1, None, 0, 1),
        put(1, 1, 2, 3),
        get(1, Some(1), 4, 5),
        put(1, 2, 6, 7),
        get(1, Some(2), 8, 9),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
}

#[test]
fn sequential_read_of_a_value_before_it_is_written_is_not_linearizable() {
    // The read completes before the put that writes 1 is even called.
    let history = [get(1, Some(1), 0, 1), put(1, 1, 2, 3)];
    assert_violation_on(0, check(&history));
}

#[test]
fn read_overlapping_a_write_may_see_either_value() {
    // The read overlaps the put, so it may be ordered before or after it.
    assert_eq!(
        check(&[put(1, 1, 0, 10), get(2, None, 2, 8)]),
        Verdict::Linearizable
    );
    assert_eq!(
        check(&[put(1, 1, 0, 10), get(2, Some(1), 2, 8)]),
        Verdict::Linearizable
    );
}

#[test]
fn equal_times_count_as_concurrent() {
    // The put returns at 5, the read is called at 5: they overlap, so
    // the read may still see the key absent.
    assert_eq!(
        check(&[put(1, 1, 0, 5), get(2, None, 5, 6)]),
        Verdict::Linearizable
    );
    // One tick later the put precedes the read.
    assert_violation_on(0, check(&[put(1, 1, 0, 5), get(2, None, 6, 7)]));
}

#[test]
fn stale_read_is_not_linearizable() {
    // Put 2 completed before the read was called, yet the read sees 1.
    let history = [put(1, 1, 0, 1), put(2, 2, 2, 3), get(3, Some(1), 4, 5)];
    let explanation = assert_violation_on(0, check(&history));
    assert!(
        explanation.contains("read 1 but the register held 2"),
        "{explanation}"
    );
}

#[test]
fn lost_write_is_not_linearizable() {
    // An acknowledged put of 1 is followed by a read that finds the key absent.
    let history = [put(1, 1, 0, 1), get(2, None, 2, 3)];
    assert_violation_on(0, check(&history));
}

#[test]
fn read_of_a_value_never_written_is_not_linearizable() {
    // Only 1 is ever written, concurrently with a read that returns 7.
    let history = [put(1, 1, 0, 10), get(2, Some(7), 1, 9)];
    let explanation = assert_violation_on(0, check(&history));
    assert!(explanation.contains("read 7"), "{explanation}");
}

#[test]
fn consistent_compare_and_swaps_are_linearizable() {
    // CAS from absent succeeds, a CAS expecting the old value fails,
    // a CAS expecting the current value succeeds, and reads agree.
    let history = [
        cas(1, None, 1, true, 0, 1),
        cas(2, None, 2, false, 2, 3),
        cas(1, Some(1), 3, true, 4, 5),
        get(2, Some(3), 6, 7),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
}

#[test]
fn compare_and_swap_that_fails_on_a_match_is_not_linearizable() {
    // The register surely holds 1, yet CAS(1 -> 2) reports failure.
    let history = [put(1, 1, 0, 1), cas(2, Some(1), 2, false, 2, 3)];
    let explanation = assert_violation_on(0, check(&history));
    assert!(
        explanation.contains("so it would have swapped"),
        "{explanation}"
    );
}

#[test]
fn compare_and_swap_that_succeeds_on_a_mismatch_is_not_linearizable() {
    // The register surely holds 2, yet CAS(1 -> 3) reports success.
    let history = [
        put(1, 1, 0, 1),
        put(1, 2, 2, 3),
        cas(2, Some(1), 3, true, 4, 5),
    ];
    assert_violation_on(0, check(&history));
}

#[test]
fn two_successful_compare_and_swaps_from_one_value_are_not_linearizable() {
    // Two concurrent CAS(1 -> _) both succeed: whichever goes second
    // would have found the other's value, not 1.
    let history = [
        put(1, 1, 0, 1),
        cas(2, Some(1), 2, true, 2, 6),
        cas(3, Some(1), 3, true, 3, 5),
    ];
    assert_violation_on(0, check(&history));
    // One success and one failure is fine.
    let history = [
        put(1, 1, 0, 1),
        cas(2, Some(1), 2, true, 2, 6),
        cas(3, Some(1), 3, false, 3, 5),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
}

#[test]
fn unanswered_put_that_is_later_read_is_linearizable() {
    // The client of put(2) never heard back, but it took effect.
    let history = [
        put(1, 1, 0, 1),
        unanswered_put(2, 2, 2),
        get(3, Some(2), 10, 11),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
}

#[test]
fn unanswered_put_never_observed_is_linearizable() {
    // put(2) was lost: later reads keep seeing 1.
    let history = [
        put(1, 1, 0, 1),
        unanswered_put(2, 2, 2),
        get(3, Some(1), 10, 11),
        get(3, Some(1), 12, 13),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
}

#[test]
fn unanswered_put_can_only_explain_a_failed_compare_and_swap_after_its_call() {
    // Nobody reads 2, but a CAS expecting 1 fails after put(2) was
    // called: put(2) must have taken effect first.
    let history = [
        put(1, 1, 0, 1),
        unanswered_put(2, 2, 2),
        cas(3, Some(1), 3, false, 4, 5),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
    // If the CAS completes before put(2) is called, nothing explains it.
    let history = [
        put(1, 1, 0, 1),
        unanswered_put(2, 2, 6),
        cas(3, Some(1), 3, false, 4, 5),
    ];
    assert_violation_on(0, check(&history));
}

#[test]
fn unanswered_put_cannot_take_effect_before_its_call() {
    // The read of 2 completes before put(2) was called.
    let history = [get(1, Some(2), 0, 1), unanswered_put(2, 2, 2)];
    assert_violation_on(0, check(&history));
}

#[test]
fn read_of_an_unanswered_put_then_of_an_older_value_is_not_linearizable() {
    // One read sees the unanswered put(2); a read called after it
    // completed sees 1 again, but nothing wrote 1 after 2.
    let history = [
        put(1, 1, 0, 1),
        unanswered_put(2, 2, 2),
        get(3, Some(2), 4, 5),
        get(3, Some(1), 6, 7),
    ];
    assert_violation_on(0, check(&history));
}

#[test]
fn unanswered_compare_and_swap_takes_effect_only_if_it_matches() {
    let unanswered_cas = |expected, call_time| Operation {
        completion: None,
        ..cas(2, expected, 2, true, call_time, call_time)
    };
    // CAS(1 -> 2) was never answered, but 2 is read later: it swapped.
    let history = [
        put(1, 1, 0, 1),
        unanswered_cas(Some(1), 2),
        get(3, Some(2), 4, 5),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
    // CAS(5 -> 2) can never swap, as the register never holds 5.
    let history = [
        put(1, 1, 0, 1),
        unanswered_cas(Some(5), 2),
        get(3, Some(2), 4, 5),
    ];
    assert_violation_on(0, check(&history));
}

#[test]
fn unanswered_writes_nobody_can_observe_do_not_multiply_states() {
    // Thirty unanswered puts nobody reads, then a stale read. Trying each
    // subset of the puts would take 2^30 states; they are taken never to
    // happen instead.
    let mut history = vec![put(0, 1, 0, 1), put(0, 2, 2, 3)];
    history.extend((100..130).map(|value| unanswered_put(1, value, 2)));
    history.push(get(2, Some(1), 4, 5));
    assert_violation_on(0, check_history(&history, 1_000));
}

#[test]
fn interchangeable_unanswered_writes_are_tried_once() {
    // Thirty unanswered puts nobody reads. Three times a put lands and a
    // CAS expecting its value then fails, so an unanswered put came in
    // between; any one will do, so only one is tried each time (instead
    // of every subset). Then a read of a value nobody wrote.
    let mut history: Vec<Operation> = (100..130)
        .map(|value| unanswered_put(1, value, 0))
        .collect();
    for (stage, time) in (1..=3).zip((1..).step_by(4)) {
        history.push(put(0, stage, time, time + 1));
        history.push(cas(2, Some(stage), 10 + stage, false, time + 2, time + 3));
    }
    history.push(get(2, Some(99), 20, 21));
    assert_violation_on(0, check_history(&history, 1_000));
    // With the read returning one of those puts' values it is fine.
    history.last_mut().unwrap().completion = Some((21, KvOutput::Get(Some(117))));
    assert_eq!(check_history(&history, 1_000), Verdict::Linearizable);
}

#[test]
fn only_the_bad_key_is_reported() {
    // Keys 1 and 3 are fine; key 7 has a stale read. Key 1's put overlaps
    // key 7's read, which would be wrong if keys were not independent.
    let history = [
        on_key(1, put(1, 10, 0, 1)),
        on_key(7, put(1, 70, 0, 1)),
        on_key(7, put(2, 71, 2, 3)),
        on_key(3, get(3, None, 2, 9)),
        on_key(1, put(2, 11, 4, 8)),
        on_key(7, get(3, Some(70), 5, 6)),
        on_key(1, get(1, Some(11), 9, 10)),
    ];
    let explanation = assert_violation_on(7, check(&history));
    assert!(explanation.starts_with("key 7:"), "{explanation}");
    assert!(
        !explanation.contains("put(10)"),
        "only key 7's operations are listed: {explanation}"
    );
}

#[test]
fn explanation_lists_operations_and_the_longest_prefix() {
    // Stale read: the longest prefix places both puts, then the read of 1
    // cannot go next.
    let history = [put(1, 1, 0, 1), put(2, 2, 2, 3), get(3, Some(1), 4, 5)];
    let explanation = assert_violation_on(0, check(&history));
    assert!(
        explanation.contains("#2 client 3: get -> 1 (called at 4, returned at 5)"),
        "{explanation}"
    );
    assert!(
        explanation.contains("longest linearizable prefix found (2 of 3)"),
        "{explanation}"
    );
    assert!(explanation.contains("#1 put(2) => 2"), "{explanation}");
    assert!(
        explanation.contains("#2 must take effect by time 5"),
        "{explanation}"
    );
}

#[test]
fn output_of_the_wrong_kind_is_not_linearizable() {
    // A put answered as if it were a read.
    let history = [answered(
        1,
        KvInput::Put { value: 1 },
        0,
        1,
        KvOutput::Get(None),
    )];
    let explanation = assert_violation_on(0, check(&history));
    assert!(
        explanation.contains("absent is not an answer to put(1)"),
        "{explanation}"
    );
}

#[test]
#[should_panic(expected = "malformed history")]
fn completion_before_call_panics() {
    // An answer at 4 to a call at 5 is a bug in whoever recorded it.
    check(&[put(1, 1, 5, 4)]);
}

#[test]
fn exhausted_budget_is_unknown_and_a_bad_key_still_wins() {
    // Ten concurrent puts then a read of a value nobody wrote: proving
    // that takes trying every subset of the puts.
    let mut history: Vec<Operation> = (0..10).map(|value| put(value, value, 0, 100)).collect();
    history.push(get(10, Some(99), 101, 102));
    assert!(matches!(
        check_history(&history, 100),
        Verdict::Unknown { key: 0, .. }
    ));
    assert_violation_on(0, check_history(&history, BUDGET));
    // A smaller bad key 1 is reported even though key 0 gave up.
    history.extend([on_key(1, put(1, 1, 0, 1)), on_key(1, get(2, None, 2, 3))]);
    assert_violation_on(1, check_history(&history, 100));
}

/// One scheduling decision of `HistoryBuilder`: what `client` does next.
#[derive(Clone, Debug)]
struct Step {
    client: usize,
    choice: u8,
    pick: u8,
    advance_clock: bool,
}

/// A client request that has been sent; `output` is set once it took effect.
#[derive(Clone)]
struct InFlight {
    operation: Operation,
    output: Option<KvOutput>,
}

/// Builds a history that is linearizable by construction: clients send
/// requests, each takes effect on a real sequential register at some
/// instant between its call and its return, and some clients give up
/// waiting (the request may then take effect later, or never).
struct HistoryBuilder {
    keys: u64,
    now: u64,
    registers: BTreeMap<Key, Option<u64>>,
    last_value: u64,
    clients: Vec<Option<InFlight>>,
    abandoned: Vec<InFlight>,
    history: Vec<Operation>,
}

impl HistoryBuilder {
    fn new(clients: usize, keys: u64) -> Self {
        HistoryBuilder {
            keys,
            now: 0,
            registers: BTreeMap::new(),
            last_value: 0,
            clients: vec![None; clients],
            abandoned: Vec::new(),
            history: Vec::new(),
        }
    }

    fn fresh_value(&mut self) -> u64 {
        self.last_value += 1;
        self.last_value
    }

    fn take_effect(&mut self, operation: &Operation) -> KvOutput {
        let register = self.registers.entry(operation.key).or_default();
        match operation.input {
            KvInput::Put { value } => {
                *register = Some(value);
                KvOutput::Put
            }
            KvInput::Get => KvOutput::Get(*register),
            KvInput::Cas { expected, new } => {
                let succeeded = *register == expected;
                if succeeded {
                    *register = Some(new);
                }
                KvOutput::Cas { succeeded }
            }
        }
    }

    fn step(&mut self, step: &Step) {
        self.now += u64::from(step.advance_clock);
        if step.choice % 16 == 15 && !self.abandoned.is_empty() {
            // A request whose client gave up takes effect late.
            let late = self.abandoned.remove(0);
            self.take_effect(&late.operation);
            return;
        }
        let client = step.client % self.clients.len();
        match self.clients[client].take() {
            None => {
                let key = u64::from(step.pick) % self.keys;
                let input = match step.choice % 3 {
                    0 => KvInput::Put {
                        value: self.fresh_value(),
                    },
                    1 => KvInput::Get,
                    _ => {
                        let current = self.registers.get(&key).copied().flatten();
                        let expected = match step.pick % 3 {
                            0 => None,
                            1 => current,
                            _ => Some(u64::from(step.pick) % (self.last_value + 1)),
                        };
                        KvInput::Cas {
                            expected,
                            new: self.fresh_value(),
                        }
                    }
                };
                let operation = Operation {
                    client: client as u64,
                    key,
                    input,
                    call_time: self.now,
                    completion: None,
                };
                self.clients[client] = Some(InFlight {
                    operation,
                    output: None,
                });
            }
            Some(in_flight) if step.choice.is_multiple_of(16) => {
                // The client gives up; the request may still take effect.
                self.history.push(in_flight.operation.clone());
                if in_flight.output.is_none() {
                    self.abandoned.push(in_flight);
                }
            }
            Some(InFlight {
                operation,
                output: None,
            }) => {
                let output = Some(self.take_effect(&operation));
                self.clients[client] = Some(InFlight { operation, output });
            }
            Some(InFlight {
                mut operation,
                output: Some(output),
            }) => {
                operation.completion = Some((self.now, output));
                self.history.push(operation);
            }
        }
    }

    fn finish(mut self) -> Vec<Operation> {
        self.history.extend(
            self.clients
                .into_iter()
                .flatten()
                .map(|in_flight| in_flight.operation),
        );
        self.history
    }
}

fn build_history(clients: usize, keys: u64, steps: &[Step]) -> Vec<Operation> {
    let mut builder = HistoryBuilder::new(clients, keys);
    for step in steps {
        builder.step(step);
    }
    builder.finish()
}

#[test]
fn three_hundred_operations_from_five_clients_check_quickly() {
    // A linearizable history of 300 answered or abandoned operations on
    // one key from five concurrent clients, scheduled by a fixed
    // xorshift sequence. Should take well under a second.
    let mut random = 0x9e37_79b9_7f4a_7c15u64;
    let mut builder = HistoryBuilder::new(5, 1);
    while builder.history.len() < 300 {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let [client, choice, pick, clock, ..] = random.to_le_bytes();
        builder.step(&Step {
            client: usize::from(client),
            choice,
            pick,
            advance_clock: clock % 2 == 0,
        });
    }
    let history = builder.finish();
    assert!(history.len() >= 300);
    assert_eq!(check_history(&history, BUDGET), Verdict::Linearizable);
}

/// The model, restated independently of `apply`.
fn model_fits(register: Option<u64>, operation: &Operation) -> Option<Option<u64>> {
    let output = operation.completion.map(|(_, output)| output);
    let (next, answer) = match operation.input {
        KvInput::Put { value } => (Some(value), KvOutput::Put),
        KvInput::Get => (register, KvOutput::Get(register)),
        KvInput::Cas { expected, new } if register == expected => {
            (Some(new), KvOutput::Cas { succeeded: true })
        }
        KvInput::Cas { .. } => (register, KvOutput::Cas { succeeded: false }),
    };
    (output.is_none() || output == Some(answer)).then_some(next)
}

/// Tries every order that respects real time, with unanswered
/// operations free to be left out; `dead_ends` remembers the (operations
/// placed, register) pairs already known to fail.
fn brute_force_linearizable(
    history: &[Operation],
    placed: u32,
    register: Option<u64>,
    dead_ends: &mut HashSet<(u32, Option<u64>)>,
) -> bool {
    let pending: Vec<usize> = (0..history.len())
        .filter(|&index| placed & (1 << index) == 0)
        .collect();
    if pending
        .iter()
        .all(|&index| history[index].completion.is_none())
    {
        return true;
    }
    if dead_ends.contains(&(placed, register)) {
        return false;
    }
    for &candidate in &pending {
        let preceded = pending.iter().any(|&other| {
            history[other]
                .completion
                .is_some_and(|(time, _)| time < history[candidate].call_time)
        });
        if preceded {
            continue;
        }
        if let Some(next) = model_fits(register, &history[candidate]) {
            if brute_force_linearizable(history, placed | (1 << candidate), next, dead_ends) {
                return true;
            }
        }
    }
    dead_ends.insert((placed, register));
    false
}

/// Small single-key histories, mostly not linearizable: writes carry
/// distinct values, reads and CAS outcomes are arbitrary.
fn small_history() -> impl Strategy<Value = Vec<Operation>> {
    let value = prop::option::of(1u64..=10);
    let operation = (
        0u8..3,
        value,
        any::<bool>(),
        0u64..16,
        0u64..6,
        prop::option::weighted(0.7, Just(())),
    );
    prop::collection::vec(operation, 0..=12).prop_map(|operations| {
        let shaped = operations.into_iter().enumerate();
        shaped
            .map(
                |(index, (kind, value, succeeded, call_time, duration, answered))| {
                    let written = index as u64 + 1;
                    let (input, output) = match kind {
                        0 => (KvInput::Put { value: written }, KvOutput::Put),
                        1 => (KvInput::Get, KvOutput::Get(value)),
                        _ => (
                            KvInput::Cas {
                                expected: value,
                                new: written,
                            },
                            KvOutput::Cas { succeeded },
                        ),
                    };
                    let completion = answered.map(|()| (call_time + duration, output));
                    Operation {
                        client: index as u64,
                        key: 0,
                        input,
                        call_time,
                        completion,
                    }
                },
            )
            .collect()
    })
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (any::<usize>(), any::<u8>(), any::<u8>(), any::<bool>()).prop_map(
        |(client, choice, pick, advance_clock)| Step {
            client,
            choice,
            pick,
            advance_clock,
        },
    );
    prop::collection::vec(step, 1..300)
}

proptest! {
    #[test]
    fn agrees_with_brute_force_on_small_histories(history in small_history()) {
        // Random overlapping puts, reads and CASes, some unanswered; about
        // half are linearizable. The checker must match exhaustive search.
        let expected = brute_force_linearizable(&history, 0, None, &mut HashSet::new());
        let verdict = check_history(&history, BUDGET);
        prop_assert_eq!(verdict == Verdict::Linearizable, expected, "{:?}", verdict);
    }

    #[test]
    fn histories_built_from_a_sequential_register_are_linearizable(
        clients in 1usize..=5,
        keys in 1u64..=3,
        steps in steps(),
    ) {
        // Every operation took effect on a real register between its call
        // and its answer (or, if unanswered, at some point or never).
        let history = build_history(clients, keys, &steps);
        prop_assert_eq!(check_history(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught(
        clients in 1usize..=5,
        keys in 1u64..=3,
        steps in steps(),
        which_read in any::<prop::sample::Index>(),
    ) {
        // As above, but one read returns a value nobody wrote.
        let mut history = build_history(clients, keys, &steps);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&index| matches!(history[index].completion, Some((_, KvOutput::Get(_)))))
            .collect();
        prop_assume!(!reads.is_empty());
        let read = &mut history[reads[which_read.index(reads.len())]];
        let key = read.key;
        if let Some((_, output)) = &mut read.completion {
            *output = KvOutput::Get(Some(u64::MAX));
        }
        assert_violation_on(key, check_history(&history, BUDGET));
    }
}

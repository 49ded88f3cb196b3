//! A buggy network, not a byzantine one: now and then it garbles a field of
//! a message in a way the receiver's validation must catch (a term past the
//! largest a message may carry, entries renumbered out of order, an entry
//! of a later term than its sender's, a candidate whose log is ahead of its
//! term, a message from nobody). The receiver must refuse every such
//! message at once, and nothing else may change: every safety check and
//! the linearizability of the clients' histories must still hold.
//!
//! It draws from a generator of its own, seeded from the run's seed, so
//! that runs without corruption make the same choices as before it
//! existed.

use raft::{Message, MessageBody, NodeId, Term, MESSAGE_NUMBER_LIMIT};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::simulator::random::{chance, pick, uniform};

/// Mixed into the run's seed for this generator's stream.
const STREAM: u64 = 0x6275_6767_795f_6e65;

/// Garbles messages of one run.
#[derive(Debug)]
pub struct Corruption {
    /// Probability that a delivered message is garbled (during the fault
    /// phase).
    pub probability: f64,
    rng: ChaCha8Rng,
}

impl Corruption {
    /// The corruption of the run of `seed`: none in half of the runs, 1%
    /// or 5% of the messages in the others.
    pub fn for_seed(seed: u64) -> Corruption {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ STREAM);
        let probability = pick(&mut rng, &[0.0, 0.0, 0.01, 0.05]);
        Corruption { probability, rng }
    }

    /// No corruption at all.
    pub fn none() -> Corruption {
        Corruption {
            probability: 0.0,
            rng: ChaCha8Rng::seed_from_u64(STREAM),
        }
    }

    /// Garbles `message` with this run's probability; returns what was done
    /// to it, if anything.
    pub fn maybe_garble(&mut self, message: &mut Message) -> Option<&'static str> {
        if self.probability == 0.0 || !chance(&mut self.rng, self.probability) {
            return None;
        }
        Some(self.garble(message))
    }

    /// Garbles `message` in one of the ways validation refuses whatever the
    /// receiver's state.
    fn garble(&mut self, message: &mut Message) -> &'static str {
        let limit = MESSAGE_NUMBER_LIMIT;
        match &mut message.body {
            MessageBody::AppendEntries(append) if !append.entries.is_empty() => {
                let mut entries = append.entries.to_vec();
                let position = uniform(&mut self.rng, 0, entries.len() as u64) as usize;
                if chance(&mut self.rng, 0.5) {
                    entries[position].index.0 += 1 + uniform(&mut self.rng, 0, 3);
                    append.entries = entries.into();
                    return "an entry renumbered";
                }
                let last = entries.len() - 1;
                entries[last].term = Term(message.term.0 + 1);
                append.entries = entries.into();
                return "an entry of a later term than its sender's";
            }
            MessageBody::RequestVote(request) if chance(&mut self.rng, 0.5) => {
                request.last_log_term = Term(message.term.0 + 1);
                return "a candidate's log ahead of its term";
            }
            _ => {}
        }
        match uniform(&mut self.rng, 0, 3) {
            0 => {
                message.term = Term(limit + uniform(&mut self.rng, 0, 1_000));
                "a term past the limit"
            }
            1 => {
                message.term = Term(u64::MAX - uniform(&mut self.rng, 0, 3));
                "a term near 2^64"
            }
            _ => {
                message.from = NodeId(0);
                "a message from nobody"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::core::validation::validate;
    use raft::{AppendEntries, Entry, EntryPayload, LogIndex, RequestVote};

    fn messages() -> Vec<Message> {
        let entries: Vec<Entry> = (5..8)
            .map(|index| Entry {
                index: LogIndex(index),
                term: Term(2),
                payload: EntryPayload::Noop,
            })
            .collect();
        let message = |body| Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body,
        };
        vec![
            message(MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(4),
                prev_log_term: Term(2),
                entries: entries.into(),
                leader_commit: LogIndex(4),
                round: 1,
            })),
            message(MessageBody::RequestVote(RequestVote {
                pre_vote: false,
                last_log_index: LogIndex(7),
                last_log_term: Term(2),
                leadership_transfer: false,
            })),
            message(MessageBody::TimeoutNow),
        ]
    }

    #[test]
    fn every_garbling_is_one_validation_refuses() {
        let mut corruption = Corruption {
            probability: 1.0,
            rng: ChaCha8Rng::seed_from_u64(3),
        };
        for original in messages() {
            assert_eq!(validate(&original), Ok(()), "{original:?}");
            for _ in 0..200 {
                let mut garbled = original.clone();
                let what = corruption
                    .maybe_garble(&mut garbled)
                    .expect("always garbled");
                assert!(validate(&garbled).is_err(), "{what}: {garbled:?}");
            }
        }
    }

    #[test]
    fn half_the_runs_have_none() {
        let garbled = (0..1_000)
            .filter(|seed| Corruption::for_seed(*seed).probability > 0.0)
            .count();
        assert!((400..600).contains(&garbled), "{garbled}");
    }
}

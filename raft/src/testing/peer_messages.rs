//! Arbitrary peer messages against a leader and a follower: the property
//! that no message, however malformed or forged, makes a core panic.
//!
//! The fuzz target `core_messages` (`fuzz/`) feeds libFuzzer's inputs to
//! [`step_arbitrary_input`]; a property test feeds it structured messages
//! with arbitrary fields, in every test run.

use prost::Message as _;
use raft_proto::raft as wire;

use crate::core::message::{Message, MessageBody, RequestVoteResponse};
use crate::transport::convert::{message_from_wire, Admission};
use crate::types::ClusterId;
use crate::types::{Entry, EntryPayload, HardState, LogIndex, NodeId, RequestId, Term};
use crate::{Config, Input, Output, RaftCore, RestoredState, Role};

/// The cluster id the harness's nodes belong to.
const CLUSTER: ClusterId = ClusterId(7);

/// What the harness did with one input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stepped {
    /// Messages that decoded and reached a core.
    pub delivered: u64,
    /// Messages a core refused.
    pub refused: u64,
    /// Records that did not decode (or that the transport refused).
    pub undecodable: u64,
}

/// A leader (node 1, term 4) and a follower (node 2, term 3, following
/// node 1) of the cluster {1, 2, 3}, each with a log of terms
/// `[1, 1, 2, 2, 3]` and the leader with its no-op at 6.
pub struct Pair {
    leader: RaftCore,
    follower: RaftCore,
}

impl Pair {
    /// The two cores, their start-up outputs carried out.
    pub fn new() -> Pair {
        let mut leader = core(1);
        elect(&mut leader);
        let mut follower = core(2);
        let heartbeat = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::AppendEntries(crate::core::message::AppendEntries {
                prev_log_index: LogIndex(5),
                prev_log_term: Term(3),
                entries: Default::default(),
                leader_commit: LogIndex(5),
                round: 0,
            }),
        };
        follower.step(Input::Message(heartbeat));
        drive(&mut follower, &mut Stepped::default());
        Pair { leader, follower }
    }

    /// Steps `input` into a core: see [`step_arbitrary_input`].
    pub fn step(&mut self, input: &[u8]) -> Stepped {
        let mut stepped = Stepped::default();
        let mut rest = input;
        while let Some((&kind, after)) = rest.split_first() {
            rest = after;
            match kind % 8 {
                0 | 1 => {
                    let (record, after) = take_record(rest);
                    rest = after;
                    let target = if kind % 8 == 0 { 1 } else { 2 };
                    let core = if target == 1 {
                        &mut self.leader
                    } else {
                        &mut self.follower
                    };
                    match decode(record, NodeId(target)) {
                        Some(message) => {
                            stepped.delivered += 1;
                            core.step(Input::Message(message));
                        }
                        None => stepped.undecodable += 1,
                    }
                }
                2 => {
                    self.leader.step(Input::Tick);
                    self.follower.step(Input::Tick);
                }
                3 => self.leader.step(Input::Propose {
                    request_id: RequestId(u64::from(kind)),
                    command: bytes::Bytes::from_static(b"x"),
                }),
                4 => self.leader.step(Input::Read {
                    request_id: RequestId(u64::from(kind)),
                }),
                _ => {}
            }
            drive(&mut self.leader, &mut stepped);
            drive(&mut self.follower, &mut stepped);
        }
        stepped
    }
}

impl Default for Pair {
    fn default() -> Pair {
        Pair::new()
    }
}

/// Interprets `input` as a sequence of records, each a kind byte then, for
/// a message, a length byte and that many bytes of an encoded
/// `PeerMessage`: kind 0 sends it to the leader, 1 to the follower (the
/// header's cluster and addressee are set right, so that most inputs reach
/// a core; sender and term are the input's), 2 ticks both, 3 proposes at
/// the leader and 4 reads there. Every output is carried out at once, as a
/// driver whose disk is instant would. Panics only if a core does.
pub fn step_arbitrary_input(input: &[u8]) -> Stepped {
    Pair::new().step(input)
}

fn take_record(input: &[u8]) -> (&[u8], &[u8]) {
    let Some((&length, rest)) = input.split_first() else {
        return (&[], &[]);
    };
    let length = usize::from(length).min(rest.len());
    rest.split_at(length)
}

/// Decodes a message as the transport does, with the header's cluster and
/// addressee set to this harness's.
fn decode(bytes: &[u8], to: NodeId) -> Option<Message> {
    let mut message = wire::PeerMessage::decode(bytes).ok()?;
    use wire::peer_message::Body;
    let header = match message.body.as_mut()? {
        Body::RequestVote(body) => &mut body.header,
        Body::RequestVoteResponse(body) => &mut body.header,
        Body::AppendEntries(body) => &mut body.header,
        Body::AppendEntriesResponse(body) => &mut body.header,
        Body::TimeoutNow(body) => &mut body.header,
        Body::InstallSnapshotResponse(body) => &mut body.header,
    };
    let header = header.get_or_insert_with(Default::default);
    header.cluster_id = CLUSTER.0;
    header.to = to.0;
    message_from_wire(message, &Everyone(to)).ok()
}

/// Admits every node but 0 (which the core itself refuses).
struct Everyone(NodeId);

impl Admission for Everyone {
    fn node(&self) -> NodeId {
        self.0
    }

    fn cluster(&self) -> ClusterId {
        CLUSTER
    }

    fn admits(&self, _: NodeId) -> bool {
        true
    }
}

fn core(id: u64) -> RaftCore {
    let entries = [1, 1, 2, 2, 3]
        .iter()
        .enumerate()
        .map(|(position, term)| Entry {
            index: LogIndex(position as u64 + 1),
            term: Term(*term),
            payload: EntryPayload::Noop,
        })
        .collect();
    let restored = RestoredState {
        hard_state: HardState {
            term: Term(3),
            voted_for: None,
        },
        entries,
        applied: LogIndex(2),
        ..RestoredState::new_cluster([NodeId(1), NodeId(2), NodeId(3)])
    };
    RaftCore::new(Config::new(NodeId(id)), restored, id).expect("a valid restored state")
}

/// Makes `core` the leader of term 4 with node 2's votes.
fn elect(core: &mut RaftCore) {
    for _ in 0..1_000 {
        core.step(Input::Tick);
        if core.role() != Role::Follower {
            break;
        }
    }
    drive(core, &mut Stepped::default());
    for pre_vote in [true, false] {
        let term = if pre_vote {
            core.term().next()
        } else {
            core.term()
        };
        core.step(Input::Message(Message {
            from: NodeId(2),
            to: NodeId(1),
            term,
            body: MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote,
                granted: true,
            }),
        }));
        drive(core, &mut Stepped::default());
    }
    assert_eq!(core.role(), Role::Leader, "the harness's leader is elected");
}

/// Carries out `core`'s outputs as a driver with an instant disk would,
/// until it has none.
fn drive(core: &mut RaftCore, stepped: &mut Stepped) {
    loop {
        let outputs = core.take_outputs();
        if outputs.is_empty() {
            return;
        }
        for output in outputs {
            match output {
                Output::AppendLog { entries } => {
                    if let Some(last) = entries.last() {
                        core.step(Input::LogPersisted {
                            index: last.index,
                            term: last.term,
                        });
                    }
                }
                Output::Apply { entries } => {
                    if let Some(last) = entries.last() {
                        core.step(Input::Applied { index: last.index });
                    }
                }
                Output::MessageRefused { .. } => stepped.refused += 1,
                Output::SaveHardState(_)
                | Output::Send(_)
                | Output::CompactLog { .. }
                | Output::RestoreSnapshot { .. }
                | Output::ProposalAccepted { .. }
                | Output::ReadReady { .. }
                | Output::RequestFailed { .. } => {}
            }
        }
    }
}

/// Encodes `message` as a record of [`step_arbitrary_input`] for `target`
/// (0 the leader, 1 the follower): for seeds and tests.
pub fn record(target: u8, message: &Message) -> Vec<u8> {
    let encoded = crate::transport::convert::message_to_wire(CLUSTER, message)
        .expect("not a snapshot")
        .encode_to_vec();
    let length = u8::try_from(encoded.len()).expect("a short message");
    let mut record = vec![target, length];
    record.extend(encoded);
    record
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::core::message::{
        AppendEntries, AppendEntriesResponse, ConflictHint, InstallSnapshotResponse, RequestVote,
    };
    use crate::core::validation::MESSAGE_NUMBER_LIMIT;

    /// Numbers a forger would try: small ones, ones near the limit and
    /// near the top of u64.
    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..12,
            (MESSAGE_NUMBER_LIMIT - 3)..(MESSAGE_NUMBER_LIMIT + 3),
            (u64::MAX - 3)..=u64::MAX,
        ]
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (number(), number()).prop_map(|(index, term)| Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: EntryPayload::Noop,
        })
    }

    fn body() -> impl Strategy<Value = MessageBody> {
        prop_oneof![
            (any::<bool>(), number(), number(), any::<bool>()).prop_map(
                |(pre_vote, index, term, transfer)| MessageBody::RequestVote(RequestVote {
                    pre_vote,
                    last_log_index: LogIndex(index),
                    last_log_term: Term(term),
                    leadership_transfer: transfer,
                })
            ),
            (any::<bool>(), any::<bool>()).prop_map(|(pre_vote, granted)| {
                MessageBody::RequestVoteResponse(RequestVoteResponse { pre_vote, granted })
            }),
            (
                number(),
                number(),
                proptest::collection::vec(entry(), 0..4),
                number(),
                number()
            )
                .prop_map(|(prev_index, prev_term, entries, commit, round)| {
                    MessageBody::AppendEntries(AppendEntries {
                        prev_log_index: LogIndex(prev_index),
                        prev_log_term: Term(prev_term),
                        entries: entries.into(),
                        leader_commit: LogIndex(commit),
                        round,
                    })
                }),
            (
                any::<bool>(),
                number(),
                number(),
                number(),
                number(),
                number(),
                0u8..3
            )
                .prop_map(|(success, matched, rejected, last, round, hint, kind)| {
                    let conflict = match kind {
                        0 => None,
                        1 => Some(ConflictHint::LogTooShort {
                            last_index: LogIndex(hint),
                        }),
                        _ => Some(ConflictHint::TermMismatch {
                            term: Term(hint),
                            first_index: LogIndex(hint / 2),
                        }),
                    };
                    MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                        success,
                        match_index: LogIndex(matched),
                        rejected_index: LogIndex(rejected),
                        conflict: if success { None } else { conflict },
                        last_log_index: LogIndex(last),
                        round,
                    })
                }),
            Just(MessageBody::TimeoutNow),
            (any::<bool>(), number()).prop_map(|(accepted, last)| {
                MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                    accepted,
                    last_log_index: LogIndex(last),
                })
            }),
        ]
    }

    /// Mostly the terms the two cores are at, so that messages reach past
    /// the term rules.
    fn term() -> impl Strategy<Value = u64> {
        prop_oneof![3 => 2u64..6, 1 => number()]
    }

    fn message() -> impl Strategy<Value = (u8, Message)> {
        let from = prop_oneof![4 => 1u64..4, 1 => 0u64..5];
        (0u8..2, from, term(), body()).prop_map(|(target, from, term, body)| {
            let to = NodeId(u64::from(target) + 1);
            (
                target,
                Message {
                    from: NodeId(from),
                    to,
                    term: Term(term),
                    body,
                },
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// No sequence of messages, ticks, proposals and reads makes a
        /// leader or a follower panic, whatever the messages' fields say.
        #[test]
        fn no_message_makes_a_core_panic(
            steps in proptest::collection::vec(
                prop_oneof![
                    3 => message().prop_map(|(target, message)| record(target, &message)),
                    2 => (2u8..5).prop_map(|kind| vec![kind]),
                ],
                1..24,
            )
        ) {
            let input: Vec<u8> = steps.concat();
            let stepped = step_arbitrary_input(&input);
            prop_assert!(stepped.delivered + stepped.undecodable > 0 || input.iter().all(|kind| (2..5).contains(kind)));
        }
    }

    #[test]
    fn a_forged_acknowledgement_past_the_log_is_refused() {
        let mut pair = Pair::new();
        let forged = Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(4),
            body: MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                success: true,
                match_index: LogIndex(1_000),
                rejected_index: LogIndex(0),
                conflict: None,
                last_log_index: LogIndex(1_000),
                round: 0,
            }),
        };
        let stepped = pair.step(&record(0, &forged));
        assert_eq!(stepped.delivered, 1);
        assert_eq!(stepped.refused, 1);
        assert_eq!(
            pair.leader.commit_index(),
            LogIndex(2),
            "nothing committed by it"
        );
    }
}

//! Builders shared by the exact-output tests: cores with a given log, term
//! and role, constructors for messages and inputs, and a deterministic way
//! to make a node leader.
//!
//! Numbers stand for ids, terms and indexes (`message(2, 1, 3, ...)` is a
//! message from node 2 to node 1 in term 3) so that an expected output list
//! reads like the protocol trace it is.

use bytes::Bytes;

use crate::core::message::{
    AppendEntries, AppendEntriesResponse, ConflictHint, Message, MessageBody, RequestVote,
    RequestVoteResponse,
};
use crate::{
    Config, Entry, EntryPayload, HardState, Input, LogIndex, Membership, NodeId, Output, RaftCore,
    RequestError, RequestId, RestoredState, Role, Term,
};

/// Builds a core, by default node `id` of the cluster {1, 2, 3} with an
/// empty log in term 0 and the default [`Config`].
pub(super) struct CoreBuilder {
    config: Config,
    restored: RestoredState,
    seed: u64,
}

impl CoreBuilder {
    pub(super) fn new(id: u64) -> CoreBuilder {
        CoreBuilder {
            config: Config::new(NodeId(id)),
            restored: RestoredState::new_cluster([NodeId(1), NodeId(2), NodeId(3)]),
            seed: 7,
        }
    }

    pub(super) fn voters(mut self, voters: &[u64]) -> CoreBuilder {
        self.restored.membership = Membership::with_voters(voters.iter().copied().map(NodeId));
        self
    }

    pub(super) fn term(mut self, term: u64) -> CoreBuilder {
        self.restored.hard_state.term = Term(term);
        self
    }

    pub(super) fn voted_for(mut self, candidate: u64) -> CoreBuilder {
        self.restored.hard_state.voted_for = Some(NodeId(candidate));
        self
    }

    /// The restored log: one entry per listed term, from index 1.
    pub(super) fn log(mut self, terms: &[u64]) -> CoreBuilder {
        self.restored.entries = entries(1, terms);
        self
    }

    /// The restored log, as given.
    pub(super) fn log_entries(mut self, entries: Vec<Entry>) -> CoreBuilder {
        self.restored.entries = entries;
        self
    }

    /// The restored applied index, which is also the restored commit index.
    pub(super) fn applied(mut self, index: u64) -> CoreBuilder {
        self.restored.applied = LogIndex(index);
        self
    }

    pub(super) fn config(mut self, change: impl FnOnce(&mut Config)) -> CoreBuilder {
        change(&mut self.config);
        self
    }

    pub(super) fn seed(mut self, seed: u64) -> CoreBuilder {
        self.seed = seed;
        self
    }

    pub(super) fn build(self) -> RaftCore {
        RaftCore::new(self.config, self.restored, self.seed).expect("test state is valid")
    }

    /// Builds a follower that has heard from `leader` in its current term,
    /// with the leader's answer discarded.
    pub(super) fn follower_of(self, leader: u64) -> RaftCore {
        let mut core = self.build();
        let (id, term) = (core.id().0, core.term().0);
        let (last_index, last_term) = (core.status().last_index.0, core.status().last_term.0);
        deliver(
            &mut core,
            message(
                leader,
                id,
                term,
                append_entries((last_index, last_term), vec![], 0, 0),
            ),
        );
        assert_eq!(core.leader(), Some(NodeId(leader)));
        core
    }

    /// Builds the core and elects it (see [`elect`]).
    pub(super) fn leader(self) -> RaftCore {
        let mut core = self.build();
        elect(&mut core);
        core
    }

    /// Builds the core, elects it, and brings every peer up to date: the
    /// leader's no-op is durable, acknowledged by every peer (which puts them
    /// in the replicate state), committed and applied.
    pub(super) fn leader_in_sync(self) -> RaftCore {
        let mut core = self.leader();
        let status = core.status();
        let (noop_index, term) = (status.last_index.0, status.term.0);
        core.step(persisted(noop_index, term));
        let peers: Vec<u64> = status.progress.keys().map(|peer| peer.0).collect();
        for peer in peers {
            let id = core.id().0;
            core.step(Input::Message(message(
                peer,
                id,
                term,
                append_accepted(noop_index, noop_index, 0),
            )));
        }
        core.step(Input::Applied {
            index: LogIndex(noop_index),
        });
        core.take_outputs();
        assert_eq!(core.commit_index(), LogIndex(noop_index));
        core
    }
}

/// Makes `core` leader deterministically: ticks until its election timeout
/// fires, then feeds granted pre-votes (if PreVote is on) and votes from the
/// other voters, in id order, and discards every output.
pub(super) fn elect(core: &mut RaftCore) {
    let id = core.id();
    let peers: Vec<NodeId> = core
        .status()
        .membership
        .voters
        .into_iter()
        .filter(|voter| *voter != id)
        .collect();
    for _ in 0..1000 {
        if core.role() != Role::Follower {
            break;
        }
        core.step(Input::Tick);
    }
    for peer in &peers {
        if core.role() != Role::PreCandidate {
            break;
        }
        let term = core.term().next().0;
        core.step(Input::Message(message(
            peer.0,
            id.0,
            term,
            pre_vote_response(true),
        )));
    }
    for peer in &peers {
        if core.role() != Role::Candidate {
            break;
        }
        let term = core.term().0;
        core.step(Input::Message(message(
            peer.0,
            id.0,
            term,
            vote_response(true),
        )));
    }
    assert_eq!(core.role(), Role::Leader, "the election was not won");
    core.take_outputs();
}

/// Steps one input and takes the outputs.
pub(super) fn step(core: &mut RaftCore, input: Input) -> Vec<Output> {
    core.step(input);
    core.take_outputs()
}

/// Delivers one message and takes the outputs.
pub(super) fn deliver(core: &mut RaftCore, message: Message) -> Vec<Output> {
    step(core, Input::Message(message))
}

/// Ticks until the core produces outputs; returns how many ticks that took
/// and the outputs.
pub(super) fn tick_until_outputs(core: &mut RaftCore) -> (u32, Vec<Output>) {
    for ticks in 1..=1000 {
        let outputs = step(core, Input::Tick);
        if !outputs.is_empty() {
            return (ticks, outputs);
        }
    }
    panic!("no outputs after 1000 ticks");
}

/// Ticks `count` times, taking the outputs after each tick, and returns
/// them all.
pub(super) fn tick_times(core: &mut RaftCore, count: u32) -> Vec<Output> {
    (0..count).flat_map(|_| step(core, Input::Tick)).collect()
}

pub(super) fn persisted(index: u64, term: u64) -> Input {
    Input::LogPersisted {
        index: LogIndex(index),
        term: Term(term),
    }
}

pub(super) fn applied(index: u64) -> Input {
    Input::Applied {
        index: LogIndex(index),
    }
}

pub(super) fn propose(request_id: u64, command: &'static str) -> Input {
    Input::Propose {
        request_id: RequestId(request_id),
        command: Bytes::from_static(command.as_bytes()),
    }
}

pub(super) fn read(request_id: u64) -> Input {
    Input::Read {
        request_id: RequestId(request_id),
    }
}

/// A log entry carrying the command `e<index>`, as the builder's logs hold.
pub(super) fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Command(Bytes::from(format!("e{index}"))),
    }
}

/// Entries with the given terms, from `first_index` on.
pub(super) fn entries(first_index: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .zip(first_index..)
        .map(|(term, index)| entry(index, *term))
        .collect()
}

/// The entry a leader appends for a proposal of `command`.
pub(super) fn command_entry(index: u64, term: u64, command: &'static str) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Command(Bytes::from_static(command.as_bytes())),
    }
}

/// The no-op a new leader appends.
pub(super) fn noop(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Noop,
    }
}

pub(super) fn message(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

/// The output that sends `body` from `from` to `to` in `term`.
pub(super) fn send(from: u64, to: u64, term: u64, body: MessageBody) -> Output {
    Output::Send(message(from, to, term, body))
}

pub(super) fn save_hard_state(term: u64, voted_for: Option<u64>) -> Output {
    Output::SaveHardState(HardState {
        term: Term(term),
        voted_for: voted_for.map(NodeId),
    })
}

pub(super) fn append_log(entries: Vec<Entry>) -> Output {
    Output::AppendLog {
        entries: entries.into(),
    }
}

pub(super) fn apply(entries: Vec<Entry>) -> Output {
    Output::Apply {
        entries: entries.into(),
    }
}

pub(super) fn accepted(request_id: u64, index: u64, term: u64) -> Output {
    Output::ProposalAccepted {
        request_id: RequestId(request_id),
        index: LogIndex(index),
        term: Term(term),
    }
}

pub(super) fn read_ready(request_id: u64, read_index: u64) -> Output {
    Output::ReadReady {
        request_id: RequestId(request_id),
        read_index: LogIndex(read_index),
    }
}

pub(super) fn failed(request_id: u64, error: RequestError) -> Output {
    Output::RequestFailed {
        request_id: RequestId(request_id),
        error,
    }
}

pub(super) fn not_leader(leader_hint: Option<u64>) -> RequestError {
    RequestError::NotLeader {
        leader_hint: leader_hint.map(NodeId),
    }
}

/// A vote request from a candidate whose log ends at `last_log`
/// (index, term).
pub(super) fn vote_request(last_log: (u64, u64)) -> MessageBody {
    MessageBody::RequestVote(RequestVote {
        pre_vote: false,
        last_log_index: LogIndex(last_log.0),
        last_log_term: Term(last_log.1),
        leadership_transfer: false,
    })
}

/// A vote request forced by a leadership transfer.
pub(super) fn transfer_vote_request(last_log: (u64, u64)) -> MessageBody {
    MessageBody::RequestVote(RequestVote {
        pre_vote: false,
        last_log_index: LogIndex(last_log.0),
        last_log_term: Term(last_log.1),
        leadership_transfer: true,
    })
}

pub(super) fn pre_vote_request(last_log: (u64, u64)) -> MessageBody {
    MessageBody::RequestVote(RequestVote {
        pre_vote: true,
        last_log_index: LogIndex(last_log.0),
        last_log_term: Term(last_log.1),
        leadership_transfer: false,
    })
}

pub(super) fn vote_response(granted: bool) -> MessageBody {
    MessageBody::RequestVoteResponse(RequestVoteResponse {
        pre_vote: false,
        granted,
    })
}

pub(super) fn pre_vote_response(granted: bool) -> MessageBody {
    MessageBody::RequestVoteResponse(RequestVoteResponse {
        pre_vote: true,
        granted,
    })
}

/// An append whose entries follow `prev_log` (index, term).
pub(super) fn append_entries(
    prev_log: (u64, u64),
    entries: Vec<Entry>,
    leader_commit: u64,
    round: u64,
) -> MessageBody {
    MessageBody::AppendEntries(AppendEntries {
        prev_log_index: LogIndex(prev_log.0),
        prev_log_term: Term(prev_log.1),
        entries: entries.into(),
        leader_commit: LogIndex(leader_commit),
        round,
    })
}

/// A successful append answer.
pub(super) fn append_accepted(match_index: u64, last_log_index: u64, round: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse(AppendEntriesResponse {
        success: true,
        match_index: LogIndex(match_index),
        rejected_index: LogIndex(0),
        conflict: None,
        last_log_index: LogIndex(last_log_index),
        round,
    })
}

/// A rejected append answer for the append whose `prev_log_index` was
/// `rejected_index`.
pub(super) fn append_rejected(
    rejected_index: u64,
    conflict: Option<ConflictHint>,
    last_log_index: u64,
    round: u64,
) -> MessageBody {
    MessageBody::AppendEntriesResponse(AppendEntriesResponse {
        success: false,
        match_index: LogIndex(0),
        rejected_index: LogIndex(rejected_index),
        conflict,
        last_log_index: LogIndex(last_log_index),
        round,
    })
}

pub(super) fn log_too_short(last_index: u64) -> Option<ConflictHint> {
    Some(ConflictHint::LogTooShort {
        last_index: LogIndex(last_index),
    })
}

pub(super) fn term_mismatch(term: u64, first_index: u64) -> Option<ConflictHint> {
    Some(ConflictHint::TermMismatch {
        term: Term(term),
        first_index: LogIndex(first_index),
    })
}

//! The pure Raft state machine: no I/O, no clock, no global randomness.
//!
//! A [`RaftCore`] consumes [`Input`]s through [`RaftCore::step`] and produces
//! an ordered list of [`Output`]s, taken with [`RaftCore::take_outputs`]. The
//! role-specific rules live in one file each: `election.rs` (followers,
//! candidates and voting), `follower.rs` (accepting appends), `leader.rs`
//! (proposals, commit, CheckQuorum) and `replication.rs` (appends and
//! heartbeats to each peer), `leadership_transfer.rs`,
//! `membership_change.rs` (one server at a time; `configuration.rs` tracks
//! the configurations along the log) and `read_index.rs` (linearizable
//! reads). `role.rs` holds the role with what only that role has (a
//! campaign's votes, a leader's state): the rules only a leader may apply
//! are methods of the `Leader` handle, which exists only while the node
//! leads. `outbox.rs` collects the outputs; `validation.rs` holds every
//! message to the rules a correct peer keeps before any handler sees it.
//!
//! Only this crate's driver side (`node/`, or a driver of your own through
//! the public API) calls into the core; the core calls nothing outside
//! `types`, `entries`, `config` and `error`.

mod configuration;
mod election;
mod follower;
pub mod input;
mod leader;
mod leadership_transfer;
mod log;
pub mod membership_change;
pub mod message;
mod outbox;
pub mod output;
pub mod progress;
pub mod quorum;
mod read_index;
mod replication;
mod role;
pub mod snapshot;
mod status;
#[cfg(test)]
mod tests;
pub mod validation;

use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::config::Config;
use crate::entries::Entries;
use crate::error::{CoreError, RequestError};
use crate::types::{Entry, HardState, LogIndex, NodeId, Term};

use self::input::Input;
use self::log::RaftLog;
use self::message::{Message, MessageBody};
use self::outbox::Outbox;
use self::output::Output;
use self::quorum::Membership;
use self::role::RoleState;
use self::snapshot::SnapshotMetadata;
pub use self::status::{Role, Status};

/// What a node recovered from durable storage when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredState {
    /// The persisted term and vote.
    pub hard_state: HardState,
    /// The persisted log, contiguous and starting at index 1.
    pub entries: Vec<Entry>,
    /// The cluster configuration as of the snapshot, or the initial one
    /// when there is none; configuration entries in `entries` after the
    /// snapshot override it.
    pub membership: Membership,
    /// The index the state machine has already applied (0 when the state
    /// machine is rebuilt from the log; at least the snapshot's index when
    /// there is a snapshot).
    pub applied: LogIndex,
    /// The latest snapshot, when the log was compacted: `entries` then start
    /// right after its index.
    pub snapshot: Option<SnapshotMetadata>,
}

impl RestoredState {
    /// The state of a node joining an existing cluster with an empty data
    /// directory: it knows no configuration until the leader sends it one,
    /// so it never campaigns on its own.
    pub fn joining() -> RestoredState {
        RestoredState::default()
    }

    /// The state of a node of a brand-new cluster of `voters`.
    pub fn new_cluster(voters: impl IntoIterator<Item = NodeId>) -> RestoredState {
        RestoredState {
            membership: Membership::with_voters(voters),
            ..RestoredState::default()
        }
    }
}

/// One Raft node's algorithm. See the crate documentation for how to drive
/// it.
#[derive(Debug)]
pub struct RaftCore {
    config: Config,
    hard_state: HardState,
    /// The role, with what only that role holds.
    role: RoleState,
    /// The leader of the current term, if known.
    leader: Option<NodeId>,
    log: RaftLog,
    /// The only source of randomness: election timeouts. Seeded, portable.
    rng: ChaCha8Rng,
    /// Ticks since the last contact with a leader, or since the last
    /// election started.
    election_elapsed: u32,
    /// This round's election timeout, drawn from the configured range.
    randomized_election_timeout: u32,
    /// Append acknowledgements that wait until the entries they acknowledge
    /// are durable, oldest first: (index that must be durable, message).
    pending_acknowledgements: VecDeque<(LogIndex, Message)>,
    /// The index the state machine has reported applied.
    applied: LogIndex,
    /// Produced outputs, in order.
    outbox: Outbox,
    /// The newest snapshot the driver holds, sent to followers that need
    /// compacted entries.
    latest_snapshot: Option<SnapshotMetadata>,
}

impl RaftCore {
    /// Builds a node from its configuration, the state it recovered from
    /// storage and the seed of its random election timeouts.
    pub fn new(
        config: Config,
        mut restored: RestoredState,
        seed: u64,
    ) -> Result<RaftCore, CoreError> {
        config.validate()?;
        // No configuration at all is a node joining an existing cluster: it
        // learns the configuration from the leader's log or snapshot and
        // never campaigns before it is a voter there. Learners without any
        // voter, though, can never form a quorum.
        if restored.membership.voters.is_empty() && !restored.membership.is_empty() {
            return Err(CoreError::NoVoters);
        }
        if restored.membership.contains(NodeId(0)) {
            return Err(CoreError::ZeroMember);
        }
        validate_restored_log(&restored)?;
        let log = restored_log(
            restored.snapshot.as_ref(),
            std::mem::take(&mut restored.entries),
            restored.applied,
            std::mem::take(&mut restored.membership),
        );
        if log.membership().voters.is_empty() && !log.membership().is_empty() {
            return Err(CoreError::NoVoters);
        }
        let mut core = RaftCore {
            hard_state: restored.hard_state,
            role: RoleState::Follower,
            leader: None,
            log,
            latest_snapshot: restored.snapshot,
            rng: ChaCha8Rng::seed_from_u64(seed),
            election_elapsed: 0,
            randomized_election_timeout: 0,
            pending_acknowledgements: VecDeque::new(),
            applied: restored.applied,
            outbox: Outbox::default(),
            config,
        };
        core.reset_election_timer();
        Ok(core)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration in effect: the latest in the log, committed or
    /// not (dissertation §4.1).
    pub fn membership(&self) -> &Membership {
        self.log.membership()
    }

    /// The configuration in effect at `index`, for the metadata of a
    /// snapshot taken there. Meaningful from the log's compaction point on.
    pub fn membership_at(&self, index: LogIndex) -> &Membership {
        self.log.membership_at(index)
    }

    /// Feeds one input. Outputs accumulate until [`RaftCore::take_outputs`].
    pub fn step(&mut self, input: Input) {
        match input {
            Input::Tick => self.tick(),
            Input::Message(message) => self.receive(message),
            Input::Propose {
                request_id,
                command,
            } => self.propose(request_id, command),
            Input::Read { request_id } => self.read(request_id),
            Input::TransferLeadership { target } => self.transfer_leadership(target),
            Input::ChangeMembership { request_id, change } => {
                self.change_membership(request_id, change)
            }
            Input::LogPersisted { index, term } => {
                if self.log.persisted_up_to(index, term) {
                    self.on_log_persisted();
                }
            }
            Input::SnapshotTaken { metadata } => self.snapshot_taken(metadata),
            Input::Applied { index } => {
                if index > self.applied {
                    self.applied = index;
                    if let Some(mut leader) = self.leading() {
                        leader.release_reads_ready_to_serve();
                    }
                }
            }
        }
        self.emit_committed_entries();
        // After the hand-out, so that proposals committed with the removal
        // are answered rather than failed.
        self.step_down_if_removed();
    }

    /// Takes the outputs produced since the last call, in the order the
    /// driver must carry them out. Appends to followers that several inputs
    /// made necessary are batched into one message here.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        self.log.age_released();
        self.outbox.seal(&mut self.log);
        self.flush_leader_messages();
        self.outbox.take(&mut self.log)
    }

    /// Like [`RaftCore::take_outputs`], appending to `outputs` so that a
    /// driver can reuse one allocation.
    pub fn drain_outputs_into(&mut self, outputs: &mut Vec<Output>) {
        self.log.age_released();
        self.outbox.seal(&mut self.log);
        self.flush_leader_messages();
        self.outbox.drain_into(&mut self.log, outputs);
    }

    /// The entries compactions (after [`Input::SnapshotTaken`]) and
    /// snapshots replacing the log removed from it, for the driver to free
    /// where the cost does not hold it up: freeing a log compacted by
    /// millions of entries takes hundreds of milliseconds, and on a
    /// leader's event loop that is missed heartbeats. Take them after the
    /// outputs of the same steps; those not taken are freed when outputs
    /// are taken the next time.
    pub fn take_released_entries(&mut self) -> Vec<Entries> {
        self.log.take_released()
    }

    fn tick(&mut self) {
        if self.role() == Role::Leader {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// Handles a message: first the term rules every role shares (Raft
    /// paper §5.1: a higher term makes a node a follower; a lower term is
    /// stale), then the rules of the message's kind.
    fn receive(&mut self, message: Message) {
        // Messages from servers outside this node's configuration are
        // handled too: the configuration may be an uncommitted one that a
        // leader elected under the previous one is about to replace. Votes
        // stay safe (a candidate counts only the votes of its own
        // configuration's voters), and a removed server cannot disrupt a
        // live leader's followers (the CheckQuorum lease and PreVote).
        if message.to != self.id() {
            tracing::debug!(from = %message.from, to = %message.to, "ignoring a message for another node");
            return;
        }
        let validated = validation::validate(&message);
        #[cfg(feature = "bug-injection")]
        let validated = if self.config.bug_injection.skip_message_validation {
            Ok(())
        } else {
            validated
        };
        if let Err(refusal) = validated {
            self.refuse(message.from, refusal);
            return;
        }
        if message.term > self.hard_state.term {
            if let MessageBody::RequestVote(request) = &message.body {
                if self.in_leader_lease() && !request.leadership_transfer {
                    // CheckQuorum: a live leader exists, so this election is
                    // disruptive. Ignore it without raising our term.
                    return;
                }
            }
            match &message.body {
                // A pre-vote never changes the receiver's term.
                MessageBody::RequestVote(request) if request.pre_vote => {}
                // A granted pre-vote carries the term the candidate would use.
                MessageBody::RequestVoteResponse(response)
                    if response.pre_vote && response.granted => {}
                MessageBody::AppendEntries(_)
                | MessageBody::InstallSnapshot(_)
                | MessageBody::TimeoutNow => {
                    self.become_follower(message.term, Some(message.from));
                }
                _ => self.become_follower(message.term, None),
            }
        } else if message.term < self.hard_state.term {
            self.answer_stale_message(&message);
            return;
        }
        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_request_vote(message.from, message.term, request)
            }
            MessageBody::RequestVoteResponse(response) => {
                self.handle_vote_response(message.from, message.term, response)
            }
            MessageBody::AppendEntries(append) => self.handle_append(message.from, append),
            MessageBody::AppendEntriesResponse(response) => {
                self.handle_append_response(message.from, response)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(message.from),
            MessageBody::InstallSnapshot(metadata) => {
                self.handle_install_snapshot(message.from, metadata)
            }
            MessageBody::InstallSnapshotResponse(response) => {
                self.handle_install_snapshot_response(message.from, response)
            }
        }
    }

    /// A message from an earlier term. Answer the kinds whose senders would
    /// otherwise stay stuck: a deposed leader learns the new term from the
    /// append answer; a pre-candidate learns it from the pre-vote answer.
    ///
    /// The append answer carries the current term and nothing of the stale
    /// append (no rejected index, round 0): its sender may since have been
    /// elected again, in the current term, and would take an echo of its
    /// old append's index or round as an answer to one of its new term's,
    /// probing past its own log or counting the answer as confirming read
    /// rounds this follower never saw.
    fn answer_stale_message(&mut self, message: &Message) {
        match &message.body {
            MessageBody::AppendEntries(_) => {
                let response = message::AppendEntriesResponse {
                    success: false,
                    match_index: LogIndex(0),
                    rejected_index: LogIndex(0),
                    conflict: None,
                    last_log_index: self.log.last_index(),
                    round: 0,
                };
                self.send(message.from, MessageBody::AppendEntriesResponse(response));
            }
            MessageBody::RequestVote(request) if request.pre_vote => {
                let response = message::RequestVoteResponse {
                    pre_vote: true,
                    granted: false,
                };
                self.send(message.from, MessageBody::RequestVoteResponse(response));
            }
            _ => {}
        }
    }

    /// Whether this node believes a leader is alive, so that vote requests
    /// would only disrupt it (CheckQuorum's "leader lease", dissertation
    /// §9.6 / §6.2).
    fn in_leader_lease(&self) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        match self.role() {
            Role::Leader => true,
            _ => self.leader.is_some() && self.election_elapsed < self.config.election_ticks_min,
        }
    }

    /// Drops a message that broke a rule, and says so.
    fn refuse(&mut self, from: NodeId, refusal: validation::Refusal) {
        self.outbox.refuse(self.config.id, from, refusal);
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.outbox
            .send(self.config.id, to, self.hard_state.term, body);
    }

    fn save_hard_state(&mut self) {
        self.outbox.save_hard_state(self.hard_state);
    }

    /// Becomes a follower in `term`. A higher term clears the vote and is
    /// saved before anything else is sent.
    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.hard_state.term {
            self.hard_state = HardState {
                term,
                voted_for: None,
            };
            self.save_hard_state();
            // Acknowledgements of an earlier term would only confuse.
            self.pending_acknowledgements.clear();
        }
        if self.role() == Role::Leader {
            self.step_down_as_leader(leader);
        }
        if self.role() != Role::Follower || self.leader != leader {
            tracing::debug!(node = %self.id(), term = %term, leader = ?leader, "became follower");
        }
        self.role = RoleState::Follower;
        self.leader = leader;
        self.reset_election_timer();
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let span = u64::from(self.config.election_ticks_max - self.config.election_ticks_min);
        self.randomized_election_timeout =
            self.config.election_ticks_min + (self.rng.next_u64() % span) as u32;
    }

    fn not_leader_error(&self) -> RequestError {
        RequestError::NotLeader {
            leader_hint: self.leader.filter(|leader| *leader != self.id()),
        }
    }

    /// New durable entries: a follower may now acknowledge them; a leader
    /// counts itself toward their commit.
    fn on_log_persisted(&mut self) {
        let persisted = self.log.persisted();
        while let Some((required, _)) = self.pending_acknowledgements.front() {
            if *required > persisted {
                break;
            }
            let (_, message) = self
                .pending_acknowledgements
                .pop_front()
                .expect("front was just checked");
            self.outbox.push(Output::Send(message));
        }
        // Only an index past the commit index can move it.
        if persisted > self.log.committed() {
            if let Some(mut leader) = self.leading() {
                leader.advance_commit();
            }
        }
    }

    /// Hands committed, durable entries to the state machine.
    fn emit_committed_entries(&mut self) {
        if self.log.must_seal_to_apply() {
            self.outbox.seal(&mut self.log);
        }
        let entries = self.log.take_entries_to_apply();
        if entries.is_empty() {
            return;
        }
        let applied_up_to = self.log.applied_up_to();
        if let Some(mut leader) = self.leading() {
            leader.handed_out(applied_up_to);
        }
        self.outbox.push(Output::Apply { entries });
    }
}

/// The log a restored state describes. With a trailing log that starts
/// before the snapshot, its first entry becomes the log's base (the term of
/// the entry before it is unknown).
fn restored_log(
    snapshot: Option<&SnapshotMetadata>,
    mut entries: Vec<Entry>,
    applied: LogIndex,
    membership: Membership,
) -> RaftLog {
    let membership_index = snapshot.map_or(LogIndex(0), |snapshot| snapshot.index);
    let base = match (snapshot, entries.first()) {
        (Some(snapshot), Some(first)) if first.index <= snapshot.index => {
            let first = entries.remove(0);
            (first.index, first.term)
        }
        (Some(snapshot), _) => (snapshot.index, snapshot.term),
        (None, _) => (LogIndex(0), Term(0)),
    };
    RaftLog::restored(base, entries, applied, (membership_index, membership))
}

fn validate_restored_log(restored: &RestoredState) -> Result<(), CoreError> {
    let (mut expected, mut previous_term) = match &restored.snapshot {
        Some(snapshot) => {
            if restored.applied < snapshot.index {
                return Err(CoreError::AppliedBeforeSnapshot {
                    applied: restored.applied,
                    snapshot: snapshot.index,
                });
            }
            // A trailing log kept behind the snapshot may start before it.
            match restored.entries.first() {
                Some(first) if first.index <= snapshot.index => {
                    let held = restored
                        .entries
                        .get((snapshot.index.0 - first.index.0) as usize)
                        .map(|entry| entry.term);
                    if held != Some(snapshot.term) {
                        return Err(CoreError::SnapshotNotInLog {
                            index: snapshot.index,
                            term: snapshot.term,
                        });
                    }
                    (first.index, Term(0))
                }
                _ => (snapshot.index.next(), snapshot.term),
            }
        }
        None => (LogIndex(1), Term(0)),
    };
    for entry in &restored.entries {
        if entry.index != expected {
            return Err(CoreError::LogNotContiguous {
                expected,
                found: entry.index,
            });
        }
        if entry.term < previous_term {
            return Err(CoreError::LogTermDecreases {
                index: entry.index,
                term: entry.term,
                previous: previous_term,
            });
        }
        previous_term = entry.term;
        expected = expected.next();
    }
    if previous_term > restored.hard_state.term {
        return Err(CoreError::LogAheadOfTerm {
            found: previous_term,
            term: restored.hard_state.term,
        });
    }
    let last = expected.previous();
    if restored.applied > last {
        return Err(CoreError::AppliedPastLog {
            applied: restored.applied,
            last,
        });
    }
    Ok(())
}

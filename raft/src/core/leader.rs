//! The leader: accepting proposals, committing, heartbeats and CheckQuorum
//! (Raft paper §5.3, §5.4.2; dissertation §6.2). Replication to each peer
//! is in `replication.rs`.
//!
//! Everything only a leader may do is a method of [`Leader`], a handle that
//! exists only while the node leads ([`RaftCore::leading`]): it borrows the
//! leader's own state together with the parts of the core leader rules use,
//! so "only a leader does this" is checked by the compiler, not asserted.
//! What ends leadership (a lost quorum, a committed removal) is reported
//! back as [`Leadership::Lost`]; the core then becomes a follower.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::leadership_transfer::LeadershipTransfer;
use super::log::RaftLog;
use super::message::MessageBody;
use super::outbox::Outbox;
use super::output::Output;
use super::progress::Progress;
use super::quorum::Membership;
use super::read_index::ReadQueue;
use super::role::RoleState;
use super::snapshot::SnapshotMetadata;
use super::{RaftCore, Role};
use crate::config::Config;
use crate::error::RequestError;
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, RequestId, Term};

/// State only a leader has.
#[derive(Debug)]
pub(super) struct LeaderState {
    /// Replication progress of every other member.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// Accepted proposals not yet handed out for applying, by index, so that
    /// they can be failed if leadership is lost.
    pub(super) proposals: VecDeque<(LogIndex, RequestId)>,
    /// The current heartbeat round; followers echo it back.
    pub(super) round: u64,
    /// Reads waiting for leadership confirmation or for the state machine.
    pub(super) reads: ReadQueue,
    /// Ticks since the leader last sent heartbeats.
    pub(super) heartbeat_elapsed: u32,
    /// Ticks since the last CheckQuorum round.
    pub(super) check_quorum_elapsed: u32,
    /// Peers that need an append (new entries or commit) at the next flush.
    pub(super) append_pending: bool,
    /// A heartbeat with a new round is needed at the next flush (for reads).
    pub(super) heartbeat_pending: bool,
    /// The leadership transfer in progress, if any.
    pub(super) transfer: Option<LeadershipTransfer>,
}

impl LeaderState {
    /// A new leader's state: every other member is probed from `next_index`.
    fn new(peers: impl Iterator<Item = NodeId>, next_index: LogIndex) -> LeaderState {
        LeaderState {
            progress: peers
                .map(|peer| (peer, Progress::new(next_index)))
                .collect(),
            proposals: VecDeque::new(),
            round: 0,
            reads: ReadQueue::default(),
            heartbeat_elapsed: 0,
            check_quorum_elapsed: 0,
            append_pending: false,
            heartbeat_pending: false,
            transfer: None,
        }
    }

    /// The replication progress of `peer`, which must be another member.
    pub(super) fn progress_of(&mut self, peer: NodeId) -> &mut Progress {
        self.progress.get_mut(&peer).expect("peer has progress")
    }

    /// The voter leadership is being handed to, if any.
    pub(super) fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|transfer| transfer.target)
    }

    /// Fails every request the leader was holding, as it stops leading.
    fn fail_requests(mut self, outbox: &mut Outbox, new_leader: Option<NodeId>) {
        for (_, request_id) in self.proposals.drain(..) {
            outbox.push(Output::RequestFailed {
                request_id,
                error: RequestError::LeadershipLost {
                    leader_hint: new_leader,
                },
            });
        }
        for request_id in self.reads.drain() {
            outbox.push(Output::RequestFailed {
                request_id,
                error: RequestError::NotLeader {
                    leader_hint: new_leader,
                },
            });
        }
    }
}

/// Whether a leader rule left the node leading.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Leadership {
    /// The node still leads.
    Kept,
    /// The node must step down (it becomes a follower in its term).
    Lost,
}

/// A leader at work: its own state and the parts of the core that leader
/// rules read or change. Only [`RaftCore::leading`] makes one.
pub(super) struct Leader<'core> {
    pub(super) state: &'core mut LeaderState,
    pub(super) config: &'core Config,
    pub(super) term: Term,
    pub(super) log: &'core mut RaftLog,
    pub(super) outbox: &'core mut Outbox,
    pub(super) latest_snapshot: Option<&'core SnapshotMetadata>,
    /// The index the state machine has reported applied.
    pub(super) applied: LogIndex,
}

impl RaftCore {
    /// The leader's handle, while this node leads.
    pub(super) fn leading(&mut self) -> Option<Leader<'_>> {
        let RoleState::Leader(state) = &mut self.role else {
            return None;
        };
        Some(Leader {
            state,
            config: &self.config,
            term: self.hard_state.term,
            log: &mut self.log,
            outbox: &mut self.outbox,
            latest_snapshot: self.latest_snapshot.as_ref(),
            applied: self.applied,
        })
    }

    /// The leader's state, while this node leads.
    pub(super) fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role {
            RoleState::Leader(state) => Some(state),
            _ => None,
        }
    }

    /// Raft paper §5.2 and §8: a new leader initialises every follower's
    /// progress and appends a no-op so that entries of earlier terms commit.
    pub(super) fn become_leader(&mut self) {
        tracing::debug!(node = %self.id(), term = %self.hard_state.term, "became leader");
        let own = self.id();
        let next_index = self.log.last_index().next();
        let peers = self.membership().members().filter(|member| *member != own);
        self.role = RoleState::Leader(LeaderState::new(peers, next_index));
        self.leader = Some(own);
        let mut leader = self.leading().expect("just became leader");
        let term = leader.term;
        leader.append(Entry {
            term,
            index: next_index,
            payload: EntryPayload::Noop,
        });
    }

    /// Ends this node's leadership, failing every request it was holding.
    pub(super) fn step_down_as_leader(&mut self, new_leader: Option<NodeId>) {
        self.outbox.seal(&mut self.log);
        if let RoleState::Leader(state) = std::mem::replace(&mut self.role, RoleState::Follower) {
            state.fail_requests(&mut self.outbox, new_leader);
        }
    }

    /// A client's proposal: appended if this node leads and takes
    /// proposals, failed otherwise.
    pub(super) fn propose(&mut self, request_id: RequestId, command: Bytes) {
        if let Some(mut leader) = self.leading_for(request_id) {
            leader.propose(request_id, command);
        }
    }

    /// The leader's handle for a client's request; when this node does not
    /// lead, the request fails at once, with a hint of who does.
    pub(super) fn leading_for(&mut self, request_id: RequestId) -> Option<Leader<'_>> {
        if self.role() != Role::Leader {
            let error = self.not_leader_error();
            self.outbox
                .push(Output::RequestFailed { request_id, error });
            return None;
        }
        self.leading()
    }

    /// One tick of a leader: heartbeats, the transfer's clock and
    /// CheckQuorum.
    pub(super) fn tick_leader(&mut self) {
        self.lead(|leader| leader.tick());
    }

    /// Applies a leader rule that may end leadership, if this node leads;
    /// when it does end it, the node becomes a follower in its term.
    pub(super) fn lead(&mut self, rule: impl FnOnce(&mut Leader<'_>) -> Leadership) {
        let Some(mut leader) = self.leading() else {
            return;
        };
        if rule(&mut leader) == Leadership::Lost {
            let term = self.hard_state.term;
            self.become_follower(term, None);
        }
    }
}

impl Leader<'_> {
    pub(super) fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration in effect (the latest in the log).
    pub(super) fn membership(&self) -> &Membership {
        self.log.membership()
    }

    /// Sends `body` to `to` in the leader's term.
    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.outbox.send(self.config.id, to, self.term, body);
    }

    fn tick(&mut self) -> Leadership {
        self.tick_transfer();
        self.state.heartbeat_elapsed += 1;
        if self.state.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.state.heartbeat_elapsed = 0;
            self.send_heartbeats();
        }
        if !self.config.check_quorum {
            return Leadership::Kept;
        }
        self.state.check_quorum_elapsed += 1;
        if self.state.check_quorum_elapsed < self.config.election_ticks_min {
            return Leadership::Kept;
        }
        self.state.check_quorum_elapsed = 0;
        let mut active = vec![self.config.id];
        for (node, progress) in self.state.progress.iter_mut() {
            if progress.recently_active {
                active.push(*node);
            }
            progress.recently_active = false;
        }
        if self.membership().is_quorum(&active) {
            return Leadership::Kept;
        }
        tracing::info!(node = %self.id(), term = %self.term,
            "stepping down: no contact with a quorum for an election timeout");
        Leadership::Lost
    }

    fn propose(&mut self, request_id: RequestId, command: Bytes) {
        if let Some(target) = self.state.transfer_target() {
            let error = RequestError::TransferringLeadership { target };
            self.outbox
                .push(Output::RequestFailed { request_id, error });
            return;
        }
        if !self.membership().is_voter(self.id()) {
            // This leader has removed itself and steps down once that
            // commits; a new leader takes proposals. Taking none meanwhile
            // leaves its log ending at its removal, so the voters that
            // acknowledge the removal hold the whole log and one can take
            // over at once (`step_down_if_removed`).
            let error = RequestError::NotLeader { leader_hint: None };
            self.outbox
                .push(Output::RequestFailed { request_id, error });
            return;
        }
        let index = self.log.last_index().next();
        let term = self.term;
        let append_position = self.append(Entry {
            term,
            index,
            payload: EntryPayload::Command(command),
        });
        self.outbox.push(Output::ProposalAccepted {
            request_id,
            index,
            term,
        });
        self.outbox.proposal_appended(append_position);
        self.state.proposals.push_back((index, request_id));
    }

    /// Appends an entry this leader created; followers receive it at the
    /// next flush, so that proposals arriving together share messages.
    /// Returns the position in the outputs of the `AppendLog` that will
    /// hold it.
    pub(super) fn append(&mut self, entry: Entry) -> usize {
        let position = self.outbox.append_position(self.log);
        self.log.push(entry);
        self.state.append_pending = true;
        position
    }

    /// Raft paper §5.3 and §5.4.2: commit the highest index stored on a
    /// majority, but only when that entry is of the current term (Figure 8).
    pub(super) fn advance_commit(&mut self) {
        let own_id = self.config.id;
        let own_match = self.log.persisted();
        let progress = &self.state.progress;
        let quorum_index = self.log.membership().committed_index(|node| {
            if node == own_id {
                own_match
            } else {
                progress
                    .get(&node)
                    .map_or(LogIndex(0), |progress| progress.match_index)
            }
        });
        let current_term_entry = self.log.term_at(quorum_index) == Some(self.term);
        #[cfg(feature = "bug-injection")]
        let current_term_entry =
            current_term_entry || self.config.bug_injection.commit_previous_term_by_counting;
        if current_term_entry && self.log.commit_to(quorum_index) {
            self.on_commit_advanced();
        }
    }

    /// Entries up to `applied_up_to` were handed out for applying: their
    /// proposals are answered by the state machine, no longer by failing.
    pub(super) fn handed_out(&mut self, applied_up_to: LogIndex) {
        let proposals = &mut self.state.proposals;
        while proposals
            .front()
            .is_some_and(|(index, _)| *index <= applied_up_to)
        {
            proposals.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        Config, Entry, Input, LogIndex, NodeId, Output, RaftCore, RequestId, RestoredState, Role,
    };

    /// A one-node leader whose no-op entry is durable and applied.
    fn single_node_leader() -> RaftCore {
        let config = Config::new(NodeId(1));
        let mut core = RaftCore::new(config, RestoredState::new_cluster([NodeId(1)]), 3).unwrap();
        while core.role() != Role::Leader {
            core.step(Input::Tick);
        }
        let mut outputs = core.take_outputs();
        while !outputs.is_empty() {
            for output in outputs {
                match output {
                    Output::AppendLog { entries } => {
                        let last = entries.last().unwrap();
                        core.step(Input::LogPersisted {
                            index: last.index,
                            term: last.term,
                        });
                    }
                    Output::Apply { entries } => {
                        core.step(Input::Applied {
                            index: entries.last().unwrap().index,
                        });
                    }
                    _ => {}
                }
            }
            outputs = core.take_outputs();
        }
        core
    }

    fn propose(core: &mut RaftCore, request_id: u64) {
        core.step(Input::Propose {
            request_id: RequestId(request_id),
            command: "x".into(),
        });
    }

    fn appended_indexes(output: &Output) -> Vec<u64> {
        match output {
            Output::AppendLog { entries } => {
                entries.iter().map(|entry: &Entry| entry.index.0).collect()
            }
            other => panic!("expected an AppendLog, got {other:?}"),
        }
    }

    #[test]
    fn proposals_stepped_together_share_one_append() {
        let mut core = single_node_leader();
        let term = core.term();
        for request_id in 1..=3 {
            propose(&mut core, request_id);
        }
        let outputs = core.take_outputs();
        assert_eq!(outputs.len(), 4, "{outputs:?}");
        assert_eq!(appended_indexes(&outputs[0]), vec![2, 3, 4]);
        for (offset, output) in outputs[1..].iter().enumerate() {
            let expected = Output::ProposalAccepted {
                request_id: RequestId(offset as u64 + 1),
                index: LogIndex(offset as u64 + 2),
                term,
            };
            assert_eq!(*output, expected);
        }
    }

    #[test]
    fn an_append_already_taken_is_never_extended() {
        let mut core = single_node_leader();
        propose(&mut core, 1);
        assert_eq!(appended_indexes(&core.take_outputs()[0]), vec![2]);
        propose(&mut core, 2);
        assert_eq!(appended_indexes(&core.take_outputs()[0]), vec![3]);
    }
}

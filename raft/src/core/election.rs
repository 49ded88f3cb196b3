//! Elections: follower timeouts, pre-candidates, candidates and voting
//! (Raft paper §5.2 and §5.4.1; PreVote from dissertation §9.6).

use super::message::{MessageBody, RequestVote, RequestVoteResponse};
use super::role::{RoleState, Votes};
use super::validation::MESSAGE_NUMBER_LIMIT;
use super::{RaftCore, Role};
use crate::types::{HardState, NodeId, Term};

impl RaftCore {
    /// Followers and candidates count down to an election.
    pub(super) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_election_timeout {
            if !self.may_campaign() {
                // A node that may not stand (a learner, or a voter that has
                // not yet received its promotion) has not heard from its
                // leader for an election timeout either: it forgets it, so
                // that its CheckQuorum lease ends and it answers the voters
                // who elect the next one (its vote may be needed).
                self.leader = None;
            }
            self.start_campaign(false);
        }
    }

    /// Starts an election, with a pre-vote round first when PreVote is on
    /// and the election was not forced by a leadership transfer.
    pub(super) fn start_campaign(&mut self, leadership_transfer: bool) {
        if !self.may_campaign() {
            // Learners and removed nodes never campaign.
            self.reset_election_timer();
            return;
        }
        if self.hard_state.term.0 + 1 >= MESSAGE_NUMBER_LIMIT {
            // No peer would accept a message of the next term; a term this
            // large was forced on the cluster by a message no correct peer
            // sends.
            tracing::error!(node = %self.id(), term = %self.hard_state.term,
                "not campaigning: the next term would reach the largest term a message may carry");
            self.reset_election_timer();
            return;
        }
        if self.config.pre_vote && !leadership_transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate(leadership_transfer);
        }
    }

    /// Whether this node may stand for election: it is a voter in its
    /// latest configuration, or in the configuration at its commit index.
    /// The second case is a leader whose own removal was not committed
    /// when it lost leadership: the remaining voters may need it to lead
    /// once more, to commit its removal (counting votes with its latest
    /// configuration), before they can elect one of themselves.
    fn may_campaign(&self) -> bool {
        let id = self.id();
        self.membership().is_voter(id) || self.log.membership_at(self.log.committed()).is_voter(id)
    }

    fn become_pre_candidate(&mut self) {
        tracing::debug!(node = %self.id(), term = %self.hard_state.term, "starting pre-vote");
        let votes = Votes::for_self(self.id());
        let won = self.membership().is_quorum(votes.granted());
        self.role = RoleState::PreCandidate(votes);
        self.leader = None;
        self.reset_election_timer();
        let prospective_term = self.hard_state.term.next();
        if won {
            self.become_candidate(false);
            return;
        }
        self.request_votes(prospective_term, true, false);
    }

    fn become_candidate(&mut self, leadership_transfer: bool) {
        self.hard_state = HardState {
            term: self.hard_state.term.next(),
            voted_for: Some(self.id()),
        };
        tracing::debug!(node = %self.id(), term = %self.hard_state.term, "starting election");
        // The self-vote is durable before any request for votes is sent.
        self.save_hard_state();
        self.pending_acknowledgements.clear();
        let votes = Votes::for_self(self.id());
        let won = self.membership().is_quorum(votes.granted());
        self.role = RoleState::Candidate(votes);
        self.leader = None;
        self.reset_election_timer();
        if won {
            self.become_leader();
            return;
        }
        let term = self.hard_state.term;
        self.request_votes(term, false, leadership_transfer);
    }

    fn request_votes(&mut self, term: Term, pre_vote: bool, leadership_transfer: bool) {
        let request = RequestVote {
            pre_vote,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            leadership_transfer,
        };
        let own_id = self.id();
        let voters: Vec<NodeId> = self.membership().voters.iter().copied().collect();
        for voter in voters.into_iter().filter(|voter| *voter != own_id) {
            self.outbox.push(super::Output::Send(super::Message {
                from: self.id(),
                to: voter,
                term,
                body: MessageBody::RequestVote(request),
            }));
        }
    }

    /// Raft paper §5.2 and §5.4.1: grant at most one vote per term, and only
    /// to a candidate whose log is at least as up to date as ours. A
    /// pre-vote is granted on the same log rule for a later term, without
    /// recording anything.
    pub(super) fn handle_request_vote(&mut self, from: NodeId, term: Term, request: RequestVote) {
        let current = self.hard_state.term;
        let can_vote = self.hard_state.voted_for == Some(from)
            || (self.hard_state.voted_for.is_none() && self.leader.is_none())
            || (request.pre_vote && term > current);
        let log_ok = self
            .log
            .is_up_to_date(request.last_log_index, request.last_log_term);
        #[cfg(feature = "bug-injection")]
        let log_ok = log_ok || self.config.bug_injection.vote_without_log_check;
        // Granted whatever this node's own configuration says of either side
        // (dissertation §4.1): the candidate counts only the votes of its
        // configuration's voters, and an uncommitted configuration here may
        // be about to be replaced.
        let granted = can_vote && log_ok;
        if granted && !request.pre_vote {
            self.hard_state.voted_for = Some(from);
            // The vote is durable before the answer is sent.
            self.save_hard_state();
            self.election_elapsed = 0;
        }
        let response_term = if granted && request.pre_vote {
            term
        } else {
            current
        };
        tracing::trace!(node = %self.id(), candidate = %from, pre_vote = request.pre_vote, granted, "vote request");
        self.outbox.push(super::Output::Send(super::Message {
            from: self.id(),
            to: from,
            term: response_term,
            body: MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: request.pre_vote,
                granted,
            }),
        }));
    }

    pub(super) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        response: RequestVoteResponse,
    ) {
        let current = self.hard_state.term;
        let is_voter = self.membership().is_voter(from);
        let (votes, pre_vote) = match &mut self.role {
            RoleState::PreCandidate(votes) if response.pre_vote => {
                // Granted pre-votes carry the prospective term; refusals carry
                // the voter's (equal) term.
                if response.granted && term != current.next() {
                    return;
                }
                (votes, true)
            }
            RoleState::Candidate(votes) if !response.pre_vote && term == current => (votes, false),
            _ => return,
        };
        if !is_voter {
            return;
        }
        votes.record(from, response.granted);
        let refused = votes.refused();
        if self.log.membership().is_quorum(votes.granted()) {
            if pre_vote {
                self.become_candidate(false);
            } else {
                self.become_leader();
            }
        } else if refused >= self.membership().quorum_size() {
            // The election cannot be won; wait for a leader or a timeout.
            let term = self.hard_state.term;
            self.become_follower(term, None);
        }
    }

    /// Leadership transfer: the current leader asks us to campaign at once.
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.role() != Role::Leader && self.leader == Some(from) {
            self.start_campaign(true);
        }
    }
}

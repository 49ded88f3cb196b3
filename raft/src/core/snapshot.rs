//! Snapshots and log compaction (Raft paper §7): the log is compacted up to
//! a snapshot the driver took, and a follower that needs compacted entries
//! receives the snapshot instead.

use std::sync::Arc;

use super::leader::Leader;
use super::message::{InstallSnapshotResponse, MessageBody};
use super::output::Output;
use super::quorum::Membership;
use super::{RaftCore, Role};
use crate::types::{LogIndex, NodeId, Term};

/// What a snapshot of the state machine covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMetadata {
    /// The last log index the snapshot includes.
    pub index: LogIndex,
    /// The term of that entry.
    pub term: Term,
    /// The cluster membership as of that entry; shared, so that the
    /// messages and outputs that carry metadata stay small.
    pub membership: Arc<Membership>,
}

/// Heartbeat rounds a leader waits for a snapshot's answer before it sends
/// the snapshot again (the transfer or its answer may have been lost).
pub(super) const SNAPSHOT_RETRY_ROUNDS: u64 = 20;

impl RaftCore {
    /// The driver saved a snapshot: remember it and compact the log,
    /// keeping a trailing stretch so that a briefly slow follower catches
    /// up from the log rather than from a snapshot.
    pub(super) fn snapshot_taken(&mut self, metadata: SnapshotMetadata) {
        if metadata.index > self.log.applied_up_to()
            || self.log.term_at(metadata.index) != Some(metadata.term)
        {
            tracing::warn!(node = %self.id(), index = %metadata.index,
                "ignoring a snapshot that does not match the applied log");
            return;
        }
        if self
            .latest_snapshot
            .as_ref()
            .is_some_and(|latest| latest.index >= metadata.index)
        {
            return;
        }
        let compact_to = LogIndex(
            metadata
                .index
                .0
                .saturating_sub(self.config.snapshot_trailing_entries),
        );
        self.latest_snapshot = Some(metadata);
        if self.log.compact_to(compact_to) {
            self.outbox.push(Output::CompactLog {
                up_to: self.log.base_index(),
            });
        }
    }

    /// A follower receives the leader's snapshot. It installs it unless its
    /// own log already holds everything the snapshot covers.
    pub(super) fn handle_install_snapshot(&mut self, from: NodeId, metadata: SnapshotMetadata) {
        if self.role() != Role::Follower || self.leader != Some(from) {
            let term = self.hard_state.term;
            self.become_follower(term, Some(from));
        }
        self.election_elapsed = 0;
        let already_held = metadata.index <= self.log.committed()
            || self.log.term_at(metadata.index) == Some(metadata.term);
        if already_held {
            // Paper §7: keep the log; the leader continues by probing.
            let response = InstallSnapshotResponse {
                accepted: false,
                last_log_index: self.log.last_index(),
            };
            self.send(from, MessageBody::InstallSnapshotResponse(response));
            return;
        }
        tracing::info!(node = %self.id(), index = %metadata.index, term = %metadata.term,
            "installing snapshot from the leader");
        self.log.reset_to_snapshot(
            metadata.index,
            metadata.term,
            Membership::clone(&metadata.membership),
        );
        self.applied = metadata.index;
        // Acknowledgements waiting for entries of the replaced log are void.
        self.pending_acknowledgements.clear();
        self.latest_snapshot = Some(metadata.clone());
        self.outbox.push(Output::RestoreSnapshot { metadata });
        let response = InstallSnapshotResponse {
            accepted: true,
            last_log_index: self.log.last_index(),
        };
        self.send(from, MessageBody::InstallSnapshotResponse(response));
    }

    /// The leader learns how a snapshot transfer ended.
    pub(super) fn handle_install_snapshot_response(
        &mut self,
        from: NodeId,
        response: InstallSnapshotResponse,
    ) {
        if let Some(mut leader) = self.leading() {
            leader.handle_install_snapshot_response(from, response);
        }
    }
}

impl Leader<'_> {
    /// Sends `peer` the latest snapshot, unless one is already on its way.
    /// Returns whether it sent one.
    pub(super) fn send_snapshot(&mut self, peer: NodeId) -> bool {
        let metadata = self
            .latest_snapshot
            .expect("the log is compacted only after a snapshot")
            .clone();
        let round = self.state.round;
        let progress = self.state.progress_of(peer);
        if progress.snapshot_in_flight.is_some() {
            return false;
        }
        progress.snapshot_in_flight = Some((metadata.index, round));
        tracing::debug!(node = %self.id(), follower = %peer, index = %metadata.index, "sending snapshot");
        self.send(peer, MessageBody::InstallSnapshot(metadata));
        true
    }

    fn handle_install_snapshot_response(
        &mut self,
        from: NodeId,
        response: InstallSnapshotResponse,
    ) {
        let Some(progress) = self.state.progress.get_mut(&from) else {
            return;
        };
        progress.recently_active = true;
        let Some((index, _)) = progress.snapshot_in_flight.take() else {
            return;
        };
        if response.accepted {
            progress.become_probe(index.next());
            if progress.record_match(index) {
                self.advance_commit();
            }
        } else {
            // The follower already held the snapshot's entries. Its log may
            // run past the leader's (entries of an older term, not
            // committed): probe from no further than the leader's own end.
            let next_index = response.last_log_index.min(self.log.last_index()).next();
            progress.become_probe(next_index);
        }
        self.send_entries(from);
    }
}

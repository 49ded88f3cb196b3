//! Snapshots in the simulation: nodes snapshot their state machine every
//! few entries (so that compaction and snapshot transfers happen in most
//! runs), snapshots travel beside their messages, and a follower installs a
//! received one atomically.

use raft::{Input, LogIndex, Message, MessageBody, NodeId, SnapshotMetadata};

use crate::simulator::cluster::{position_of, Cluster};
use crate::simulator::disk::StoredSnapshot;

impl Cluster {
    /// Takes a snapshot at `applied` when enough entries were applied since
    /// the last one.
    pub(crate) fn maybe_take_snapshot(&mut self, node: NodeId, applied: LogIndex) {
        let interval = self.scenario.snapshot_interval_entries;
        let position = position_of(node);
        let sim_node = &mut self.nodes[position];
        if interval == 0 || sim_node.core.is_none() {
            return;
        }
        let last = sim_node
            .disk
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |snapshot| snapshot.metadata.index);
        if applied.0 < last.0 + interval {
            return;
        }
        let term = sim_node
            .log
            .term_at(applied)
            .expect("applied entries are in the log");
        let (terms, chains) = sim_node.log.prefix(applied);
        let metadata = SnapshotMetadata {
            index: applied,
            term,
            membership: sim_node
                .core
                .as_ref()
                .expect("checked above")
                .membership_at(applied)
                .clone()
                .into(),
        };
        sim_node.disk.snapshot = Some(StoredSnapshot {
            metadata: metadata.clone(),
            kv: sim_node.kv.clone(),
            terms,
            chains,
        });
        self.stats.snapshots_taken += 1;
        self.trace_line(format!("{node} snapshot at {applied}"));
        self.step_node(node, Input::SnapshotTaken { metadata });
    }

    /// The snapshot to stream with `message`, if it is a snapshot message.
    pub(crate) fn snapshot_for(
        &self,
        node: NodeId,
        message: &Message,
    ) -> Option<Box<StoredSnapshot>> {
        let MessageBody::InstallSnapshot(metadata) = &message.body else {
            return None;
        };
        let snapshot = self.nodes[position_of(node)]
            .disk
            .snapshot
            .clone()
            .expect("a node sends only a snapshot it holds");
        assert_eq!(
            &snapshot.metadata, metadata,
            "the core names the latest snapshot"
        );
        Some(Box::new(snapshot))
    }

    /// The receiving driver stores the streamed snapshot durably, then
    /// hands the message to the core.
    pub(crate) fn deliver_snapshot(&mut self, message: Message, snapshot: StoredSnapshot) {
        let to = message.to;
        if !self.network.is_connected(message.from, to) || !self.is_alive(to) {
            return;
        }
        self.trace_line(format!(
            "{to} <- {}: snapshot at {} of {}",
            message.from, snapshot.metadata.index, snapshot.metadata.term
        ));
        self.nodes[position_of(to)].disk.receive_snapshot(snapshot);
        self.step_node(to, Input::Message(message));
    }

    /// The driver installs the snapshot the core took: state machine and
    /// disk are replaced together. (The node's log view took it when the
    /// core decided, in `driver.rs`.)
    pub(crate) fn install_snapshot(&mut self, node: NodeId, metadata: SnapshotMetadata) {
        let sim_node = &mut self.nodes[position_of(node)];
        let snapshot = sim_node
            .disk
            .take_incoming_snapshot(&metadata)
            .expect("the driver stored the snapshot before the core saw it");
        sim_node.kv = snapshot.kv.clone();
        sim_node.disk.install(snapshot);
        sim_node.accepted.clear();
        self.stats.snapshots_installed += 1;
        self.trace_line(format!("{node} installed snapshot at {}", metadata.index));
    }
}

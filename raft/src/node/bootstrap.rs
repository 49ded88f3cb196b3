//! Recovery at start, apart from the wiring: open the WAL and the snapshot
//! store, restore the state machine from the latest snapshot (the log gives
//! way to a snapshot ahead of it), and build the core from what is durable.
//! [`super::Node::start`] calls [`recover`], then wires the event loop, the
//! applier and the transport around what it returns.

use std::sync::Arc;

use crate::core::quorum::Membership;
use crate::core::{RaftCore, RestoredState};
use crate::state_machine::StateMachine;
use crate::storage::snapshot::{SnapshotFile, SnapshotStore};
use crate::storage::{LogStore, Wal, WalOptions};
use crate::types::{LogIndex, Term};

use super::{NodeOptions, StartError};

/// What a node recovered from its data directory.
pub(crate) struct Recovered<M> {
    /// The open WAL.
    pub(crate) wal: Arc<Wal>,
    /// The snapshot store.
    pub(crate) snapshots: SnapshotStore,
    /// The latest snapshot, which `state_machine` was restored from.
    pub(crate) snapshot: Option<SnapshotFile>,
    /// The state machine, as of the snapshot (or empty).
    pub(crate) state_machine: M,
    /// The core, built from the durable hard state, log and snapshot.
    pub(crate) core: RaftCore,
    /// The configuration as of the log's base.
    pub(crate) base_membership: Membership,
    /// The durable end of the log, as the core was told of it.
    pub(crate) durable: (LogIndex, Term),
}

/// Recovers a node from `options.data_directory` into `state_machine`.
pub(crate) fn recover<M: StateMachine>(
    options: &NodeOptions,
    mut state_machine: M,
) -> Result<Recovered<M>, StartError> {
    let wal_options = WalOptions {
        cluster_id: options.cluster_id,
        node_id: options.id,
        ..options.wal.clone()
    };
    let wal = Arc::new(Wal::open(&options.data_directory, wal_options)?);
    if let Some(torn) = &wal.recovery_report().torn_tail {
        tracing::warn!(?torn, "recovered from a torn write at the end of the log");
    }
    let snapshots = SnapshotStore::open(&options.data_directory)?;
    let snapshot = snapshots.latest()?;
    if let Some(file) = &snapshot {
        restore_from_snapshot(&wal, file, &mut state_machine)?;
    }
    let entries = if wal.last_index() >= wal.first_index() {
        wal.entries(wal.first_index(), wal.last_index().next())?
    } else {
        Vec::new()
    };
    // The configuration as of the log's base: the snapshot's, or for a log
    // that starts at 1, the cluster's first (none when joining).
    let base_membership = match &snapshot {
        Some(file) => Membership::clone(&file.metadata().membership),
        None if options.join => Membership::default(),
        None => Membership::with_addressed_voters(&options.members),
    };
    let applied = applied_by(&snapshot);
    let restored = RestoredState {
        hard_state: wal.hard_state(),
        entries,
        membership: base_membership.clone(),
        applied,
        snapshot: snapshot.as_ref().map(|file| file.metadata().clone()),
    };
    let seed = options.id.0 ^ wal.hard_state().term.0.rotate_left(32) ^ seed_from_clock();
    let core = RaftCore::new(options.raft.clone(), restored, seed)?;
    warn_if_removed(options, &core);
    let durable = (wal.last_index(), wal.last_term()?);
    Ok(Recovered {
        wal,
        snapshots,
        snapshot,
        state_machine,
        core,
        base_membership,
        durable,
    })
}

impl<M> Recovered<M> {
    /// Every entry up to here is in the state machine: the snapshot's.
    pub(crate) fn applied(&self) -> LogIndex {
        applied_by(&self.snapshot)
    }
}

/// The index a state machine restored from `snapshot` has applied.
fn applied_by(snapshot: &Option<SnapshotFile>) -> LogIndex {
    snapshot
        .as_ref()
        .map_or(LogIndex(0), |file| file.metadata().index)
}

/// Restores `state_machine` from `file`; a snapshot installed from a
/// leader may be ahead of the log or disagree with an uncommitted suffix of
/// it (a crash came before the log gave way): the snapshot holds committed
/// state, so the log gives way now.
fn restore_from_snapshot<M: StateMachine>(
    wal: &Wal,
    file: &SnapshotFile,
    state_machine: &mut M,
) -> Result<(), StartError> {
    file.restore_into(state_machine)?;
    let metadata = file.metadata();
    tracing::info!(index = %metadata.index, term = %metadata.term,
        "restored the state machine from the latest snapshot");
    let held = (wal.first_index() <= metadata.index && metadata.index <= wal.last_index())
        .then(|| wal.term(metadata.index))
        .transpose()?;
    let purged_to = wal.first_index().previous();
    if held != Some(metadata.term) && purged_to < metadata.index {
        let ticket = wal.submit_purge(metadata.index, metadata.term)?;
        wal.wait(ticket)?;
    }
    Ok(())
}

/// Says so, once, when the log's configuration no longer holds this node.
fn warn_if_removed(options: &NodeOptions, core: &RaftCore) {
    let latest = core.membership();
    if !latest.is_empty() && !latest.contains(options.id) {
        tracing::error!(node = %options.id, voters = ?latest.voters.iter().map(|id| id.get()).collect::<Vec<_>>(),
            "this node is not in the cluster's configuration in its log: it was removed, and \
             the members refuse its messages. To bring the machine back, add it as a new \
             member under a new id with an empty data directory (never reuse a removed id)");
    }
}

/// Election timeouts must differ between nodes and between restarts, so the
/// seed mixes in the clock; the core itself stays deterministic for a given
/// seed.
fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::storage::LogStore;
    use crate::testing::OrderedMapStateMachine;
    use crate::types::{ClusterId, Entry, EntryPayload, HardState, NodeId};

    fn options(directory: &std::path::Path) -> NodeOptions {
        let members = BTreeMap::from([
            (NodeId(1), "127.0.0.1:1".to_string()),
            (NodeId(2), "127.0.0.1:2".to_string()),
        ]);
        NodeOptions::new(NodeId(1), ClusterId(7), members, directory.to_path_buf())
    }

    #[test]
    fn an_empty_directory_recovers_the_first_configuration_and_nothing_else() {
        let directory = tempfile::tempdir().unwrap();
        let recovered =
            recover(&options(directory.path()), OrderedMapStateMachine::new()).expect("recovered");
        assert!(recovered.snapshot.is_none());
        assert_eq!(recovered.applied(), LogIndex(0));
        assert_eq!(recovered.durable, (LogIndex(0), Term(0)));
        assert_eq!(
            recovered
                .base_membership
                .voters
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            [NodeId(1), NodeId(2)]
        );
        assert_eq!(recovered.core.status().last_index, LogIndex(0));
    }

    #[test]
    fn a_written_log_is_recovered_into_the_core() {
        let directory = tempfile::tempdir().unwrap();
        let options = options(directory.path());
        {
            let mut wal = Wal::open(
                &options.data_directory,
                WalOptions::new(options.cluster_id, options.id),
            )
            .unwrap();
            wal.save_hard_state(HardState {
                term: Term(3),
                voted_for: Some(NodeId(2)),
            })
            .unwrap();
            let entries: Vec<Entry> = (1..=4)
                .map(|index| Entry {
                    term: Term(if index < 3 { 2 } else { 3 }),
                    index: LogIndex(index),
                    payload: EntryPayload::Noop,
                })
                .collect();
            wal.append(entries.into()).unwrap();
        }
        let recovered = recover(&options, OrderedMapStateMachine::new()).expect("recovered");
        assert_eq!(recovered.durable, (LogIndex(4), Term(3)));
        let status = recovered.core.status();
        assert_eq!(
            (status.term, status.last_index, status.last_term),
            (Term(3), LogIndex(4), Term(3))
        );
        assert_eq!(recovered.applied(), LogIndex(0));
    }
}

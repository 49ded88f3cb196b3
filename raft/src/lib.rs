//! RustyRaft: the Raft consensus algorithm as a pure, deterministic state
//! machine, with everything that touches the outside world left to a driver.
//!
//! # The core
//!
//! [`RaftCore`] never reads a clock, a socket, a file or a global random
//! number generator. Time is a count of [`Input::Tick`]s; the only randomness
//! (election timeouts) comes from a seeded, portable generator given to
//! [`RaftCore::new`]. The same inputs always produce the same outputs, which
//! is what lets the simulator in `sim/` replay any run from its seed.
//!
//! # The driver contract
//!
//! A driver runs this loop:
//!
//! 1. Feed inputs with [`RaftCore::step`]: [`Input::Tick`] at a fixed
//!    interval, [`Input::Message`] for each message from a peer,
//!    [`Input::Propose`] and [`Input::Read`] for clients,
//!    [`Input::ChangeMembership`] and [`Input::TransferLeadership`] for
//!    operators, and the completions [`Input::LogPersisted`] and
//!    [`Input::Applied`].
//! 2. Take the outputs with [`RaftCore::take_outputs`] (several inputs may
//!    be stepped first: their appends to followers are then batched).
//! 3. Carry the outputs out **in order**, with these rules:
//!    - [`Output::SaveHardState`] must be durable before any later output is
//!      carried out. (A vote is therefore never sent before it is on disk.)
//!      [`OutputGate`] implements this rule without I/O; the node's event
//!      loop and the simulator both carry their outputs out through it.
//!    - [`Output::AppendLog`] may be written in the background, but appends
//!      must reach storage in the order given. When they are durable, feed
//!      [`Input::LogPersisted`]. The core holds back every acknowledgement
//!      that depends on them until then, so a leader may send its entries to
//!      followers while it writes them itself.
//!    - [`Output::Send`] may be dropped, delayed or reordered by the network;
//!      Raft tolerates that.
//!    - [`Output::Apply`] entries are committed and durable; apply them in
//!      order and feed [`Input::Applied`] (a configuration entry's
//!      membership is what a snapshot taken after it records; see
//!      [`RaftCore::membership_at`]). A proposal answered by
//!      [`Output::ProposalAccepted`] completes when its `(index, term)` is
//!      applied; an entry of another term at that index means it was lost.
//!    - [`Output::ReadReady`] means the local state machine may serve the
//!      read now; [`Output::RequestFailed`] ends a request with a reason.
//!    - [`Output::MessageRefused`]: a peer message broke a rule every
//!      correct peer keeps ([`core::validation`]) and changed nothing; count
//!      it and log it without flooding the log. The core checks every
//!      message it is given, so the driver need not, but messages must
//!      reach it through a transport that authenticates peers (mutual TLS)
//!      for a forger to be kept out altogether.
//!    - Snapshots: when the driver has durably saved a snapshot of the state
//!      machine, it feeds [`Input::SnapshotTaken`]; the core may then answer
//!      [`Output::CompactLog`] (storage may delete entries up to an index).
//!      A [`Output::Send`] of [`MessageBody::InstallSnapshot`] means "stream
//!      that snapshot to the peer"; the receiving driver stores it durably
//!      (as a candidate, not yet its snapshot) before stepping the message.
//!      [`Output::RestoreSnapshot`] says the core accepted it: the candidate
//!      becomes the node's snapshot, and it replaces the state machine and
//!      the log, durably, before any later output. A candidate the core
//!      refused (no `RestoreSnapshot` for it) is dropped.
//!
//! The cluster's configuration: [`RaftCore::membership`] is the latest in
//! the log (in effect whether committed or not), and
//! [`RaftCore::membership_at`] the one at any index. A driver sends to the
//! members of both (their [`Membership::addresses`]), and should refuse
//! messages from nodes in neither: a removed node. A node that joins an
//! existing cluster starts with [`RestoredState::joining`].
//!
//! The pieces a driver does this with: the application's [`StateMachine`];
//! [`SnapshotPolicy`] to decide when to snapshot; and, in
//! [`storage::snapshot`], a store that captures a state machine's snapshot
//! on a blocking thread ([`storage::SnapshotStore::save`]), restores one
//! ([`storage::SnapshotFile::restore_into`]), and sends and receives one in
//! chunks ([`storage::snapshot::SnapshotSender`],
//! [`storage::snapshot::SnapshotReceiver`]).
//!
//! ```
//! use raft::{Config, Input, NodeId, Output, RaftCore, RestoredState, RequestId};
//!
//! // A one-node cluster elects itself and commits a proposal.
//! let config = Config::new(NodeId(1));
//! let mut core = RaftCore::new(config, RestoredState::new_cluster([NodeId(1)]), 7).unwrap();
//! let mut durable = 0;
//! let mut applied = Vec::new();
//! for step in 0..40 {
//!     if step == 30 {
//!         core.step(Input::Propose { request_id: RequestId(1), command: "x=1".into() });
//!     } else {
//!         core.step(Input::Tick);
//!     }
//!     let mut pending = core.take_outputs();
//!     while !pending.is_empty() {
//!         for output in pending {
//!             match output {
//!                 Output::SaveHardState(_) => { /* fsync term and vote */ }
//!                 Output::AppendLog { entries } => {
//!                     // Write and fsync, then report.
//!                     let last = entries.last().unwrap();
//!                     durable = last.index.0;
//!                     core.step(Input::LogPersisted { index: last.index, term: last.term });
//!                 }
//!                 Output::Send(_) => { /* no peers in a one-node cluster */ }
//!                 Output::Apply { entries } => {
//!                     for entry in &entries { applied.push(entry.index); }
//!                     core.step(Input::Applied { index: entries.last().unwrap().index });
//!                 }
//!                 Output::ProposalAccepted { .. }
//!                 | Output::ReadReady { .. }
//!                 | Output::RequestFailed { .. } => {}
//!                 Output::MessageRefused { from, refusal } => {
//!                     /* count it; log it, a line a second at most */
//!                     eprintln!("refused a message from {from}: {refusal}");
//!                 }
//!                 Output::CompactLog { .. } | Output::RestoreSnapshot { .. } => {
//!                     unreachable!("this example never takes snapshots")
//!                 }
//!             }
//!         }
//!         pending = core.take_outputs();
//!     }
//! }
//! assert_eq!(core.status().role, raft::Role::Leader);
//! assert_eq!(durable, 2); // the leader's no-op, then the proposal
//! assert_eq!(applied.len(), 2);
//! ```

//! # Features
//!
//! `runtime` (on by default) adds everything that does I/O: the tokio
//! [`node`], the WAL and snapshot files ([`storage`]), the gRPC
//! [`transport`], the [`StateMachine`] trait the node applies to, and the
//! test support in [`testing`]. With `default-features = false` the crate
//! is the core alone ([`core`], [`types`], [`entries`], [`config`],
//! [`error`]), and depends on no I/O crate (`bytes`, `thiserror`,
//! `tracing` and a seeded `rand_chacha`); CI builds it that way, so the
//! core's purity is checked by the compiler, not by discipline.

#![deny(missing_docs)]

pub mod config;
pub mod core;
pub mod entries;
pub mod error;
#[cfg(feature = "runtime")]
pub mod fault;
#[cfg(feature = "runtime")]
pub mod node;
pub mod output_gate;
#[cfg(feature = "runtime")]
pub mod release;
#[cfg(feature = "runtime")]
pub mod snapshot_policy;
#[cfg(feature = "runtime")]
pub mod state_machine;
#[cfg(feature = "runtime")]
pub mod storage;
#[cfg(feature = "runtime")]
pub mod testing;
#[cfg(feature = "runtime")]
pub mod transport;
pub mod types;

#[cfg(feature = "bug-injection")]
pub use crate::config::BugInjection;
pub use crate::config::Config;
pub use crate::core::input::Input;
pub use crate::core::membership_change::{MembershipChange, MembershipRefusal};
pub use crate::core::message::{
    AppendEntries, AppendEntriesResponse, ConflictHint, InstallSnapshotResponse, Message,
    MessageBody, RequestVote, RequestVoteResponse,
};
pub use crate::core::output::Output;
pub use crate::core::progress::{Progress, ReplicationState};
pub use crate::core::quorum::Membership;
pub use crate::core::snapshot::SnapshotMetadata;
pub use crate::core::validation::{Refusal, MESSAGE_NUMBER_LIMIT};
pub use crate::core::{RaftCore, RestoredState, Role, Status};
pub use crate::entries::Entries;
pub use crate::error::{ConfigError, CoreError, RequestError};
pub use crate::output_gate::OutputGate;
#[cfg(feature = "runtime")]
pub use crate::snapshot_policy::SnapshotPolicy;
#[cfg(feature = "runtime")]
pub use crate::state_machine::{StateMachine, StateMachineSnapshot};
pub use crate::types::{
    ClusterId, Entry, EntryPayload, HardState, LogIndex, NodeId, RequestId, Term,
};

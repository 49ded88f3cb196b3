//! The event loop: the one task that owns the [`RaftCore`], feeds it
//! inputs (ticks, peer messages, client requests, storage and apply
//! completions) and carries its outputs out in the order the crate's driver
//! contract requires.

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::core::input::Input;
use crate::core::message::{Message, MessageBody};
use crate::core::output::Output;
use crate::core::snapshot::SnapshotMetadata;
use crate::core::{RaftCore, Role, Status};
use crate::fault::{self, FaultPoint};
use crate::node::applier::{AppliedProgress, Work};
use crate::node::error::RequestFailure;
use crate::node::membership::MembershipView;
use crate::node::metrics::NodeMetrics;
use crate::node::probes::LatencyProbes;
use crate::node::refusals::RefusalLog;
use crate::node::requests::Requests;
use crate::node::stalls::{StallReporter, StallWatch};
use crate::node::status::NodeStatus;
use crate::node::NodeOptions;
use crate::output_gate::OutputGate;
use crate::storage::{Durable, StorageError, Wal};
use crate::transport::snapshot_receive::SnapshotCandidates;
use crate::transport::{InboundReceiver, Peers};
use crate::types::{LogIndex, NodeId, Term};

/// Completions reported to the loop by storage and the applier.
pub(crate) enum Event {
    /// The WAL made submissions durable.
    Durable(Durable),
    /// The state machine applied up to this index.
    Applied(LogIndex),
    /// A snapshot was durably saved.
    SnapshotTaken(SnapshotMetadata),
    /// The state machine failed; the node must stop.
    Fatal(String),
    /// The node's handle asks it to stop. (An event, not a command, so
    /// that it gets through while commands are held back.)
    Stop,
}

/// Requests from the node's handle.
pub(crate) enum Command {
    /// An input for the core: a proposal, a read, a leadership transfer or
    /// a configuration change (a reply waits in the request registry).
    Step(Input),
    /// Report the core's full status.
    Status(oneshot::Sender<Status>),
}

/// How many inputs of one kind are stepped before outputs are carried out:
/// more batching under load, bounded latency.
const BATCH_INPUTS: usize = 512;

/// What a node's start wires an event loop to.
pub(crate) struct EventLoopWiring<R> {
    /// The recovered core.
    pub(crate) core: RaftCore,
    pub(crate) wal: Arc<Wal>,
    pub(crate) peers: Peers,
    pub(crate) requests: Arc<Requests<R>>,
    /// Work for the applier thread.
    pub(crate) applier: std_mpsc::Sender<Work>,
    pub(crate) status: watch::Sender<NodeStatus>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) inbound: InboundReceiver,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    pub(crate) metrics: Arc<NodeMetrics>,
    pub(crate) progress: Arc<AppliedProgress>,
    pub(crate) membership: watch::Sender<MembershipView>,
    pub(crate) snapshot_candidates: Arc<SnapshotCandidates>,
    pub(crate) stalls: Arc<StallReporter>,
    /// The durable end of the log, as the core was told of it.
    pub(crate) durable: (LogIndex, Term),
    /// Every entry up to here is in the state machine.
    pub(crate) applied: LogIndex,
}

pub(crate) struct EventLoop<R> {
    core: RaftCore,
    wal: Arc<Wal>,
    peers: Peers,
    requests: Arc<Requests<R>>,
    applier: std_mpsc::Sender<Work>,
    status: watch::Sender<NodeStatus>,
    tick: Duration,
    commands: mpsc::Receiver<Command>,
    inbound: InboundReceiver,
    events: mpsc::UnboundedReceiver<Event>,
    /// Holds every output after a hard state (or a snapshot's purge)
    /// until that write is durable.
    gate: OutputGate,
    outputs: Vec<Output>,
    /// The durable log position last reported to the core.
    reported: (LogIndex, Term),
    /// Why the node must stop (the state machine failed).
    fatal: Option<String>,
    metrics: Arc<NodeMetrics>,
    /// Logs refused peer messages without flooding the log.
    refusals: RefusalLog,
    /// How long appends, commits and heartbeat rounds take.
    probes: LatencyProbes,
    /// The last entry handed to the applier or appended for a client's
    /// proposal, and the last entry applied.
    handed_out: LogIndex,
    applied_seen: LogIndex,
    /// The applier's progress, read without waiting for its report.
    progress: Arc<AppliedProgress>,
    /// The handle asked the node to stop.
    stopping: bool,
    /// Entries a follower submitted for writing on this task's thread.
    write_inline: Option<crate::storage::Ticket>,
    /// See [`crate::node::NodeOptions::max_apply_backlog`].
    max_apply_backlog: u64,
    /// The configurations last published.
    membership: watch::Sender<MembershipView>,
    /// The members' addresses the node was started with.
    seed_addresses: BTreeMap<NodeId, String>,
    /// Received snapshots waiting for the core's decision.
    snapshot_candidates: Arc<SnapshotCandidates>,
    /// The snapshots whose messages were stepped since outputs were last
    /// taken: the core restores each or it is dropped.
    snapshots_stepped: Vec<SnapshotMetadata>,
    /// How late the clock and the heartbeats are.
    stalls: StallWatch,
}

impl<R> EventLoop<R> {
    /// An event loop over `wiring`, timed and bounded by `options`.
    pub(crate) fn new(wiring: EventLoopWiring<R>, options: &NodeOptions) -> EventLoop<R> {
        EventLoop {
            core: wiring.core,
            wal: wiring.wal,
            peers: wiring.peers,
            requests: wiring.requests,
            applier: wiring.applier,
            status: wiring.status,
            tick: options.tick,
            commands: wiring.commands,
            inbound: wiring.inbound,
            events: wiring.events,
            gate: OutputGate::new(),
            outputs: Vec::new(),
            reported: wiring.durable,
            fatal: None,
            probes: LatencyProbes::new(wiring.metrics.clone()),
            metrics: wiring.metrics,
            refusals: RefusalLog::default(),
            handed_out: wiring.applied,
            applied_seen: wiring.applied,
            progress: wiring.progress,
            stopping: false,
            write_inline: None,
            max_apply_backlog: options.max_apply_backlog,
            membership: wiring.membership,
            seed_addresses: options.members.clone(),
            snapshot_candidates: wiring.snapshot_candidates,
            snapshots_stepped: Vec::new(),
            stalls: StallWatch::new(
                wiring.stalls,
                options.tick,
                options.raft.heartbeat_ticks,
                options.raft.election_ticks_min,
            ),
        }
    }
}

impl<R> EventLoop<R> {
    /// Runs until stopped; returns why it stopped if it was not asked to.
    pub(crate) async fn run(mut self) -> Result<(), String> {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let result = loop {
            let stop = tokio::select! {
                biased;
                Some(event) = self.events.recv() => {
                    self.handle_event(event);
                    let mut taken = 1;
                    while taken < BATCH_INPUTS {
                        let Ok(event) = self.events.try_recv() else { break };
                        self.handle_event(event);
                        taken += 1;
                    }
                    false
                }
                Some(message) = self.inbound.recv() => {
                    self.step_message(message);
                    let mut taken = 1;
                    while taken < BATCH_INPUTS {
                        let Some(message) = self.inbound.try_recv() else { break };
                        self.step_message(message);
                        taken += 1;
                    }
                    false
                }
                due = ticker.tick() => {
                    self.stalls.tick_handled(due.into_std(), Instant::now());
                    self.core.step(Input::Tick);
                    false
                }
                command = self.commands.recv(), if self.accepts_requests() => match command {
                    None => true,
                    Some(command) => {
                        self.handle_command(command);
                        let mut taken = 1;
                        while taken < BATCH_INPUTS && self.accepts_requests() {
                            let Ok(command) = self.commands.try_recv() else { break };
                            self.handle_command(command);
                            taken += 1;
                        }
                        false
                    }
                },
            };
            // After this batch's steps (which alone move the configuration
            // and the commit index) and before its outputs go out: a member
            // added in this batch has its address before the first message,
            // and the status shows a commit index before the applier (a
            // thread of its own, which answers clients) applies up to it,
            // so that no one who saw a write applied reads an older one.
            self.publish_membership();
            self.publish_status();
            self.observe_commits();
            if let Err(error) = self.finish_step() {
                break Err(format!("storage failed: {error}"));
            }
            if let Some(reason) = self.fatal.take() {
                break Err(reason);
            }
            if stop || self.stopping {
                break Ok(());
            }
        };
        self.requests.fail_all(match &result {
            Ok(()) => RequestFailure::ShuttingDown,
            Err(reason) => RequestFailure::NodeFailed(reason.clone()),
        });
        let _ = self.applier.send(Work::Stop);
        result
    }

    /// Carries out the outputs of the inputs just stepped; then writes the
    /// entries a follower submitted, on this thread; then steps what the
    /// applier has applied meanwhile, carrying out what that releases, and
    /// tells the applier which index to report.
    fn finish_step(&mut self) -> Result<(), StorageError> {
        self.carry_out()?;
        if let Some(ticket) = self.write_inline.take() {
            // Blocks this task for a write and an fdatasync, as a follower
            // has nothing to do meanwhile but queue what comes in (taken in
            // one batch after): sparing the hand-off to the WAL's writer
            // thread and back. (Its durability is reported through the
            // WAL's listener as an event, like the writer thread's.)
            self.wal.wait(ticket)?;
        }
        while self.catch_up_applied() {
            self.publish_status();
            self.carry_out()?;
        }
        Ok(())
    }

    /// Asks the applier to report the index the event loop waits for (a
    /// read's, or the end of an apply backlog), then steps the index
    /// applied now if it moved. True when it stepped.
    fn catch_up_applied(&mut self) -> bool {
        let backlog_end = (!self.accepts_requests()).then(|| {
            LogIndex(
                self.handed_out
                    .0
                    .saturating_sub(self.max_apply_backlog)
                    .saturating_add(1),
            )
        });
        let awaited = [self.core.applied_awaited(), backlog_end]
            .into_iter()
            .flatten()
            .min();
        let applied = self.progress.await_index(awaited);
        self.step_applied(applied)
    }

    /// Steps `applied` if the core has not seen it yet. True when it did.
    fn step_applied(&mut self, applied: LogIndex) -> bool {
        let moved = applied > self.applied_seen;
        if moved {
            self.handle_event(Event::Applied(applied));
        }
        moved
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Durable(durable) => {
                self.probes.appends_durable(durable.sequence);
                self.gate.durable(durable.sequence);
                let position = (durable.last_index, durable.last_term);
                if position != self.reported && durable.last_index > LogIndex(0) {
                    self.reported = position;
                    self.core.step(Input::LogPersisted {
                        index: durable.last_index,
                        term: durable.last_term,
                    });
                }
            }
            Event::Applied(index) => {
                self.applied_seen = self.applied_seen.max(index);
                self.core.step(Input::Applied { index })
            }
            Event::SnapshotTaken(metadata) => self.core.step(Input::SnapshotTaken { metadata }),
            Event::Fatal(reason) => self.fatal = Some(reason),
            Event::Stop => self.stopping = true,
        }
    }

    /// Whether the applier keeps up well enough to take client requests:
    /// entries appended for clients or handed to the applier, and not yet
    /// applied, stay under the backlog (counting appended proposals too, so
    /// that requests taken while a batch is still being written count).
    fn accepts_requests(&self) -> bool {
        self.handed_out.0.saturating_sub(self.applied_seen.0) < self.max_apply_backlog
    }

    /// Steps a peer's message, timing the answer to a heartbeat round.
    fn step_message(&mut self, message: Message) {
        if let MessageBody::AppendEntriesResponse(response) = &message.body {
            self.probes.round_answered(message.from, response.round);
        }
        if let MessageBody::InstallSnapshot(metadata) = &message.body {
            self.snapshots_stepped.push(metadata.clone());
        }
        self.core.step(Input::Message(message));
    }

    /// Steps a client's command.
    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Step(input) => {
                if let Input::Propose { .. } = input {
                    fault::arm();
                    fault::panic_if_injected(FaultPoint::EventLoop);
                }
                self.core.step(input)
            }
            Command::Status(reply) => {
                self.step_applied(self.progress.applied());
                let _ = reply.send(self.core.status());
            }
        }
    }

    /// Carries out the core's outputs in order, holding everything after a
    /// hard state until it is durable.
    fn carry_out(&mut self) -> Result<(), StorageError> {
        self.core.drain_outputs_into(&mut self.outputs);
        // A compaction after a snapshot can release millions of entries;
        // freeing them here would hold the loop up for hundreds of ms.
        let released = self.core.take_released_entries();
        if !released.is_empty() {
            crate::release::elsewhere(released);
        }
        if !self.snapshots_stepped.is_empty() {
            self.drop_refused_snapshots();
        }
        // After what the gate still holds, in order.
        self.gate.admit(self.outputs.drain(..));
        while let Some(output) = self.gate.next() {
            self.execute(output)?;
        }
        Ok(())
    }

    /// Drops the received snapshots whose messages were stepped and that
    /// the core did not restore (it holds their entries already, or the
    /// sender is no longer its leader).
    fn drop_refused_snapshots(&mut self) {
        for stepped in std::mem::take(&mut self.snapshots_stepped) {
            let restored = self.outputs.iter().any(|output| {
                matches!(output, Output::RestoreSnapshot { metadata } if *metadata == stepped)
            });
            if !restored && self.snapshot_candidates.take(&stepped).is_some() {
                tracing::info!(index = %stepped.index, term = %stepped.term,
                    "a received snapshot was not needed; it is dropped");
            }
        }
    }

    fn execute(&mut self, output: Output) -> Result<(), StorageError> {
        match output {
            Output::SaveHardState(hard_state) => {
                let ticket = self.wal.submit_hard_state(hard_state)?;
                self.gate.written_pending(ticket.sequence);
            }
            Output::AppendLog { entries } => {
                let ticket = if self.core.role() == Role::Leader {
                    self.wal.submit_append(entries)?
                } else {
                    let ticket = self.wal.submit_append_to_wait(entries)?;
                    self.write_inline = Some(ticket);
                    ticket
                };
                self.probes.append_submitted(ticket.sequence);
            }
            Output::Send(message) => {
                if let MessageBody::AppendEntries(append) = &message.body {
                    let now = Instant::now();
                    if self.probes.round_sent(message.to, append.round, now) {
                        self.stalls.heartbeat_sent(message.to, message.term, now);
                    }
                }
                self.peers.send(message)
            }
            Output::CompactLog { up_to } => {
                let term = self.wal.term(up_to)?;
                self.wal.submit_purge(up_to, term)?;
            }
            Output::RestoreSnapshot { metadata } => {
                // The transfer left the snapshot durable, as a candidate;
                // the core accepted it, so it becomes the node's snapshot.
                // The log gives way to it durably before anything later
                // happens; the applier replaces the state in log order.
                let candidate = self.snapshot_candidates.take(&metadata).ok_or(
                    StorageError::SnapshotNotReceived {
                        index: metadata.index,
                        term: metadata.term,
                    },
                )?;
                candidate.install()?;
                let ticket = self.wal.submit_purge(metadata.index, metadata.term)?;
                self.gate.written_pending(ticket.sequence);
                let _ = self.applier.send(Work::Restore(metadata));
            }
            Output::Apply { entries } => {
                if let Some(last) = entries.last() {
                    self.handed_out = self.handed_out.max(last.index);
                }
                let _ = self.applier.send(Work::Apply(entries, Instant::now()));
            }
            Output::ProposalAccepted {
                request_id,
                index,
                term,
            } => {
                self.handed_out = self.handed_out.max(index);
                self.probes.proposal_appended(index);
                self.requests.accepted(request_id, index, term)
            }
            Output::ReadReady {
                request_id,
                read_index,
            } => self.requests.read_ready(request_id, read_index),
            Output::RequestFailed { request_id, error } => {
                self.requests.fail(request_id, error.into())
            }
            Output::MessageRefused { from, refusal } => {
                self.metrics.count_refusal(refusal.reason());
                let detail =
                    format_args!("a message from {from} that breaks the protocol ({refusal})");
                self.refusals
                    .refused(refusal.reason(), detail, Instant::now());
            }
        }
        Ok(())
    }

    /// Publishes the configurations if they changed, and points the
    /// transport at the members.
    pub(crate) fn publish_membership(&mut self) {
        let this = self.core.id();
        let latest = self.core.membership();
        let committed = self.core.membership_at(self.core.commit_index());
        let was_member = {
            let published = self.membership.borrow();
            if published.latest == *latest && published.committed == *committed {
                return;
            }
            published.committed.contains(this)
        };
        let view = MembershipView::new(latest, committed, &self.seed_addresses);
        if was_member && !view.committed.contains(this) {
            tracing::warn!(node = %this, "this node was removed from the cluster; it stays \
                up but takes no part (stop it; to bring the machine back, add it under a new id with an \
                empty data directory)");
        }
        let ids = |members: &std::collections::BTreeSet<NodeId>| {
            members
                .iter()
                .map(|id| id.get().to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        tracing::info!(voters = %ids(&view.latest.voters), learners = %ids(&view.latest.learners),
            committed_voters = %ids(&view.committed.voters), "configuration");
        view.update_peers(this, &mut self.peers, &self.seed_addresses);
        self.membership.send_replace(view);
    }

    /// Times the proposals this leader appended that are now committed.
    /// Those it appended before losing leadership are forgotten: they may
    /// yet commit under another leader, or be replaced.
    fn observe_commits(&mut self) {
        let leading = self.core.role() == Role::Leader;
        self.probes.commits(leading, self.core.commit_index());
    }

    fn publish_status(&self) {
        let core = &self.core;
        let metrics = &self.metrics;
        self.status.send_if_modified(|status| {
            let next = NodeStatus {
                id: core.id(),
                role: core.role(),
                term: core.term(),
                leader: core.leader(),
                commit_index: core.commit_index(),
            };
            if *status == next {
                false
            } else {
                if next.role == Role::Leader && status.role != Role::Leader {
                    tracing::info!(term = %next.term, "became the leader");
                    metrics.elections_won.inc();
                }
                if next.leader != status.leader && next.leader.is_some() {
                    metrics.leader_changes.inc();
                }
                metrics.term.set(next.term.0 as i64);
                metrics.set_role(next.role);
                metrics.commit_index.set(next.commit_index.0 as i64);
                *status = next;
                true
            }
        });
    }
}

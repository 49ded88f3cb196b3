//! The in-process cluster behind `core_bench` and the allocation-budget
//! test: Raft cores alone, with the thinnest possible driver.
//!
//! One, three or five [`RaftCore`]s live in this process and run on one
//! thread. Nothing is slow on purpose, so what is measured is the core's own
//! cost:
//!
//! - The log is in memory: an [`Output::AppendLog`] is durable the moment it
//!   is seen, so [`Input::LogPersisted`] is fed right away.
//! - A message is "sent" by pushing it onto the receiver's inbox, and
//!   delivered by stepping it into the receiver. Every message arrives, in
//!   order.
//! - Commands are empty. Each client keeps exactly one proposal
//!   outstanding: it proposes, waits until the leader emits the
//!   [`Output::Apply`] holding its `(index, term)` (as reported by
//!   [`Output::ProposalAccepted`]), records the latency and proposes again.
//!
//! [`Benchmark::round`] works the way a real driver under load batches:
//! every client that is ready proposes into the leader, then the leader's
//! outputs are taken once (the core packs all those proposals into one
//! append per follower), then messages are delivered until no node has
//! anything left to say. Each node steps everything in its inbox before its
//! outputs are taken, so followers batch their work too. A round therefore
//! carries every ready proposal through replication, commit and apply.
//!
//! Time is the caller's: [`Benchmark::tick`] ticks every node once. The
//! benchmark ticks by the wall clock; a test ticks every so many rounds, so
//! that what it counts is the same on every run.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use raft::{
    Config, Entry, Input, LogIndex, Message, NodeId, Output, RaftCore, RequestId, RestoredState,
    Role, Term,
};

/// More ticks than any election needs; reaching it means something is wrong.
const ELECTION_TICKS_LIMIT: u32 = 1_000;

/// A cluster of cores with an elected leader, and its clients.
pub struct Benchmark {
    cluster: Cluster,
    workload: Workload,
    /// Proposals made so far.
    proposed: u64,
    /// Proposals to make in all.
    operations: u64,
    rounds: u64,
}

impl Benchmark {
    /// A cluster of `members` cores (election timeouts seeded by `seed`)
    /// with an elected leader whose first entry is applied, and `clients`
    /// clients that will make `operations` proposals in all.
    pub fn new(members: u64, clients: u32, operations: u64, seed: u64) -> Result<Benchmark> {
        ensure!(clients > 0, "at least one client is needed");
        ensure!(members > 0, "at least one member is needed");
        let mut cluster = Cluster::new(members, seed)?;
        let mut workload = Workload::new(clients)?;
        workload.leader = cluster.elect(&mut workload)?;
        Ok(Benchmark {
            cluster,
            workload,
            proposed: 0,
            operations,
            rounds: 0,
        })
    }

    /// One round: every ready client proposes, then the cluster runs until
    /// it is quiet.
    pub fn round(&mut self) -> Result<()> {
        let now = Instant::now();
        let leader = self.workload.leader;
        let leader_core = &mut self.cluster.cores[leader];
        for client in self.workload.ready.drain(..) {
            if self.proposed == self.operations {
                break;
            }
            self.workload.proposed_at[client as usize] = now;
            leader_core.step(Input::Propose {
                request_id: RequestId(u64::from(client)),
                command: Bytes::new(),
            });
            self.proposed += 1;
        }
        self.cluster.run_node(leader, &mut self.workload)?;
        self.cluster.deliver_until_quiet(&mut self.workload)?;
        self.rounds += 1;
        ensure!(
            self.cluster.cores[leader].role() == Role::Leader,
            "node {} lost leadership during the measurement",
            leader + 1
        );
        Ok(())
    }

    /// Ticks every node once, and runs the cluster until it is quiet.
    pub fn tick(&mut self) -> Result<()> {
        self.cluster.tick_all(&mut self.workload)
    }

    /// Whether every operation has completed.
    pub fn done(&self) -> bool {
        self.workload.completed >= self.operations
    }

    /// Operations completed so far.
    pub fn completed(&self) -> u64 {
        self.workload.completed
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The index the leader has committed: one entry per operation since
    /// the leader's first.
    pub fn leader_commit_index(&self) -> LogIndex {
        self.cluster.cores[self.workload.leader].commit_index()
    }

    /// Propose-to-apply latency of every completed operation, in
    /// nanoseconds.
    pub fn latencies_ns(&self) -> &Histogram<u64> {
        &self.workload.latencies_ns
    }
}

/// The nodes and the messages between them.
struct Cluster {
    /// Node `NodeId(n)` is at position `n - 1`.
    cores: Vec<RaftCore>,
    /// Messages waiting to be stepped into each node, in arrival order.
    inboxes: Vec<Vec<Message>>,
    /// An empty inbox swapped in while one is being delivered, so that
    /// delivery allocates nothing.
    spare_inbox: Vec<Message>,
    /// Reused buffer for draining a node's outputs.
    outputs: Vec<Output>,
}

impl Cluster {
    fn new(members: u64, seed: u64) -> Result<Cluster> {
        let ids: Vec<NodeId> = (1..=members).map(NodeId).collect();
        let cores = ids
            .iter()
            .map(|&id| {
                RaftCore::new(
                    Config::new(id),
                    RestoredState::new_cluster(ids.iter().copied()),
                    seed.wrapping_add(id.0),
                )
                .with_context(|| format!("creating node {id}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cluster {
            cores,
            inboxes: vec![Vec::new(); members as usize],
            spare_inbox: Vec::new(),
            outputs: Vec::new(),
        })
    }

    /// Ticks every node, as fast as possible, until one is leader and has
    /// applied its no-op entry. Returns the leader's position.
    fn elect(&mut self, workload: &mut Workload) -> Result<usize> {
        for _ in 0..ELECTION_TICKS_LIMIT {
            self.tick_all(workload)?;
            let leader = self.cores.iter().position(|core| {
                let status = core.status();
                status.role == Role::Leader
                    && status.applied_index == status.last_index
                    && status.last_term == status.term
            });
            if let Some(leader) = leader {
                return Ok(leader);
            }
        }
        bail!("no leader after {ELECTION_TICKS_LIMIT} ticks")
    }

    fn tick_all(&mut self, workload: &mut Workload) -> Result<()> {
        for node in 0..self.cores.len() {
            self.cores[node].step(Input::Tick);
            self.run_node(node, workload)?;
        }
        self.deliver_until_quiet(workload)
    }

    /// Delivers messages, and whatever they cause, until every inbox is
    /// empty.
    fn deliver_until_quiet(&mut self, workload: &mut Workload) -> Result<()> {
        loop {
            let mut delivered = false;
            for node in 0..self.cores.len() {
                if self.inboxes[node].is_empty() {
                    continue;
                }
                delivered = true;
                let spare = std::mem::take(&mut self.spare_inbox);
                let mut inbox = std::mem::replace(&mut self.inboxes[node], spare);
                for message in inbox.drain(..) {
                    self.cores[node].step(Input::Message(message));
                }
                self.spare_inbox = inbox;
                self.run_node(node, workload)?;
            }
            if !delivered {
                return Ok(());
            }
        }
    }

    /// Takes `node`'s outputs and carries them out in order, until carrying
    /// them out produces no more.
    fn run_node(&mut self, node: usize, workload: &mut Workload) -> Result<()> {
        let mut outputs = std::mem::take(&mut self.outputs);
        loop {
            let core = &mut self.cores[node];
            core.drain_outputs_into(&mut outputs);
            if outputs.is_empty() {
                break;
            }
            for output in outputs.drain(..) {
                match output {
                    // In memory, the hard state is durable at once.
                    Output::SaveHardState(_) => {}
                    Output::AppendLog { entries } => {
                        let last = entries.last().context("AppendLog without entries")?;
                        core.step(Input::LogPersisted {
                            index: last.index,
                            term: last.term,
                        });
                    }
                    Output::Send(message) => {
                        let to = message.to.0.checked_sub(1).context("message to node 0")?;
                        self.inboxes[to as usize].push(message);
                    }
                    Output::Apply { entries } => {
                        let last = entries.last().context("Apply without entries")?.index;
                        if node == workload.leader {
                            workload.complete(&entries)?;
                        }
                        core.step(Input::Applied { index: last });
                    }
                    Output::ProposalAccepted {
                        request_id,
                        index,
                        term,
                    } => workload
                        .in_flight
                        .push_back((index, term, request_id.0 as u32)),
                    Output::ReadReady { request_id, .. } => {
                        bail!("unexpected ReadReady for {request_id}: the benchmark never reads")
                    }
                    Output::CompactLog { .. } | Output::RestoreSnapshot { .. } => {
                        bail!("unexpected snapshot output: the benchmark never snapshots")
                    }
                    Output::MessageRefused { from, refusal } => {
                        bail!("node {} refused a message from {from}: {refusal}", node + 1)
                    }
                    Output::RequestFailed { request_id, error } => {
                        bail!(
                            "request {request_id} failed at node {}: {error:?}",
                            node + 1
                        )
                    }
                }
            }
        }
        self.outputs = outputs;
        Ok(())
    }
}

/// The clients and what they measured.
struct Workload {
    /// Position of the leader; `usize::MAX` until one is elected.
    leader: usize,
    /// Clients with no proposal outstanding.
    ready: Vec<u32>,
    /// When each client made its outstanding proposal.
    proposed_at: Vec<Instant>,
    /// Accepted proposals not yet applied, by increasing index:
    /// (index, term, client).
    in_flight: VecDeque<(LogIndex, Term, u32)>,
    /// Propose-to-apply latency of every completed operation.
    latencies_ns: Histogram<u64>,
    /// Operations completed so far.
    completed: u64,
}

impl Workload {
    fn new(clients: u32) -> Result<Workload> {
        let clients_len = clients as usize;
        Ok(Workload {
            leader: usize::MAX,
            // Reversed so that clients propose in id order in the first round.
            ready: (0..clients).rev().collect(),
            proposed_at: vec![Instant::now(); clients_len],
            in_flight: VecDeque::with_capacity(clients_len),
            // From 1 ns to a minute, three significant digits.
            latencies_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .context("creating the latency histogram")?,
            completed: 0,
        })
    }

    /// The leader applies `entries`: complete every proposal among them.
    fn complete(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let first_index = first.index.0;
        let last_index = first_index + entries.len() as u64 - 1;
        let now = Instant::now();
        // Proposals of one round share their start, so their latencies are
        // recorded together: (start, how many).
        let mut same_start: Option<(Instant, u64)> = None;
        while let Some(&(index, term, client)) = self.in_flight.front() {
            if index.0 > last_index {
                break;
            }
            self.in_flight.pop_front();
            let position = index
                .0
                .checked_sub(first_index)
                .with_context(|| format!("proposal at {index} was skipped by Apply"))?;
            let applied_term = entries[position as usize].term;
            ensure!(
                applied_term == term,
                "proposal of client {client} at {index} was lost: {applied_term} applied instead of {term}"
            );
            let start = self.proposed_at[client as usize];
            same_start = match same_start {
                Some((previous, count)) if previous == start => Some((start, count + 1)),
                other => {
                    self.record(now, other);
                    Some((start, 1))
                }
            };
            self.ready.push(client);
            self.completed += 1;
        }
        self.record(now, same_start);
        Ok(())
    }

    fn record(&mut self, now: Instant, same_start: Option<(Instant, u64)>) {
        if let Some((start, count)) = same_start {
            let latency_ns =
                u64::try_from(now.duration_since(start).as_nanos()).unwrap_or(u64::MAX);
            self.latencies_ns
                .saturating_record_n(latency_ns.max(1), count);
        }
    }
}

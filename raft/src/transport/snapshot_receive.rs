//! Receiving a snapshot a leader streams over the `InstallSnapshot` RPC,
//! without trusting the stream.
//!
//! The first chunk is checked before the transfer takes this node's one
//! receive slot: the header (cluster, sender, addressee, term), the
//! metadata (the core's stateless rules) and the announced size (at most
//! [`crate::SnapshotPolicy::max_receive_bytes`]). Every later chunk must
//! carry the same header; no byte beyond the announced size is written; a
//! transfer that sends nothing for [`ReceiveLimits::idle_timeout`] ends; a
//! transfer of the same or a newer term takes the slot over from the one
//! holding it. The received file is a [`SnapshotCandidate`], kept in
//! [`SnapshotCandidates`] until the core decides: the event loop installs
//! it when the core restores it and drops it when the core refuses it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_proto::raft as wire;
use tokio::sync::watch;
use tonic::{Status, Streaming};

use crate::core::message::{Message, MessageBody};
use crate::core::snapshot::SnapshotMetadata;
use crate::core::validation::validate;
use crate::storage::snapshot::{SnapshotCandidate, SnapshotChunk, SnapshotStore};
use crate::transport::convert::{check_header, snapshot_metadata_from_wire};
use crate::transport::convert::{Admission, WireError};
use crate::transport::inbound::InboundSender;
use crate::types::{LogIndex, Term};

/// Why a snapshot transfer was not taken.
#[derive(Debug)]
pub enum SnapshotRefused {
    /// Its header does not belong here (counted and logged as a refused
    /// peer stream is).
    NotAdmitted(WireError),
    /// It broke off, broke a rule or could not be stored.
    Failed(Status),
}

impl From<WireError> for SnapshotRefused {
    fn from(error: WireError) -> SnapshotRefused {
        SnapshotRefused::NotAdmitted(error)
    }
}

impl From<Status> for SnapshotRefused {
    fn from(status: Status) -> SnapshotRefused {
        SnapshotRefused::Failed(status)
    }
}

/// How much a peer may send and how long it may stall.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReceiveLimits {
    /// The largest snapshot a transfer may announce.
    pub(crate) max_bytes: u64,
    /// A transfer that sends no chunk for this long ends.
    pub(crate) idle_timeout: Duration,
}

/// Received snapshots the core has not decided on yet, by (index, term).
/// A handful at most: transfers complete one at a time and the event loop
/// decides on each as it steps its message.
#[derive(Debug, Default)]
pub(crate) struct SnapshotCandidates {
    waiting: Mutex<BTreeMap<(LogIndex, Term), SnapshotCandidate>>,
}

/// More undecided candidates than this and a new one is refused.
const MAX_CANDIDATES: usize = 4;

impl SnapshotCandidates {
    /// Keeps `candidate` until the core decides; false (and the candidate
    /// dropped) when too many wait already.
    fn offer(&self, candidate: SnapshotCandidate) -> bool {
        let mut waiting = self.lock();
        let key = (candidate.metadata().index, candidate.metadata().term);
        if waiting.len() >= MAX_CANDIDATES && !waiting.contains_key(&key) {
            return false;
        }
        waiting.insert(key, candidate);
        true
    }

    /// Takes the candidate `metadata` describes, if one waits.
    pub(crate) fn take(&self, metadata: &SnapshotMetadata) -> Option<SnapshotCandidate> {
        let candidate = self.lock().remove(&(metadata.index, metadata.term))?;
        (candidate.metadata() == metadata).then_some(candidate)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(LogIndex, Term), SnapshotCandidate>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The one receive slot: which transfer holds it, and of what term.
#[derive(Debug)]
pub(crate) struct ReceiveSlot {
    lock: tokio::sync::Mutex<()>,
    holder: watch::Sender<Holder>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Holder {
    generation: u64,
    term: Option<Term>,
}

impl Default for ReceiveSlot {
    fn default() -> ReceiveSlot {
        ReceiveSlot {
            lock: tokio::sync::Mutex::new(()),
            holder: watch::channel(Holder::default()).0,
        }
    }
}

/// One node's receiving side: where candidates go and what is allowed.
#[derive(Debug)]
pub struct SnapshotReceiving {
    pub(crate) store: SnapshotStore,
    pub(crate) limits: ReceiveLimits,
    pub(crate) slot: ReceiveSlot,
    pub(crate) candidates: Arc<SnapshotCandidates>,
}

/// What the first chunk established.
struct Announced {
    header: wire::Header,
    message: Message,
    metadata: SnapshotMetadata,
    size_bytes: u64,
}

impl SnapshotReceiving {
    /// Receives one transfer: checks it, stores it as a candidate, and hands
    /// the core its `InstallSnapshot` message through `inbound`.
    pub(crate) async fn receive(
        &self,
        mut chunks: Streaming<wire::InstallSnapshotChunk>,
        admission: &dyn Admission,
        inbound: &InboundSender,
    ) -> Result<LogIndex, SnapshotRefused> {
        let first = self
            .next_chunk(&mut chunks)
            .await?
            .ok_or_else(|| Status::cancelled("the snapshot transfer sent no chunk"))?;
        let announced = self.check_first(&first, admission)?;
        let mut superseded = self.claim_slot(announced.message.term)?;
        let mine = superseded.borrow().generation;
        let _slot = self.slot.lock.lock().await;
        let result = tokio::select! {
            biased;
            _ = superseded.wait_for(|holder| holder.generation != mine) => Err(Status::aborted(
                "a newer snapshot transfer took this one's place").into()),
            result = self.write(first, &mut chunks, &announced) => result,
        };
        self.slot.holder.send_if_modified(|holder| {
            let release = holder.generation == mine;
            if release {
                holder.term = None;
            }
            release
        });
        let candidate = result?;
        if !self.candidates.offer(candidate) {
            return Err(Status::resource_exhausted(
                "too many received snapshots wait for this node's decision",
            )
            .into());
        }
        let index = announced.metadata.index;
        inbound
            .send(announced.message)
            .await
            .map_err(|_| Status::unavailable("this node is shutting down"))?;
        Ok(index)
    }

    /// The next chunk, or the end of the stream; an error once the sender
    /// has been idle too long.
    async fn next_chunk(
        &self,
        chunks: &mut Streaming<wire::InstallSnapshotChunk>,
    ) -> Result<Option<wire::InstallSnapshotChunk>, Status> {
        let idle = self.limits.idle_timeout;
        match tokio::time::timeout(idle, chunks.message()).await {
            Ok(chunk) => chunk,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the snapshot transfer sent nothing for {idle:?}; it is ended"
            ))),
        }
    }

    /// Checks everything the first chunk says, before any slot or disk.
    fn check_first(
        &self,
        chunk: &wire::InstallSnapshotChunk,
        admission: &dyn Admission,
    ) -> Result<Announced, SnapshotRefused> {
        let header = chunk.header.ok_or(WireError::Missing("header"))?;
        let (from, to, term) = check_header(Some(header), admission)?;
        let wire_metadata = chunk
            .metadata
            .clone()
            .ok_or(WireError::Missing("snapshot metadata"))?;
        let size_bytes = wire_metadata.size;
        let metadata = snapshot_metadata_from_wire(wire_metadata)?;
        if chunk.offset != 0 {
            return Err(Status::invalid_argument(format!(
                "a snapshot transfer must start at offset 0, not {}",
                chunk.offset
            ))
            .into());
        }
        let message = Message {
            from,
            to,
            term,
            body: MessageBody::InstallSnapshot(metadata.clone()),
        };
        if let Err(refusal) = validate(&message) {
            return Err(Status::invalid_argument(format!(
                "the snapshot transfer from {from} breaks the protocol: {refusal}"
            ))
            .into());
        }
        if size_bytes == 0 || size_bytes > self.limits.max_bytes {
            return Err(Status::resource_exhausted(format!(
                "the snapshot transfer from {from} announces {size_bytes} bytes; this node \
                 takes snapshots of 1 to {} bytes (--max-snapshot-bytes)",
                self.limits.max_bytes
            ))
            .into());
        }
        Ok(Announced {
            header,
            message,
            metadata,
            size_bytes,
        })
    }

    /// Marks the slot as wanted by a transfer of `term`: refused while one
    /// of a newer term holds it; otherwise the holder is told to give way.
    fn claim_slot(&self, term: Term) -> Result<watch::Receiver<Holder>, SnapshotRefused> {
        let mut refused = None;
        self.slot
            .holder
            .send_if_modified(|holder| match holder.term {
                Some(held) if held > term => {
                    refused = Some(held);
                    false
                }
                _ => {
                    holder.generation += 1;
                    holder.term = Some(term);
                    true
                }
            });
        if let Some(held) = refused {
            return Err(Status::failed_precondition(format!(
                "a snapshot transfer of term {held} is in progress; one of term {term} waits"
            ))
            .into());
        }
        Ok(self.slot.holder.subscribe())
    }

    /// Writes `first` and every later chunk; the candidate they make.
    async fn write(
        &self,
        first: wire::InstallSnapshotChunk,
        chunks: &mut Streaming<wire::InstallSnapshotChunk>,
        announced: &Announced,
    ) -> Result<SnapshotCandidate, SnapshotRefused> {
        let receiver = self.store.receiver().expecting(announced.size_bytes);
        let receiver = Arc::new(Mutex::new(receiver));
        let mut next = Some(first);
        loop {
            let Some(chunk) = next.take() else {
                return Err(
                    Status::cancelled("the snapshot transfer ended before its last chunk").into(),
                );
            };
            if chunk.header != Some(announced.header)
                || chunk.metadata.as_ref().is_some_and(|_| chunk.offset != 0)
            {
                return Err(Status::invalid_argument(
                    "a snapshot chunk's header differs from the transfer's first",
                )
                .into());
            }
            let piece = SnapshotChunk {
                offset: chunk.offset,
                data: chunk.data,
                done: chunk.done,
            };
            let receiver = receiver.clone();
            let received = tokio::task::spawn_blocking(move || {
                receiver
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .receive(&piece)
            })
            .await
            .map_err(|error| Status::internal(error.to_string()))?
            .map_err(|error| Status::data_loss(error.to_string()))?;
            if let Some(candidate) = received {
                return self.check_candidate(candidate, &announced.metadata);
            }
            next = self.next_chunk(chunks).await?;
        }
    }

    fn check_candidate(
        &self,
        candidate: SnapshotCandidate,
        announced: &SnapshotMetadata,
    ) -> Result<SnapshotCandidate, SnapshotRefused> {
        let found = candidate.metadata();
        if found != announced {
            return Err(Status::invalid_argument(format!(
                "the snapshot file holds index {} of term {}, but the transfer announced \
                 index {} of term {}",
                found.index, found.term, announced.index, announced.term
            ))
            .into());
        }
        Ok(candidate)
    }
}

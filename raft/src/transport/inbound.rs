//! The queue of peer messages between the transport and the event loop,
//! bounded by count and by bytes: a peer that floods a node with large
//! appends waits (and, through HTTP/2 flow control, slows down) instead of
//! growing the node's memory by the count limit times the message limit.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use crate::core::message::{Message, MessageBody};
use crate::types::EntryPayload;

/// What a message counts for beyond its entries' payloads: its fields and
/// the queue's own bookkeeping.
const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// The bytes `message` holds, as the queue counts them: its entries'
/// payloads plus a fixed overhead per message and per entry.
pub fn message_weight(message: &Message) -> usize {
    let MessageBody::AppendEntries(append) = &message.body else {
        return MESSAGE_OVERHEAD_BYTES;
    };
    append
        .entries
        .iter()
        .fold(MESSAGE_OVERHEAD_BYTES, |total, entry| {
            let payload = match &entry.payload {
                EntryPayload::Command(command) => command.len(),
                EntryPayload::Configuration(membership) => membership
                    .addresses
                    .values()
                    .map(String::len)
                    .sum::<usize>()
                    .saturating_add(
                        16 * (membership.voters.len()
                            + membership.learners.len()
                            + membership.removed.len()),
                    ),
                EntryPayload::Noop => 0,
            };
            total
                .saturating_add(payload)
                .saturating_add(MESSAGE_OVERHEAD_BYTES)
        })
}

/// The sending end, for the transport's tasks (cheap to clone).
#[derive(Clone, Debug)]
pub struct InboundSender {
    messages: mpsc::Sender<Message>,
    bytes: Arc<Semaphore>,
    capacity_bytes: usize,
}

/// The receiving end, for the event loop.
#[derive(Debug)]
pub struct InboundReceiver {
    messages: mpsc::Receiver<Message>,
    bytes: Arc<Semaphore>,
    capacity_bytes: usize,
}

/// The event loop has stopped: the message was not queued.
#[derive(Debug, thiserror::Error)]
#[error("the node is shutting down")]
pub struct InboundClosed;

/// A queue of at most `messages` messages weighing at most `bytes` bytes
/// together (one message heavier than that still passes, alone).
pub fn inbound_queue(messages: usize, bytes: usize) -> (InboundSender, InboundReceiver) {
    let capacity_bytes = bytes.clamp(1, u32::MAX as usize);
    let semaphore = Arc::new(Semaphore::new(capacity_bytes));
    let (sender, receiver) = mpsc::channel(messages);
    (
        InboundSender {
            messages: sender,
            bytes: semaphore.clone(),
            capacity_bytes,
        },
        InboundReceiver {
            messages: receiver,
            bytes: semaphore,
            capacity_bytes,
        },
    )
}

/// The permits `message` takes: its weight, at most the whole queue.
fn permits(message: &Message, capacity_bytes: usize) -> usize {
    message_weight(message).min(capacity_bytes)
}

impl InboundSender {
    /// Queues `message`, waiting while the queue is full by count or by
    /// bytes.
    pub async fn send(&self, message: Message) -> Result<(), InboundClosed> {
        let permits = permits(&message, self.capacity_bytes) as u32;
        let taken = self
            .bytes
            .acquire_many(permits)
            .await
            .map_err(|_| InboundClosed)?;
        taken.forget();
        if self.messages.send(message).await.is_err() {
            self.bytes.add_permits(permits as usize);
            return Err(InboundClosed);
        }
        Ok(())
    }
}

impl InboundReceiver {
    /// The next message; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        let message = self.messages.recv().await?;
        self.release(&message);
        Some(message)
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<Message> {
        let message = self.messages.try_recv().ok()?;
        self.release(&message);
        Some(message)
    }

    fn release(&self, message: &Message) {
        self.bytes
            .add_permits(permits(message, self.capacity_bytes));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::core::message::AppendEntries;
    use crate::entries::Entries;
    use crate::types::{Entry, LogIndex, NodeId, Term};

    fn append_of(payload_bytes: usize) -> Message {
        let entry = Entry {
            index: LogIndex(1),
            term: Term(1),
            payload: EntryPayload::Command(Bytes::from(vec![0; payload_bytes])),
        };
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                entries: Entries::from(vec![entry]),
                leader_commit: LogIndex(0),
                round: 1,
            }),
        }
    }

    #[test]
    fn a_message_weighs_its_payloads_plus_overheads() {
        assert_eq!(message_weight(&append_of(1000)), 1000 + 2 * 64);
        let vote = Message {
            body: MessageBody::TimeoutNow,
            ..append_of(0)
        };
        assert_eq!(message_weight(&vote), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_while_the_queued_bytes_are_at_the_limit() {
        let (sender, mut receiver) = inbound_queue(100, 3000);
        sender.send(append_of(1000)).await.expect("fits");
        sender.send(append_of(1000)).await.expect("fits");
        // A third would pass the byte limit though the count allows it.
        let third = tokio::time::timeout(Duration::from_millis(50), sender.send(append_of(1000)));
        assert!(third.await.is_err(), "the third waits for room");
        assert!(receiver.try_recv().is_some());
        sender.send(append_of(1000)).await.expect("room again");
        // One heavier than the whole queue still passes, alone.
        let (sender, mut receiver) = inbound_queue(100, 500);
        sender.send(append_of(10_000)).await.expect("alone");
        assert!(receiver.recv().await.is_some());
        sender.send(append_of(10_000)).await.expect("alone again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_while_the_queued_count_is_at_the_limit() {
        let (sender, mut receiver) = inbound_queue(1, 1 << 20);
        sender.send(append_of(1)).await.expect("fits");
        let second = tokio::time::timeout(Duration::from_millis(50), sender.send(append_of(1)));
        assert!(second.await.is_err(), "the second waits");
        assert!(receiver.recv().await.is_some());
        sender.send(append_of(1)).await.expect("room again");
    }
}

//! Forwarding clients' writes and reads to the leader over one stream per
//! leader.
//!
//! A member that is not the leader used to forward each request as a gRPC
//! call of its own; under load that doubled the per-request work of HTTP/2
//! (a stream, headers, a task) on both members. Now the member keeps one
//! long-lived `KvForward.Forward` stream to the leader ([`Forwarder`]),
//! sends the requests queued at that moment as one batch, and matches the
//! leader's batched replies to the waiting clients by id. The leader
//! ([`ForwardService`]) proposes each write as if a client had sent it to
//! it and replies as each one is applied; for a linearizable read it
//! confirms its leadership (ReadIndex) and replies with the read index,
//! which the member waits to have applied before it reads its own store.
//! Replies come in any order.
//!
//! A write whose stream fails before its reply arrives gets `Unavailable`
//! saying that it may or may not have taken effect (etcd clients retry),
//! as when a leader is lost under a write sent to it directly.
//!
//! - [`member`]: the member's side, [`Forwarder`] (used by the member's
//!   [`crate::server::proposer::Proposer`]).
//! - [`leader`]: the leader's side, [`ForwardService`], which proposes
//!   through the leader's own proposer.
//!
//! Both sides share the bounds below.

pub mod leader;
pub mod member;

pub use self::leader::ForwardService;
pub use self::member::Forwarder;

/// gRPC metadata naming the forwarding member's cluster id (decimal).
pub const CLUSTER_ID_METADATA: &str = "x-rustyraft-cluster-id";

/// A batch stops growing at this many writes...
pub(super) const BATCH_WRITES: usize = 1024;
/// ... or once its commands add up to this many bytes (a single write of
/// any allowed size still goes alone).
pub(super) const BATCH_BYTES: usize = 4 << 20;
/// Writes queued for one leader before callers wait.
pub(super) const QUEUE_WRITES: usize = 4096;
/// A leader stops reading a forwarding stream while this many of its
/// requests are in flight ...
pub(super) const MAX_IN_FLIGHT_REQUESTS: usize = 2 * QUEUE_WRITES;
/// ... or while their requests add up to this many bytes, so that a member
/// that sends faster than the leader commits is slowed by HTTP/2 flow
/// control instead of growing the leader's memory.
pub(super) const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

/// Whether a leader takes another batch from a stream with `requests`
/// requests of `bytes` bytes in flight.
pub(super) fn takes_another_batch(requests: usize, bytes: usize) -> bool {
    requests < MAX_IN_FLIGHT_REQUESTS && bytes < MAX_IN_FLIGHT_BYTES
}

/// The largest batch a leader accepts: the byte budget plus one write of
/// the largest allowed size, plus framing.
pub fn max_batch_bytes(max_request_bytes: usize) -> usize {
    BATCH_BYTES + max_request_bytes + (1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_stops_reading_a_stream_at_either_bound() {
        assert!(takes_another_batch(0, 0));
        assert!(takes_another_batch(
            MAX_IN_FLIGHT_REQUESTS - 1,
            MAX_IN_FLIGHT_BYTES - 1
        ));
        assert!(!takes_another_batch(MAX_IN_FLIGHT_REQUESTS, 0));
        assert!(!takes_another_batch(0, MAX_IN_FLIGHT_BYTES));
    }
}

//! A member whose peers have a port of their own publishes where its
//! clients reach it, through the log, as etcd members do when they start
//! (see [`crate::kv::members`]); `MemberList` then gives every member's
//! client URLs from any member. A member back on one port publishes its one
//! address, so that no URL it published before outlives the move.

use std::sync::Arc;
use std::time::Duration;

use raft::node::Node;

use crate::kv::members::MemberAttributes;
use crate::kv::Command;
use crate::server::proposer::Proposer;
use crate::server::state_machine::KvStateMachine;

/// How long to wait before trying again after a failed publish (no leader
/// yet, an election under way).
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Publishes this member's client URLs unless the store already holds
/// them, trying until a publish is applied. A member with one port
/// publishes only to correct URLs it published earlier, with a port for
/// peers: otherwise `MemberList` lists it at its one address already.
pub async fn publish_client_urls(proposer: Arc<Proposer>) {
    let context = proposer.context().clone();
    let node = context.node.clone();
    let id = node.options().id;
    // Read what the log says first: at start the store may not have
    // applied an earlier publish yet.
    retrying("catch up before publishing client URLs", || {
        proposer.read_barrier_own()
    })
    .await;
    let client_urls = match context.own_client_urls() {
        Some(urls) => urls,
        None => {
            let published_before = node.read_local(|state| state.store.client_urls(id).is_some());
            let address = node.with_membership(|view| view.addresses.get(&id).cloned());
            match address {
                Some(address) if published_before => {
                    vec![context.client_url(&address)]
                }
                _ => return,
            }
        }
    };
    let attributes = MemberAttributes {
        member_id: id.get(),
        client_urls,
    };
    if published(&node, &attributes) {
        return;
    }
    retrying("publish client URLs", || {
        proposer.write_own(Command::Publish(attributes.clone()))
    })
    .await;
    tracing::info!(urls = ?attributes.client_urls, "published client URLs");
}

/// Runs `attempt` until it succeeds, pausing [`RETRY_AFTER`] between tries.
async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(status) => {
                failures += 1;
                // Expected while the cluster elects its first leader: said
                // once in a while, not on every try.
                if failures % 25 == 1 {
                    tracing::info!(%status, failures, "cannot {what} yet; retrying");
                }
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// Whether this member's store already lists exactly `attributes`.
fn published(node: &Node<KvStateMachine>, attributes: &MemberAttributes) -> bool {
    let member = raft::NodeId(attributes.member_id);
    node.read_local(|state| {
        state.store.client_urls(member) == Some(attributes.client_urls.as_slice())
    })
}

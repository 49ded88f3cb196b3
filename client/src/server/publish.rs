//! A member whose peers have a port of their own publishes where its
//! clients reach it, through the log, as etcd members do when they start
//! (see [`crate::kv::members`]); `MemberList` then gives every member's
//! client URLs from any member.

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

/// Publishes this member's own client URLs unless the store already
/// holds them, trying until a publish is applied; returns at once for a
/// member without a peer port of its own.
pub async fn publish_client_urls(proposer: Arc<Proposer>) {
    let Some(urls) = proposer.context().own_client_urls() else {
        return;
    };
    let node = proposer.context().node.clone();
    let id = node.options().id;
    let attributes = MemberAttributes {
        member_id: id.get(),
        client_urls: urls,
    };
    let mut failures = 0u32;
    while !published(&node, &attributes) {
        match proposer
            .write_own(Command::Publish(attributes.clone()))
            .await
        {
            Ok(_) => {
                tracing::info!(urls = ?attributes.client_urls, "published client URLs");
                return;
            }
            Err(status) => {
                failures += 1;
                // Expected while the cluster elects its first leader: said
                // once in a while, not on every try.
                if failures % 25 == 1 {
                    tracing::info!(%status, failures, "cannot publish client URLs yet; retrying");
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

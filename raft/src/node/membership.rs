//! The cluster's configuration as a running node sees it: who may send to
//! this node, where its peers are, and configuration changes on request.
//!
//! The configuration (members and their addresses) travels through the log
//! (`core/membership_change.rs`). After each batch of work the event loop
//! publishes the latest configuration and the one in effect at the commit
//! index ([`MembershipView`]); from it, the transport learns new members'
//! addresses and stops sending to removed ones, and the peer service
//! refuses messages from nodes in neither configuration, such as a removed
//! node restarted with its old data directory.

use std::collections::BTreeMap;

use tokio::sync::{oneshot, watch};

use super::event_loop::Command;
use super::{Node, RequestFailure};
use crate::core::input::Input;
use crate::core::membership_change::MembershipChange;
use crate::core::quorum::Membership;
use crate::state_machine::StateMachine;
use crate::transport::{Admission, Peers};
use crate::types::ClusterId;
use crate::types::{LogIndex, NodeId};

/// The configurations a node knows of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipView {
    /// The latest configuration in the node's log, in effect whether or not
    /// it is committed.
    pub latest: Membership,
    /// The configuration in effect at the node's commit index.
    pub committed: Membership,
    /// Where each member is reached: the configuration's addresses, and
    /// for members without one, the address the node was started with.
    pub addresses: BTreeMap<NodeId, String>,
}

impl MembershipView {
    /// The view of `latest` and `committed`, with addresses from them or,
    /// failing that, from `seeds`.
    pub(crate) fn new(
        latest: &Membership,
        committed: &Membership,
        seeds: &BTreeMap<NodeId, String>,
    ) -> MembershipView {
        let addresses = latest
            .members()
            .chain(committed.members())
            .filter_map(|member| {
                let address = latest
                    .addresses
                    .get(&member)
                    .or_else(|| committed.addresses.get(&member))
                    .or_else(|| seeds.get(&member))?;
                Some((member, address.clone()))
            })
            .collect();
        MembershipView {
            latest: latest.clone(),
            committed: committed.clone(),
            addresses,
        }
    }

    /// Whether `node` is a member in either configuration.
    pub fn knows(&self, node: NodeId) -> bool {
        self.latest.contains(node) || self.committed.contains(node)
    }

    /// Points `peers` at every member's address: new members get a sending
    /// task, moved ones a new task; members that left both configurations
    /// are dropped unless `seeds` (the addresses the node was started with)
    /// name them, so a node that knows no configuration yet can still
    /// answer the members it was told about.
    pub(crate) fn update_peers(
        &self,
        this: NodeId,
        peers: &mut Peers,
        seeds: &BTreeMap<NodeId, String>,
    ) {
        for (member, address) in seeds.iter().chain(&self.addresses) {
            let address = self.addresses.get(member).unwrap_or(address);
            if *member != this {
                peers.set_address(*member, address);
            }
        }
        for (member, _) in peers.addresses() {
            if !self.knows(member) && !seeds.contains_key(&member) {
                peers.remove(member);
            }
        }
        for member in self.latest.members().chain(self.committed.members()) {
            if member != this && !self.addresses.contains_key(&member) {
                tracing::warn!(%member, "no address is known for a member; it cannot be reached");
            }
        }
    }
}

/// Admits messages from members of the latest or the committed
/// configuration. A node that knows no configuration yet (it is joining)
/// admits any node of its cluster: the leader that adds it may be one it
/// was never told about.
pub(crate) struct MemberAdmission {
    pub(crate) node: NodeId,
    pub(crate) cluster: ClusterId,
    pub(crate) view: watch::Receiver<MembershipView>,
}

impl Admission for MemberAdmission {
    fn node(&self) -> NodeId {
        self.node
    }
    fn cluster(&self) -> ClusterId {
        self.cluster
    }
    fn admits(&self, node: NodeId) -> bool {
        if node == self.node || node == NodeId(0) {
            return false;
        }
        let view = self.view.borrow();
        view.knows(node) || (view.latest.is_empty() && view.committed.is_empty())
    }
}

impl<M: StateMachine> Node<M> {
    /// Changes the cluster's configuration (one server at a time; see
    /// [`MembershipChange`]) and returns the index of the configuration
    /// entry once it is committed and applied. Fails with
    /// [`RequestFailure::NotLeader`] on a node that is not the leader, and
    /// with [`RequestFailure::MembershipChangeRefused`] (nothing changed)
    /// when the change is invalid or must wait.
    pub async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<LogIndex, RequestFailure> {
        let (reply, answer) = oneshot::channel();
        let request_id = self.shared.requests.register_change(reply);
        self.submit(
            request_id,
            Command::Step(Input::ChangeMembership { request_id, change }),
        )
        .await?;
        answer.await.unwrap_or(Err(RequestFailure::ShuttingDown))
    }

    /// The configurations this node knows of now.
    pub fn membership(&self) -> MembershipView {
        self.shared.membership.borrow().clone()
    }

    /// Runs `read` on the configurations this node knows of now, without
    /// copying them (for request paths; keep `read` short, it holds a lock
    /// the event loop needs to publish a change).
    pub fn with_membership<T>(&self, read: impl FnOnce(&MembershipView) -> T) -> T {
        read(&self.shared.membership.borrow())
    }

    /// A receiver that sees every change of [`Node::membership`].
    pub fn watch_membership(&self) -> watch::Receiver<MembershipView> {
        self.shared.membership.clone()
    }
}

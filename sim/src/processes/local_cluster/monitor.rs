//! Watching a local cluster: every node's `Maintenance.Status` is polled
//! every [`POLL_INTERVAL`] into one shared [`ClusterView`].

use super::reach;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use raft::NodeId;
use raft_proto::etcd::etcdserverpb::maintenance_client::MaintenanceClient;
use raft_proto::etcd::etcdserverpb::StatusRequest;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

/// How often each node is asked for its status; it bounds how precisely an
/// election is timed.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long one status call may take before it counts as failed.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// A sample older than this does not tell who leads now.
const FRESH_FOR: Duration = Duration::from_millis(500);

/// One successful status call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusSample {
    /// When the answer arrived.
    pub at: Instant,
    /// The leader the node knows of (0: none).
    pub leader: u64,
    /// The node's term.
    pub term: u64,
    /// The node's commit index.
    pub commit_index: u64,
    /// The node's applied index.
    pub applied_index: u64,
}

/// What a node is, as far as the launcher can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It says it leads.
    Leader,
    /// It knows another leader.
    Follower,
    /// It knows no leader (an election is going on).
    NoLeader,
    /// Its process runs but its last status call failed.
    Unreachable,
    /// Its process is not running (killed, not yet restarted).
    Down,
    /// It has not answered yet.
    Starting,
}

impl Role {
    /// The word shown for it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::NoLeader => "no leader",
            Role::Unreachable => "unreachable",
            Role::Down => "down",
            Role::Starting => "starting",
        }
    }
}

/// What the launcher knows of one node.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// Whether its process runs.
    pub running: bool,
    /// Its last successful status call since its process (re)started.
    pub sample: Option<StatusSample>,
    /// When its last status call failed.
    pub last_failure: Option<Instant>,
    /// When its last status call succeeded, in any of its lives.
    pub last_contact_at: Option<Instant>,
}

impl NodeView {
    /// Its role now.
    pub fn role(&self, id: NodeId) -> Role {
        if !self.running {
            return Role::Down;
        }
        let Some(sample) = self.sample else {
            return Role::Starting;
        };
        if self.last_failure.is_some_and(|failure| failure > sample.at) {
            return Role::Unreachable;
        }
        match sample.leader {
            0 => Role::NoLeader,
            leader if leader == id.get() => Role::Leader,
            _ => Role::Follower,
        }
    }

    /// Time since its last successful status call.
    pub fn last_contact(&self, now: Instant) -> Option<Duration> {
        self.last_contact_at
            .map(|at| now.saturating_duration_since(at))
    }
}

/// What the launcher knows of the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// Each node.
    pub nodes: BTreeMap<NodeId, NodeView>,
    /// Every node seen saying it leads, by term.
    pub leaders_by_term: BTreeMap<u64, NodeId>,
    /// Two nodes that said they led the same term: Raft's Election Safety
    /// property broken (term, one, the other).
    pub two_leaders: Option<(u64, NodeId, NodeId)>,
}

impl ClusterView {
    /// The running node that most recently said it leads, in the highest
    /// term, from a fresh answer.
    pub fn leader(&self, now: Instant) -> Option<(NodeId, StatusSample)> {
        self.leaders_after(now.checked_sub(FRESH_FOR).unwrap_or(now), None)
            .max_by_key(|(_, sample)| sample.term)
    }

    /// A node other than `excluded` that said it leads in an answer that
    /// arrived after `after`: the one that answered first.
    pub fn leader_since(&self, after: Instant, excluded: NodeId) -> Option<(NodeId, StatusSample)> {
        self.leaders_after(after, Some(excluded))
            .min_by_key(|(_, sample)| sample.at)
    }

    fn leaders_after(
        &self,
        after: Instant,
        excluded: Option<NodeId>,
    ) -> impl Iterator<Item = (NodeId, StatusSample)> + '_ {
        self.nodes.iter().filter_map(move |(id, node)| {
            let sample = node.sample?;
            (Some(*id) != excluded && node.role(*id) == Role::Leader && sample.at > after)
                .then_some((*id, sample))
        })
    }

    /// How many times leadership passed to a new term.
    pub fn leader_changes(&self) -> usize {
        self.leaders_by_term.len().saturating_sub(1)
    }

    fn record(&mut self, id: NodeId, sample: StatusSample) {
        if sample.leader == id.get() {
            match self.leaders_by_term.get(&sample.term) {
                Some(other) if *other != id && self.two_leaders.is_none() => {
                    self.two_leaders = Some((sample.term, *other, id));
                }
                Some(_) => {}
                None => {
                    self.leaders_by_term.insert(sample.term, id);
                }
            }
        }
        let node = self.nodes.entry(id).or_default();
        node.sample = Some(sample);
        node.last_contact_at = Some(sample.at);
    }
}

/// Polls every node's status in the background; dropping it stops the
/// polling.
pub struct Monitor {
    view: Arc<Mutex<ClusterView>>,
    pollers: Vec<JoinHandle<()>>,
}

impl Monitor {
    /// Starts polling `members` (each marked as not running until
    /// [`Monitor::set_running`] says otherwise).
    pub fn start(members: &BTreeMap<NodeId, SocketAddr>) -> Monitor {
        let view = Arc::new(Mutex::new(ClusterView {
            nodes: members
                .keys()
                .map(|id| (*id, NodeView::default()))
                .collect(),
            ..ClusterView::default()
        }));
        let pollers = members
            .iter()
            .map(|(id, address)| tokio::spawn(poll(*id, *address, view.clone())))
            .collect();
        Monitor { view, pollers }
    }

    /// The view now (hold it briefly: the pollers wait for it).
    pub fn view(&self) -> MutexGuard<'_, ClusterView> {
        lock(&self.view)
    }

    /// Records whether node `id`'s process runs.
    pub fn set_running(&self, id: NodeId, running: bool) {
        let mut view = self.view();
        let node = view.nodes.entry(id).or_default();
        node.running = running;
        // A new life starts with no answer: an old one would show a
        // restarted node as the leader it was when killed.
        node.sample = None;
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for poller in &self.pollers {
            poller.abort();
        }
    }
}

fn lock(view: &Mutex<ClusterView>) -> MutexGuard<'_, ClusterView> {
    view.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn poll(id: NodeId, address: SocketAddr, view: Arc<Mutex<ClusterView>>) {
    let endpoint = Endpoint::from_shared(reach::url(address))
        .expect("a socket address is a valid URL authority")
        .connect_timeout(STATUS_TIMEOUT)
        .timeout(STATUS_TIMEOUT);
    let mut client = MaintenanceClient::new(reach::connect_lazy(endpoint));
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = client.status(StatusRequest {}).await;
        let at = Instant::now();
        let mut view = lock(&view);
        if !view.nodes.get(&id).is_some_and(|node| node.running) {
            // An answer that left before a kill says nothing about now.
            continue;
        }
        match outcome {
            Ok(response) => {
                let status = response.into_inner();
                view.record(
                    id,
                    StatusSample {
                        at,
                        leader: status.leader,
                        term: status.raft_term,
                        commit_index: status.raft_index,
                        applied_index: status.raft_applied_index,
                    },
                );
            }
            Err(_) => {
                view.nodes.entry(id).or_default().last_failure = Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, leader: u64, term: u64) -> StatusSample {
        StatusSample {
            at,
            leader,
            term,
            commit_index: 0,
            applied_index: 0,
        }
    }

    fn running_view(nodes: u64) -> ClusterView {
        ClusterView {
            nodes: (1..=nodes)
                .map(|id| {
                    (
                        NodeId(id),
                        NodeView {
                            running: true,
                            ..NodeView::default()
                        },
                    )
                })
                .collect(),
            ..ClusterView::default()
        }
    }

    #[test]
    fn the_leader_is_the_node_that_says_so_in_the_highest_term() {
        let now = Instant::now();
        let mut view = running_view(3);
        view.record(NodeId(1), sample(now, 1, 2));
        view.record(NodeId(2), sample(now, 3, 3));
        view.record(NodeId(3), sample(now, 3, 3));
        assert_eq!(view.leader(now).map(|(id, _)| id), Some(NodeId(3)));
        assert_eq!(view.nodes[&NodeId(2)].role(NodeId(2)), Role::Follower);
        assert_eq!(view.leader_changes(), 1);
        assert_eq!(view.two_leaders, None);
    }

    #[test]
    fn a_new_leader_counts_only_after_the_kill() {
        let before = Instant::now();
        let kill = before + Duration::from_millis(10);
        let mut view = running_view(3);
        view.record(NodeId(2), sample(before, 2, 4));
        assert_eq!(view.leader_since(kill, NodeId(1)), None);
        view.record(NodeId(2), sample(kill + Duration::from_millis(5), 2, 4));
        assert_eq!(
            view.leader_since(kill, NodeId(1)).map(|(id, _)| id),
            Some(NodeId(2))
        );
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let now = Instant::now();
        let mut view = running_view(3);
        view.record(NodeId(1), sample(now, 1, 5));
        view.record(NodeId(2), sample(now, 2, 5));
        assert_eq!(view.two_leaders, Some((5, NodeId(1), NodeId(2))));
    }

    #[test]
    fn roles_follow_the_process_and_the_last_answer() {
        let now = Instant::now();
        let mut node = NodeView::default();
        assert_eq!(node.role(NodeId(1)), Role::Down);
        node.running = true;
        assert_eq!(node.role(NodeId(1)), Role::Starting);
        node.sample = Some(sample(now, 0, 1));
        assert_eq!(node.role(NodeId(1)), Role::NoLeader);
        node.last_failure = Some(now + Duration::from_millis(1));
        assert_eq!(node.role(NodeId(1)), Role::Unreachable);
    }
}

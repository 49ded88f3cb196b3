//! The nodes of a chaos run on their hosts, and the faults applied to
//! them.

use crate::processes::local_cluster::reach;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raft::NodeId;
use raft_proto::etcd::etcdserverpb::maintenance_client::MaintenanceClient;
use raft_proto::etcd::etcdserverpb::{MoveLeaderRequest, StatusRequest};
use rustix::process::Signal;
use tonic::transport::{Channel, Endpoint};

use super::nemesis::{ActiveFault, Fault};
use super::network::Hosts;
use super::runner::ChaosError;
use crate::processes::local_cluster::processes::NodeProcesses;

/// How long a status question to one node may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// The nodes on their hosts, and what the nemesis did to them.
pub(super) struct Cluster {
    // Fields drop in order: the nodes stop before their hosts go.
    pub(super) processes: NodeProcesses,
    pub(super) hosts: Hosts,
    pub(super) nodes: Vec<NodeId>,
    pub(super) status: BTreeMap<NodeId, MaintenanceClient<Channel>>,
    pub(super) down: BTreeSet<NodeId>,
    pub(super) paused: BTreeSet<NodeId>,
    /// Sent SIGTERM, to be restarted when the fault ends.
    pub(super) terminating: BTreeSet<NodeId>,
    pub(super) origin: Instant,
    pub(super) timeline: Vec<String>,
    pub(super) problems: Vec<String>,
}

impl Cluster {
    pub(super) fn note(&mut self, event: String) {
        let line = format!("{:>8.3}s {event}", self.origin.elapsed().as_secs_f64());
        println!("{line}");
        self.timeline.push(line);
    }

    /// The leader some reachable member names, if any.
    pub(super) async fn leader(&mut self) -> Option<NodeId> {
        for (id, client) in &mut self.status {
            if self.down.contains(id) || self.paused.contains(id) || self.terminating.contains(id) {
                continue;
            }
            if let Ok(status) = client.status(StatusRequest {}).await {
                let leader = status.into_inner().leader;
                if leader != 0 {
                    return Some(NodeId(leader));
                }
            }
        }
        None
    }

    /// Asks a reachable member to move leadership to `target` (it forwards
    /// to the leader); says how that went.
    async fn move_leader(&mut self, target: NodeId) -> String {
        let Some(client) = self
            .status
            .iter()
            .find(|(id, _)| {
                !self.down.contains(id)
                    && !self.paused.contains(id)
                    && !self.terminating.contains(id)
            })
            .map(|(_, client)| client.clone())
        else {
            return "no member to ask".to_string();
        };
        // Longer than a status question: the answer comes once the target
        // leads, or the transfer is abandoned.
        let mut request = tonic::Request::new(MoveLeaderRequest {
            target_id: target.get(),
        });
        request.set_timeout(Duration::from_secs(2));
        let mut client = client;
        match client.move_leader(request).await {
            Ok(_) => "done".to_string(),
            Err(status) => format!("refused: {:?} {}", status.code(), status.message()),
        }
    }

    pub(super) async fn wait_for_leader(&mut self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    pub(super) async fn start(&mut self, active: &ActiveFault) -> Result<(), ChaosError> {
        match &active.fault {
            Fault::Kill(id) => {
                self.processes.kill(*id)?;
                self.down.insert(*id);
            }
            Fault::Pause(id) => {
                self.processes.signal(*id, Signal::STOP);
                self.paused.insert(*id);
            }
            Fault::Terminate(id) => {
                self.processes.signal(*id, Signal::TERM);
                self.terminating.insert(*id);
            }
            Fault::MoveLeader(target) => {
                let outcome = self.move_leader(*target).await;
                self.note(format!("start {} ({outcome})", active.fault));
                return Ok(());
            }
            network => {
                let cut = network.cut_links(&self.nodes);
                self.hosts.set_cut_links(&cut)?;
            }
        }
        self.note(format!("start {}", active.fault));
        Ok(())
    }

    pub(super) fn undo(&mut self, fault: &Fault) -> Result<(), ChaosError> {
        match fault {
            Fault::Kill(id) => {
                self.processes.start(*id)?;
                self.down.remove(id);
                self.note(format!("restart node {}", id.get()));
            }
            Fault::Pause(id) => {
                self.processes.signal(*id, Signal::CONT);
                self.paused.remove(id);
                self.note(format!("SIGCONT node {}", id.get()));
            }
            Fault::Terminate(id) => {
                if self.processes.is_running(*id) {
                    // Still stopping: no longer graceful.
                    self.processes.kill(*id)?;
                    self.note(format!("node {} still running; killed", id.get()));
                }
                self.terminating.remove(id);
                self.processes.start(*id)?;
                self.note(format!("restart node {}", id.get()));
            }
            Fault::MoveLeader(_) => {}
            _ => {
                self.hosts.set_cut_links(&BTreeSet::new())?;
                self.note("heal the network".to_string());
            }
        }
        Ok(())
    }

    /// A node that exited without being killed is a bug (a panic, a
    /// refusal to start on its own data): recorded, and the node restarted
    /// so the run can go on.
    pub(super) fn restart_the_fallen(&mut self) -> Result<(), ChaosError> {
        for (id, status) in self.processes.exited_on_their_own() {
            if self.terminating.contains(&id) && status.success() {
                self.note(format!("node {} stopped cleanly after SIGTERM", id.get()));
                continue;
            }
            let problem = format!(
                "node {} exited on its own ({status}); see node-{}.log",
                id.get(),
                id.get()
            );
            self.note(problem.clone());
            self.problems.push(problem);
            self.paused.remove(&id);
            if !self.down.contains(&id) && !self.terminating.contains(&id) {
                self.processes.start(id)?;
            }
        }
        Ok(())
    }
}

pub(super) fn status_channel(address: SocketAddr) -> Channel {
    reach::connect_lazy(
        Endpoint::from_shared(reach::url(address))
            .expect("a socket address makes a valid URL")
            .connect_timeout(STATUS_TIMEOUT)
            .timeout(STATUS_TIMEOUT),
    )
}

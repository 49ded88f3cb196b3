//! A local cluster: its data directory, its node processes and the monitor
//! watching them. Dropping it stops every node (then removes a temporary
//! data directory).

use super::reach;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::MutexGuard;
use std::time::Instant;

use raft::NodeId;
use tempfile::TempDir;

use super::error::LocalClusterError;
use super::monitor::{ClusterView, Monitor};
use super::ports::free_loopback_addresses;
use super::processes::{NodeProcesses, STOP_GRACE};

/// Where the nodes keep their data and logs.
enum DataDirectory {
    /// Removed when the cluster is dropped, unless kept.
    Temporary(TempDir),
    /// Given by the user; never removed.
    Given(PathBuf),
}

/// Running nodes and what is known of them.
pub struct LocalCluster {
    // Fields drop in order: the nodes stop before their directory goes.
    processes: NodeProcesses,
    monitor: Monitor,
    /// The members now.
    members: BTreeMap<NodeId, SocketAddr>,
    /// Nodes that may join later, with their addresses.
    spares: BTreeMap<NodeId, SocketAddr>,
    /// Members that are learners, as far as the launcher's changes tell.
    learners: BTreeSet<NodeId>,
    data: Option<DataDirectory>,
}

impl LocalCluster {
    /// Starts `nodes` nodes with ids 1..=nodes on free loopback ports, each
    /// running `executable node ...`, with their data under
    /// `data_directory` (a new temporary directory when `None`; a given one
    /// must be empty or missing). Must run inside the launcher's tokio
    /// runtime (the monitor's pollers are tasks).
    pub fn start(
        nodes: usize,
        executable: PathBuf,
        data_directory: Option<&Path>,
    ) -> Result<LocalCluster, LocalClusterError> {
        LocalCluster::start_with_spares(nodes, 0, executable, data_directory)
    }

    /// [`LocalCluster::start`], with `spares` more nodes (ids after the
    /// members') that are not started: each may join later
    /// ([`LocalCluster::start_joining`]).
    pub fn start_with_spares(
        nodes: usize,
        spares: usize,
        executable: PathBuf,
        data_directory: Option<&Path>,
    ) -> Result<LocalCluster, LocalClusterError> {
        let data = match data_directory {
            Some(path) => {
                let occupied = std::fs::read_dir(path)
                    .map(|mut entries| entries.next().is_some())
                    .unwrap_or(false);
                if occupied {
                    return Err(LocalClusterError::DataDirectoryNotEmpty(path.to_path_buf()));
                }
                std::fs::create_dir_all(path).map_err(LocalClusterError::io(format!(
                    "create the data directory {}",
                    path.display()
                )))?;
                DataDirectory::Given(path.to_path_buf())
            }
            None => DataDirectory::Temporary(
                tempfile::Builder::new()
                    .prefix("run_n_clients-")
                    .tempdir()
                    .map_err(LocalClusterError::io("create a temporary data directory"))?,
            ),
        };
        let path = match &data {
            DataDirectory::Temporary(directory) => directory.path().to_path_buf(),
            DataDirectory::Given(path) => path.clone(),
        };
        let addresses = free_loopback_addresses(nodes + spares)
            .map_err(LocalClusterError::io("find free loopback ports"))?;
        let mut members: BTreeMap<NodeId, SocketAddr> = (1..).map(NodeId).zip(addresses).collect();
        let spares = members.split_off(&NodeId(nodes as u64 + 1));
        let processes = NodeProcesses::new(executable, path, members.clone());
        let everyone: BTreeMap<NodeId, SocketAddr> = members
            .iter()
            .chain(&spares)
            .map(|(id, address)| (*id, *address))
            .collect();
        let monitor = Monitor::start(&everyone);
        let mut cluster = LocalCluster {
            processes,
            monitor,
            members,
            spares,
            learners: BTreeSet::new(),
            data: Some(data),
        };
        for id in cluster.node_ids() {
            cluster.start_node(id)?;
        }
        Ok(cluster)
    }

    /// The node ids of the members.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    /// The ids of every node, members and spares.
    pub fn all_node_ids(&self) -> Vec<NodeId> {
        self.members
            .keys()
            .chain(self.spares.keys())
            .copied()
            .collect()
    }

    /// Records that member `id` is (or no longer is) a learner.
    pub fn set_learner(&mut self, id: NodeId, learner: bool) {
        if learner {
            self.learners.insert(id);
        } else {
            self.learners.remove(&id);
        }
    }

    /// The configuration as the launcher's changes made it: `1,2,3,4
    /// (learner)`.
    pub fn configuration(&self) -> String {
        self.members
            .keys()
            .map(|id| match self.learners.contains(id) {
                true => format!("{} (learner)", id.get()),
                false => id.get().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Where spare `id` will listen.
    pub fn spare_address(&self, id: NodeId) -> Option<SocketAddr> {
        self.spares.get(&id).copied()
    }

    /// Starts spare `id`, which joins the running cluster (add it as a
    /// member first); it is a member of this cluster from now on.
    pub fn start_joining(&mut self, id: NodeId) -> Result<(), LocalClusterError> {
        let address = self.spares.remove(&id).ok_or_else(|| {
            LocalClusterError::Options(format!("node {} is not a spare", id.get()))
        })?;
        self.members.insert(id, address);
        self.processes.add_joining(id, address);
        self.start_node(id)
    }

    /// Stops member `id` (SIGTERM, SIGKILL after a grace period) after its
    /// removal from the cluster, without blocking the runtime: it is no
    /// longer a member here, and its data stays.
    pub async fn retire(&mut self, id: NodeId) {
        self.monitor.set_running(id, false);
        if let Some(address) = self.members.remove(&id) {
            self.spares.insert(id, address);
        }
        let Some(mut child) = self.processes.terminate(id) else {
            return;
        };
        let deadline = Instant::now() + STOP_GRACE;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                tracing::warn!(node = %id, "the node did not stop on SIGTERM; killing it");
                NodeProcesses::kill_terminated(&mut child);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Every node and its address.
    pub fn members(&self) -> &BTreeMap<NodeId, SocketAddr> {
        &self.members
    }

    /// The nodes' URLs for etcd clients.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .values()
            .map(|address| reach::url(*address))
            .collect()
    }

    /// The data directory.
    pub fn data_directory(&self) -> PathBuf {
        match &self.data {
            Some(DataDirectory::Temporary(directory)) => directory.path().to_path_buf(),
            Some(DataDirectory::Given(path)) => path.clone(),
            None => PathBuf::new(),
        }
    }

    /// Node `id`'s log file.
    pub fn log_path(&self, id: NodeId) -> PathBuf {
        self.processes.log_path(id)
    }

    /// The nodes' process ids.
    pub fn process_ids(&self) -> BTreeMap<NodeId, u32> {
        self.processes.process_ids()
    }

    /// Starts (or restarts, same id and data) node `id`.
    pub fn start_node(&mut self, id: NodeId) -> Result<(), LocalClusterError> {
        self.processes.start(id)?;
        self.monitor.set_running(id, true);
        Ok(())
    }

    /// Kills node `id` with SIGKILL.
    pub fn kill_node(&mut self, id: NodeId) -> Result<(), LocalClusterError> {
        self.monitor.set_running(id, false);
        self.processes.kill(id)
    }

    /// Whether node `id`'s process runs.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.processes.is_running(id)
    }

    /// The nodes that exited without being killed since the last call.
    pub fn exited_on_their_own(&mut self) -> Vec<(NodeId, ExitStatus)> {
        let exited = self.processes.exited_on_their_own();
        for (id, _) in &exited {
            self.monitor.set_running(*id, false);
        }
        exited
    }

    /// What the monitor sees now (hold it briefly).
    pub fn view(&self) -> MutexGuard<'_, ClusterView> {
        self.monitor.view()
    }

    /// The current leader, from a fresh status answer.
    pub fn leader(&self) -> Option<NodeId> {
        self.view().leader(Instant::now()).map(|(id, _)| id)
    }

    /// Keeps a temporary data directory after the cluster is dropped (to
    /// read the logs of a failed run); returns where it is.
    pub fn keep_data_directory(&mut self) -> PathBuf {
        match self.data.take() {
            Some(DataDirectory::Temporary(directory)) => {
                let path = directory.keep();
                self.data = Some(DataDirectory::Given(path.clone()));
                path
            }
            other => {
                self.data = other;
                self.data_directory()
            }
        }
    }

    /// Stops every node (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(&mut self) {
        self.processes.stop_all();
        for id in self.node_ids() {
            self.monitor.set_running(id, false);
        }
    }
}

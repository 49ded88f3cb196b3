//! A local cluster: its data directory, its node processes and the monitor
//! watching them. Dropping it stops every node (then removes a temporary
//! data directory).

use std::collections::BTreeMap;
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
use super::processes::NodeProcesses;

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
    members: BTreeMap<NodeId, SocketAddr>,
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
        let addresses = free_loopback_addresses(nodes)
            .map_err(LocalClusterError::io("find free loopback ports"))?;
        let members: BTreeMap<NodeId, SocketAddr> = (1..).map(NodeId).zip(addresses).collect();
        let processes = NodeProcesses::new(executable, path, members.clone());
        let monitor = Monitor::start(&members);
        let mut cluster = LocalCluster {
            processes,
            monitor,
            members,
            data: Some(data),
        };
        for id in cluster.node_ids() {
            cluster.start_node(id)?;
        }
        Ok(cluster)
    }

    /// The node ids.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    /// Every node and its address.
    pub fn members(&self) -> &BTreeMap<NodeId, SocketAddr> {
        &self.members
    }

    /// The nodes' URLs for etcd clients.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .values()
            .map(|address| format!("http://{address}"))
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

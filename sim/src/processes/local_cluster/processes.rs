//! The node processes of a local cluster. Each node is this same executable
//! re-run as `<executable> node <id> <address> <members> --data-dir
//! <data>/node-<id> --parent-pid <launcher>`, in a process group of its own
//! (so a Ctrl-C at the terminal reaches only the launcher, which then stops
//! the nodes in order), with its output appended to `<data>/node-<id>.log`.
//!
//! Dropping [`NodeProcesses`] stops every node still running, so no exit
//! path of the launcher (an error, a panic, Ctrl-C) leaves one behind; and
//! a node whose launcher dies without running destructors (SIGKILL) is
//! killed by the kernel (see [`node_process`](super::node_process)).

use super::reach;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use raft::NodeId;
use raft_client::server::member_list::format_members;
use rustix::process::{kill_process_group, Pid, Signal};

use super::error::LocalClusterError;

/// How long a node has to stop after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// The log level of the nodes when the launcher's environment sets none.
const NODE_LOG_LEVEL: &str = "warn";

/// The running node processes.
pub struct NodeProcesses {
    executable: PathBuf,
    data_directory: PathBuf,
    /// Every node that may run, and its address.
    members: BTreeMap<NodeId, SocketAddr>,
    /// The member list every node is started with: the cluster's first
    /// members. Nodes outside it join the running cluster (`--join`).
    initial: BTreeMap<NodeId, SocketAddr>,
    /// The children not yet reaped. A node the launcher kills is removed
    /// as soon as it is reaped, so a child that exits while still here
    /// exited on its own. Signals go only to children still here: a
    /// reaped child's process id may already belong to another process.
    children: BTreeMap<NodeId, Child>,
    /// Per node, a command that runs the node's command line (for
    /// instance `ip netns exec <namespace>`); none: the node runs directly.
    launch_prefixes: BTreeMap<NodeId, Vec<OsString>>,
}

impl NodeProcesses {
    /// No node running yet; `executable` must understand the `node`
    /// subcommand.
    pub fn new(
        executable: PathBuf,
        data_directory: PathBuf,
        members: BTreeMap<NodeId, SocketAddr>,
    ) -> NodeProcesses {
        NodeProcesses {
            executable,
            data_directory,
            initial: members.clone(),
            members,
            children: BTreeMap::new(),
            launch_prefixes: BTreeMap::new(),
        }
    }

    /// Adds `id` at `address`: a node that joins the running cluster
    /// (`--join`) once it is added as a member and started.
    pub fn add_joining(&mut self, id: NodeId, address: SocketAddr) {
        self.members.insert(id, address);
    }

    /// Runs node `id` from now on as `prefix... <executable> node ...`.
    /// The prefix must exec the node in place (as `ip netns exec` does),
    /// so that the node stays the launcher's child.
    pub fn set_launch_prefix(&mut self, id: NodeId, prefix: Vec<OsString>) {
        self.launch_prefixes.insert(id, prefix);
    }

    /// Where node `id` keeps its data.
    pub fn node_directory(&self, id: NodeId) -> PathBuf {
        node_directory(&self.data_directory, id)
    }

    /// Where node `id` writes its log.
    pub fn log_path(&self, id: NodeId) -> PathBuf {
        log_path(&self.data_directory, id)
    }

    /// Starts node `id` (again, after a kill: same id, same data).
    pub fn start(&mut self, id: NodeId) -> Result<(), LocalClusterError> {
        let address = *self.members.get(&id).ok_or_else(|| {
            LocalClusterError::Options(format!("node {} is not a member of the cluster", id.get()))
        })?;
        let log_path = self.log_path(id);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(LocalClusterError::io(format!(
                "open the log {}",
                log_path.display()
            )))?;
        let log_copy = log.try_clone().map_err(LocalClusterError::io(format!(
            "share the log {} between stdout and stderr",
            log_path.display()
        )))?;
        let members = self
            .initial
            .iter()
            .map(|(id, address)| (*id, address.to_string()))
            .collect();
        let mut command = match self.launch_prefixes.get(&id).map(Vec::as_slice) {
            Some([program, arguments @ ..]) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(&self.executable);
                command
            }
            _ => Command::new(&self.executable),
        };
        command
            .arg("node")
            .arg(id.get().to_string())
            .arg(address.to_string())
            .arg(format_members(&members))
            .arg("--data-dir")
            .arg(self.node_directory(id))
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .args((!self.initial.contains_key(&id)).then_some("--join"))
            .args(reach::node_arguments())
            .stdin(Stdio::null())
            .stdout(log_copy)
            .stderr(log)
            .process_group(0);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", NODE_LOG_LEVEL);
        }
        let child = command.spawn().map_err(LocalClusterError::io(format!(
            "start node {} ({})",
            id.get(),
            self.executable.display()
        )))?;
        self.children.insert(id, child);
        Ok(())
    }

    /// Whether node `id` was started and not killed or reaped since.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.children.contains_key(&id)
    }

    /// The process ids of the running nodes.
    pub fn process_ids(&self) -> BTreeMap<NodeId, u32> {
        self.children
            .iter()
            .map(|(id, child)| (*id, child.id()))
            .collect()
    }

    /// Kills node `id` with SIGKILL (no chance to flush or say goodbye, as
    /// in a power cut) and reaps it.
    pub fn kill(&mut self, id: NodeId) -> Result<(), LocalClusterError> {
        let Some(mut child) = self.children.remove(&id) else {
            return Ok(());
        };
        signal_group(&child, Signal::KILL);
        child
            .wait()
            .map_err(LocalClusterError::io(format!("reap node {}", id.get())))?;
        Ok(())
    }

    /// Sends `signal` to node `id` (and anything it started); false if the
    /// node is not running.
    pub fn signal(&self, id: NodeId, signal: Signal) -> bool {
        match self.children.get(&id) {
            Some(child) => {
                signal_group(child, signal);
                true
            }
            None => false,
        }
    }

    /// The nodes that exited since the last call without being killed by
    /// the launcher, with how they ended; they are no longer running.
    pub fn exited_on_their_own(&mut self) -> Vec<(NodeId, ExitStatus)> {
        let mut exited = Vec::new();
        for (id, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                exited.push((*id, status));
            }
        }
        for (id, _) in &exited {
            self.children.remove(id);
        }
        exited
    }

    /// Sends node `id` SIGTERM and hands its process over (no longer
    /// watched here), for the caller to wait for.
    pub fn terminate(&mut self, id: NodeId) -> Option<Child> {
        let child = self.children.remove(&id)?;
        signal_group(&child, Signal::TERM);
        signal_group(&child, Signal::CONT);
        Some(child)
    }

    /// Kills a process handed over by [`NodeProcesses::terminate`] that did
    /// not stop in time.
    pub fn kill_terminated(child: &mut Child) {
        signal_group(child, Signal::KILL);
        let _ = child.wait();
    }

    /// Stops every node: SIGTERM (a node then flushes and closes its log),
    /// and SIGKILL for those still running after [`STOP_GRACE`]. Blocks
    /// the calling thread for at most that long.
    pub fn stop_all(&mut self) {
        for child in self.children.values() {
            signal_group(child, Signal::TERM);
            // A node stopped with SIGSTOP acts on SIGTERM once continued.
            signal_group(child, Signal::CONT);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while !self.children.is_empty() && Instant::now() < deadline {
            self.children
                .retain(|_, child| matches!(child.try_wait(), Ok(None)));
            std::thread::sleep(Duration::from_millis(10));
        }
        for (id, mut child) in std::mem::take(&mut self.children) {
            tracing::warn!(node = %id, "the node did not stop on SIGTERM; killing it");
            signal_group(&child, Signal::KILL);
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProcesses {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Where node `id` keeps its data under `data_directory`.
pub fn node_directory(data_directory: &Path, id: NodeId) -> PathBuf {
    data_directory.join(format!("node-{}", id.get()))
}

/// Where node `id` writes its log under `data_directory`.
pub fn log_path(data_directory: &Path, id: NodeId) -> PathBuf {
    data_directory.join(format!("node-{}.log", id.get()))
}

/// Signals the process group of `child` (it leads its own group), so that
/// anything the node started goes too.
fn signal_group(child: &Child, signal: Signal) {
    if let Err(error) = kill_process_group(Pid::from_child(child), signal) {
        tracing::debug!(process = child.id(), %error, "cannot signal a node");
    }
}

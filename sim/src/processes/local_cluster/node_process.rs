//! The node side of a local cluster: `run_n_clients node <id> <address>
//! <members> ...` runs one node exactly as `raft_client run` does (the same
//! arguments, from `raft_client::run`), and dies with its launcher.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use raft_client::run::{run_node, RunArguments, RunError};
use thiserror::Error;

/// The hidden `node` subcommand's arguments.
#[derive(clap::Args, Debug)]
pub struct NodeArguments {
    #[command(flatten)]
    /// The node's own arguments.
    pub run: RunArguments,
    /// The launcher's process id: the node is killed when the launcher
    /// dies, even by SIGKILL.
    #[arg(long)]
    pub parent_pid: Option<u32>,
}

/// Why a node process stopped with an error.
#[derive(Debug, Error)]
pub enum NodeProcessError {
    /// The kernel cannot be asked to kill the node with its launcher.
    #[error("cannot ask to be killed with the launcher: {0}")]
    DeathSignal(std::io::Error),
    /// The launcher died before the node started.
    #[error("the launcher (process {0}) is gone; not starting")]
    LauncherGone(u32),
    /// No async runtime.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The node failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The `main` of a launcher binary (`run_n_clients`, `chaos`): with
/// `node`, runs that node (the hidden subcommand); otherwise runs
/// `launch` on a single-threaded runtime, because every node must be
/// started from the main thread, which the nodes' parent-death signal
/// watches. An error is printed and gives `failure`.
pub fn launcher_main<Launch, Error>(
    node: Option<NodeArguments>,
    launch: Launch,
    failure: ExitCode,
) -> ExitCode
where
    Launch: Future<Output = Result<ExitCode, Error>>,
    Error: Display,
{
    if let Some(node) = node {
        return match run_node_process(&node) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return failure;
        }
    };
    match runtime.block_on(launch) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            failure
        }
    }
}

/// Runs the node until SIGINT or SIGTERM (or the launcher's death).
pub fn run_node_process(arguments: &NodeArguments) -> Result<(), NodeProcessError> {
    if let Some(launcher) = arguments.parent_pid {
        die_with_launcher(launcher)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(NodeProcessError::Runtime)?;
    runtime.block_on(run_node(&arguments.run))?;
    Ok(())
}

/// Asks the kernel to SIGKILL this process when the thread that started
/// it exits (the launcher starts nodes from its only runtime thread, its
/// main thread). SIGKILL because nobody is left to read the answers, and it
/// cannot be caught or delayed.
#[cfg(target_os = "linux")]
fn die_with_launcher(launcher: u32) -> Result<(), NodeProcessError> {
    use rustix::process::{getppid, set_parent_process_death_signal, Pid, Signal};
    set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|error| NodeProcessError::DeathSignal(error.into()))?;
    // The launcher may have died before the call above, and this process
    // been handed to another parent already.
    if u32::try_from(Pid::as_raw(getppid())).ok() != Some(launcher) {
        return Err(NodeProcessError::LauncherGone(launcher));
    }
    Ok(())
}

/// Elsewhere the launcher's destructors are the only guard.
#[cfg(not(target_os = "linux"))]
fn die_with_launcher(_launcher: u32) -> Result<(), NodeProcessError> {
    Ok(())
}

//! Child processes (of the `raft_client` binary, mostly) that never outlive
//! a test:
//! dropping a [`ChildGuard`] kills and reaps its process (on a panic too),
//! and on Linux the kernel kills it if the test process itself dies.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_raft_client");

/// How often a wait on a child polls it.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running child process, killed with SIGKILL and reaped on drop.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `raft_client` with `arguments`, its standard error appended to
    /// `log` (created if missing) and no standard input or output.
    pub fn spawn(arguments: &[String], log: &Path) -> ChildGuard {
        ChildGuard::spawn_with_environment(arguments, log, &[])
    }

    /// [`ChildGuard::spawn`] with more environment variables.
    pub fn spawn_with_environment(
        arguments: &[String],
        log: &Path,
        environment: &[(&str, &str)],
    ) -> ChildGuard {
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|error| panic!("open the log {}: {error}", log.display()));
        let mut command = Command::new(BINARY);
        command
            .args(arguments)
            // Plain text logs, for the tests to search.
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(environment.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        ChildGuard::start(command)
    }

    /// Starts `command`, however its standard streams are set up.
    pub fn start(mut command: Command) -> ChildGuard {
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {command:?}: {error}"));
        ChildGuard { child: Some(child) }
    }

    /// The child's standard input, if it was piped and not yet taken.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.as_mut()?.stdin.take()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("poll a child process")
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).expect("a child has a positive pid");
        kill_process(pid, signal).expect("signal a child process");
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means it already exited; wait reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asks the kernel to SIGKILL the child when the thread that started it
/// ends, so that nodes do not linger if the test process is itself killed
/// (a drop never runs then). Tests start nodes from their own thread, which
/// outlives the nodes.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs between fork and exec and only makes one
    // async-signal-safe system call (prctl), allocating nothing.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// What a run of `raft_client` that was expected to stop by itself did.
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `raft_client` with `arguments` and waits up to `timeout` for it to
/// exit by itself; panics (after killing it) if it is still running then.
pub fn run_to_exit(arguments: &[String], scratch: &Path, timeout: Duration) -> Finished {
    let log = scratch.join(format!("run-{}.log", unique_suffix()));
    let mut child = ChildGuard::spawn(arguments, &log);
    let status = child.wait_for_exit(timeout);
    drop(child);
    let stderr = read_log(&log);
    match status {
        Some(status) => Finished { status, stderr },
        None => panic!(
            "raft_client {arguments:?} was still running after {timeout:?}; it was expected to \
             exit. Its log:\n{stderr}"
        ),
    }
}

/// The text of a log file ("" if it does not exist yet).
pub fn read_log(path: &Path) -> String {
    match File::open(path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).expect("read a log");
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Err(_) => String::new(),
    }
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

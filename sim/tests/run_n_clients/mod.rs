//! `run_n_clients` end to end: three real node processes, eight seconds of
//! writes, the leader killed every three seconds; and a `--scale` run that
//! grows three members to five and back. Each run must pass its own checks
//! and leave no node process behind.

use std::path::Path;
use std::process::Command;

/// The process ids whose command line mentions `text`.
fn processes_mentioning(text: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let command_line = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&command_line)
                .contains(text)
                .then_some(pid)
        })
        .collect()
}

/// Runs `run_n_clients` with `arguments` and `--data-dir data`, checks
/// its verdict and that no node outlives it; returns its output.
fn check_run(arguments: &[&str], data: &Path) -> Result<String, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_run_n_clients"))
        .args(arguments)
        .arg("--data-dir")
        .arg(data)
        .output()
        .map_err(|error| format!("cannot run run_n_clients: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    if !output.status.success() {
        return Err(format!(
            "run_n_clients ended with {}\n{report}",
            output.status
        ));
    }
    if stdout.lines().last() != Some("verdict=OK") {
        return Err(format!("the last line is not verdict=OK\n{report}"));
    }
    let left = processes_mentioning(&data.display().to_string());
    if !left.is_empty() {
        return Err(format!("node processes remain: {left:?}\n{report}"));
    }
    Ok(stdout.into_owned())
}

/// Runs `check` on a fresh data directory, which is kept (and named) if it
/// fails.
fn in_scratch(check: impl FnOnce(&Path) -> Result<(), String>) {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("cluster");
    if let Err(failure) = check(&data) {
        let kept = directory.keep();
        panic!(
            "{failure}\nthe nodes' data and logs are in {}",
            kept.display()
        );
    }
}

#[test]
fn three_nodes_survive_leader_kills_and_end_identical() {
    in_scratch(|data| check_run(&["3", "--duration", "8", "--kill-every", "3"], data).map(drop));
}

#[test]
fn the_cluster_grows_to_five_and_shrinks_back_while_writing() {
    in_scratch(|data| {
        let stdout = check_run(&["5", "--scale"], data)?;
        let changes: Vec<&str> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix("change "))
            .map(|line| line.split("answered").next().unwrap_or("").trim())
            .collect();
        let expected = [
            "add learner 4",
            "promote 4",
            "add learner 5",
            "promote 5",
            "move leader to 5",
            "remove leader 5",
            "remove follower 4",
        ];
        if changes != expected {
            return Err(format!(
                "changes {changes:?}, expected {expected:?}\n{stdout}"
            ));
        }
        // The removed members' data directories stay; the two that joined
        // recorded the cluster they joined.
        for id in [4, 5] {
            let marker = data.join(format!("node-{id}")).join("joined-cluster");
            if !marker.is_file() {
                return Err(format!("{} is missing\n{stdout}", marker.display()));
            }
        }
        Ok(())
    });
}

//! `run_n_clients` end to end: three real node processes, eight seconds of
//! writes, the leader killed every three seconds; the run must pass its own
//! checks and leave no node process behind.

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

fn check_run(data: &Path) -> Result<(), String> {
    let output = Command::new(env!("CARGO_BIN_EXE_run_n_clients"))
        .args(["3", "--duration", "8", "--kill-every", "3", "--data-dir"])
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
    Ok(())
}

#[test]
fn three_nodes_survive_leader_kills_and_end_identical() {
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("cluster");
    if let Err(failure) = check_run(&data) {
        let kept = directory.keep();
        panic!(
            "{failure}\nthe nodes' data and logs are in {}",
            kept.display()
        );
    }
}

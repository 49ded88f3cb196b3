//! The chaos harness end to end: real node processes under faults, every
//! history checked. A healthy cluster must pass with faults injected, and
//! the harness must catch the stale reads of a cluster whose reads skip
//! ReadIndex (its bite test).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use sim::processes::chaos::namespaces_available;

/// Runs the harness with `arguments`, its folder under `data`.
fn chaos(data: &Path, arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(arguments)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("cannot run the chaos harness")
}

/// The figures of the harness's last line (`ops=.. ok=.. ...`), and the
/// whole output for failure messages.
fn figures(output: &Output) -> (BTreeMap<String, u64>, String) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!(
        "status: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let figures = stdout
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect();
    (figures, report)
}

/// Asserts that a run passed after faults and real work, and left nothing
/// behind in `data`.
fn assert_passed(data: &Path, output: &Output) {
    let (figures, report) = figures(output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(figures.get("violations"), Some(&0), "{report}");
    assert!(figures["faults"] >= 1, "no fault was injected\n{report}");
    assert!(figures["ok"] >= 100, "too little work was done\n{report}");
    assert!(figures["keys"] >= 8, "{report}");
    let left: Vec<_> = std::fs::read_dir(data).unwrap().collect();
    assert!(
        left.is_empty(),
        "a passing run leaves no folder: {left:?}\n{report}"
    );
}

/// Runs a healthy cluster of three under faults and asserts it passed.
fn healthy_run(network: &str, seed: &str, secs: &str) {
    let directory = tempfile::tempdir().unwrap();
    let output = chaos(
        directory.path(),
        &[
            "--nodes",
            "3",
            "--secs",
            secs,
            "--heal-secs",
            "2",
            "--seed",
            seed,
            "--network",
            network,
        ],
    );
    assert_passed(directory.path(), &output);
}

#[test]
fn a_healthy_cluster_passes_under_process_faults() {
    healthy_run("loopback", "11", "8");
}

#[test]
fn a_healthy_cluster_passes_under_network_faults() {
    if !namespaces_available() {
        eprintln!(
            "SKIPPED: network namespaces need root on Linux and the ip command; the loopback \
             test still runs"
        );
        return;
    }
    healthy_run("namespaces", "12", "10");
}

/// The bite test: reads served from each member's own store, without
/// ReadIndex, are not linearizable (a member that lags, or that restarts
/// from its log, answers with old values), and the harness must say so,
/// keep the evidence and fail.
#[test]
fn stale_reads_are_caught() {
    let directory = tempfile::tempdir().unwrap();
    let output = chaos(
        directory.path(),
        &[
            "--nodes",
            "3",
            "--secs",
            "10",
            "--heal-secs",
            "2",
            "--seed",
            "13",
            "--network",
            "loopback",
            "--serializable-reads",
        ],
    );
    let (figures, report) = figures(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(figures["violations"] >= 1, "{report}");
    assert!(report.contains("is not linearizable"), "{report}");
    let kept: Vec<_> = std::fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{report}");
    for file in ["history.txt", "faults.txt", "report.txt", "node-1.log"] {
        assert!(kept[0].join(file).is_file(), "{file} missing\n{report}");
    }
}

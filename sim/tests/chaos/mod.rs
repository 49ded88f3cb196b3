//! The chaos harness end to end: real node processes under faults, every
//! history checked. A healthy cluster must pass with faults injected, and
//! the harness must catch the stale reads of a cluster whose reads skip
//! ReadIndex, and a watcher of its own broken to drop an event (its bite
//! tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sim::processes::chaos::namespaces_available;
use tempfile::TempDir;

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
    assert_eq!(figures.get("watchers"), Some(&6), "{report}");
    assert!(
        figures["watch_events"] >= figures["ok"] / 4,
        "the watchers were told too little\n{report}"
    );
    let left: Vec<_> = std::fs::read_dir(data).unwrap().collect();
    assert!(
        left.is_empty(),
        "a passing run leaves no folder: {left:?}\n{report}"
    );
}

/// Runs a cluster of three on `network` for `secs` of faults and two of
/// heal, with `seed` and `extra` arguments, its folder under `data`.
fn three_nodes(data: &Path, network: &str, seed: &str, secs: &str, extra: &str) -> Output {
    let mut arguments = vec![
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
    ];
    arguments.extend(extra.split_whitespace());
    chaos(data, &arguments)
}

/// Runs a healthy cluster of three under faults and asserts it passed.
fn healthy_run(network: &str, seed: &str, secs: &str) {
    let directory = tempfile::tempdir().unwrap();
    let output = three_nodes(directory.path(), network, seed, secs, "");
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

/// Runs three loopback nodes for `secs` with `seed` and `extra`
/// arguments, a run that must fail and keep one folder of evidence;
/// returns the output and that folder (removed with the directory).
fn failing_run(secs: &str, seed: &str, extra: &str) -> (String, TempDir, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let output = three_nodes(directory.path(), "loopback", seed, secs, extra);
    let (figures, report) = figures(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(figures["violations"] >= 1, "{report}");
    let kept: Vec<_> = std::fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{report}");
    for file in ["history.txt", "watches.txt", "faults.txt", "report.txt"] {
        assert!(kept[0].join(file).is_file(), "{file} missing\n{report}");
    }
    let folder = kept[0].clone();
    (report, directory, folder)
}

/// The bite test: reads served from each member's own store, without
/// ReadIndex, are not linearizable (a member that lags, or that restarts
/// from its log, answers with old values), and the harness must say so,
/// keep the evidence and fail.
#[test]
fn stale_reads_are_caught() {
    let (report, _directory, folder) = failing_run("10", "13", "--serializable-reads");
    assert!(report.contains("is not linearizable"), "{report}");
    assert!(folder.join("node-1.log").is_file(), "{report}");
}

/// The watch checks' bite test: the harness's own watcher 0 (the first on
/// member 1, which watches every key) drops the tenth event it is told,
/// and the run must name that event as missed and fail.
#[test]
fn a_watcher_that_skips_an_event_is_caught() {
    let (report, _directory, folder) = failing_run("6", "14", "--break-watcher skip-one");
    assert!(
        report.contains("VIOLATION: watcher 0 (member 1, prefix \"chaos/\"): key "),
        "{report}"
    );
    assert!(report.contains("missed (value Some("), "{report}");
    let watches = std::fs::read_to_string(folder.join("watches.txt")).unwrap();
    assert!(watches.contains("watcher 5 member 3"), "{watches}");
}

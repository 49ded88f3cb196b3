//! Benchmark of the write-ahead log against the raw speed of the disk.
//!
//! ```text
//! cargo run --release -p raft --example wal_bench -- [--appenders 1,16,256] [--secs 5] [--dir PATH]
//! ```
//!
//! One run prints, in order:
//!
//! 1. the raw rate of the disk under the directory: a loop of one write
//!    (4 KiB, or `--raw-write-bytes`) appended to a file and one fdatasync,
//!    as a log without group commit would do (operations per second, p50
//!    and p99 latency). It runs
//!    in slices that alternate with those of the run with the fewest
//!    appenders: on a shared or virtual disk the cost of an fdatasync can
//!    change several-fold from one second to the next, and only what is
//!    measured over the same seconds can be compared;
//! 2. for each count of concurrent appenders: every appender is a thread
//!    that appends one entry of `--entry-bytes` bytes, waits until it is
//!    durable ([`Wal::submit_append`] then [`Wal::wait`]), records the
//!    latency and starts again, like a client waiting for its commit.
//!    Indexes are handed out under one mutex that also submits, so entries
//!    reach the log in index order, as a leader's do;
//! 3. the two ratios that say whether group commit pays: entries per second
//!    with the most appenders over the raw fdatasyncs per second (how many
//!    entries one fdatasync carries; the goal is at least 50), and the p50
//!    latency of one appender over the raw p50 (what the WAL adds to the
//!    disk's own cost; the goal is at most 1.3).
//!
//! Each count runs on a fresh WAL in its own subdirectory, which is checked
//! after the run by reopening it. The default directory is a temporary one
//! under the current directory, removed at the end; tmpfs is refused, since
//! its fdatasync does nothing.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use raft::storage::{ClusterId, Wal, WalOptions};
use raft::{Entry, EntryPayload, LogIndex, NodeId, Term};

/// Slices in which the raw loop and the run with the fewest appenders
/// alternate.
const INTERLEAVED_SLICES: u32 = 10;

/// Latencies are recorded in nanoseconds, up to this bound.
const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// `statfs` magic numbers of the filesystems worth naming in the report.
const FILESYSTEMS: [(i128, &str); 6] = [
    (0xEF53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x794C_7630, "overlayfs"),
    (0x2FC1_2FC1, "zfs"),
];

#[derive(Parser, Debug)]
#[command(about = "Benchmark the RustyRaft write-ahead log against raw write + fdatasync")]
struct Args {
    /// Counts of concurrent appenders to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    appenders: Vec<usize>,
    /// Seconds of each measurement (the raw loop, then each count).
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Directory to write in; by default a temporary directory under the
    /// current one. It must not be on tmpfs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Bytes of each entry's command.
    #[arg(long, default_value_t = 256)]
    entry_bytes: usize,
    /// Bytes of each write in the raw loop. One 256-byte entry is a
    /// 285-byte record: pass that to compare writes of the same size.
    #[arg(long, default_value_t = 4096)]
    raw_write_bytes: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.secs.is_finite() && args.secs > 0.0,
        "--secs must be positive"
    );
    ensure!(
        args.raw_write_bytes > 0,
        "--raw-write-bytes must be positive"
    );
    ensure!(
        !args.appenders.is_empty() && !args.appenders.contains(&0),
        "--appenders must list counts of at least 1"
    );
    let duration = Duration::from_secs_f64(args.secs);

    // Kept alive to the end: dropping it removes the directory.
    let temporary;
    let directory = match &args.dir {
        Some(directory) => {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("creating {}", directory.display()))?;
            directory.clone()
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("wal-bench-")
                .tempdir_in(".")
                .context("creating a temporary directory under the current directory")?;
            temporary.path().to_path_buf()
        }
    };
    let filesystem = filesystem_name(&directory)?;
    if filesystem == "tmpfs" {
        bail!(
            "{} is on tmpfs, where fdatasync does nothing; pass --dir on a real disk",
            directory.display()
        );
    }
    println!(
        "directory: {} ({filesystem}), {} s per measurement, entries of {} bytes",
        directory.display(),
        args.secs,
        args.entry_bytes
    );

    let fewest = args.appenders.iter().copied().min().unwrap_or(1);
    let slice = duration / INTERLEAVED_SLICES;
    let mut raw_disk = RawDisk::create(&directory, args.raw_write_bytes)?;
    let mut interleaved = Some(measure_wal(
        &directory,
        fewest,
        args.entry_bytes,
        (slice, INTERLEAVED_SLICES),
        || raw_disk.run_for(slice),
    )?);
    let raw = raw_disk.finish()?;
    println!(
        "raw {}-byte append + fdatasync (interleaved with appenders={fewest}): \
         fdatasyncs_per_s={:.0} p50_us={:.1} p99_us={:.1}",
        args.raw_write_bytes, raw.fdatasyncs_per_s, raw.latency_us_p50, raw.latency_us_p99
    );

    let mut runs = Vec::new();
    for &appenders in &args.appenders {
        let run = match interleaved.take_if(|_| appenders == fewest) {
            Some(run) => run,
            None => measure_wal(
                &directory,
                appenders,
                args.entry_bytes,
                (duration, 1),
                || Ok(()),
            )?,
        };
        println!(
            "appenders={appenders} entries_per_s={:.0} payload_mb_per_s={:.2} written_mb_per_s={:.2} \
             fdatasyncs_per_s={:.0} entries_per_fdatasync={:.1} p50_us={:.1} p99_us={:.1}",
            run.entries_per_s,
            run.payload_mb_per_s,
            run.written_mb_per_s,
            run.fdatasyncs_per_s,
            run.entries_per_s / run.fdatasyncs_per_s.max(f64::MIN_POSITIVE),
            run.latency_us_p50,
            run.latency_us_p99,
        );
        runs.push((appenders, run));
    }

    let most = runs.iter().max_by_key(|(appenders, _)| *appenders);
    let fewest = runs.iter().min_by_key(|(appenders, _)| *appenders);
    if let (Some((most, busy)), Some((fewest, quiet))) = (most, fewest) {
        println!(
            "ratio entries_per_s(appenders={most}) / raw fdatasyncs_per_s = {:.1} (goal >= 50)",
            busy.entries_per_s / raw.fdatasyncs_per_s
        );
        println!(
            "ratio p50_us(appenders={fewest}) / raw p50_us = {:.2} (goal <= 1.3)",
            quiet.latency_us_p50 / raw.latency_us_p50
        );
    }
    Ok(())
}

fn filesystem_name(directory: &Path) -> Result<String> {
    let stat = rustix::fs::statfs(directory)
        .with_context(|| format!("statfs of {}", directory.display()))?;
    let magic = i128::from(stat.f_type);
    Ok(FILESYSTEMS
        .iter()
        .find(|(known, _)| *known == magic)
        .map_or_else(
            || format!("filesystem {magic:#x}"),
            |(_, name)| name.to_string(),
        ))
}

struct RawResult {
    fdatasyncs_per_s: f64,
    latency_us_p50: f64,
    latency_us_p99: f64,
}

/// A file that grows by one write per fdatasync, as a WAL segment grows,
/// so that each sync also commits the new size.
struct RawDisk {
    path: PathBuf,
    file: File,
    block: Vec<u8>,
    offset: u64,
    latencies: Histogram<u64>,
    elapsed: Duration,
}

impl RawDisk {
    fn create(directory: &Path, write_bytes: usize) -> Result<RawDisk> {
        let path = directory.join("raw-fdatasync.bin");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(RawDisk {
            path,
            file,
            block: vec![0xA5; write_bytes],
            offset: 0,
            latencies: new_histogram()?,
            elapsed: Duration::ZERO,
        })
    }

    /// Appends and fdatasyncs, in a loop, for `duration`.
    fn run_for(&mut self, duration: Duration) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < duration {
            let before = Instant::now();
            self.file
                .write_all_at(&self.block, self.offset)
                .and_then(|()| self.file.sync_data())
                .with_context(|| format!("writing {}", self.path.display()))?;
            self.latencies
                .saturating_record(nanoseconds(before.elapsed()));
            self.offset += self.block.len() as u64;
        }
        self.elapsed += started.elapsed();
        Ok(())
    }

    /// The figures so far; removes the file.
    fn finish(self) -> Result<RawResult> {
        drop(self.file);
        std::fs::remove_file(&self.path)
            .with_context(|| format!("removing {}", self.path.display()))?;
        Ok(RawResult {
            fdatasyncs_per_s: self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            latency_us_p50: quantile_us(&self.latencies, 0.50),
            latency_us_p99: quantile_us(&self.latencies, 0.99),
        })
    }
}

struct WalResult {
    entries_per_s: f64,
    payload_mb_per_s: f64,
    written_mb_per_s: f64,
    fdatasyncs_per_s: f64,
    latency_us_p50: f64,
    latency_us_p99: f64,
}

/// `appenders` threads append and wait, each with one entry outstanding,
/// on a fresh WAL, during `slices.1` slices of `slices.0`; `before_slice`
/// runs before each slice, while the appenders are idle.
fn measure_wal(
    directory: &Path,
    appenders: usize,
    entry_bytes: usize,
    slices: (Duration, u32),
    mut before_slice: impl FnMut() -> Result<()>,
) -> Result<WalResult> {
    let data_directory = directory.join(format!("wal-{appenders}-appenders"));
    let options = WalOptions::new(ClusterId(1), NodeId(1));
    let wal = Wal::open(&data_directory, options.clone())
        .with_context(|| format!("opening a WAL in {}", data_directory.display()))?;
    let command = Bytes::from(vec![0x5A; entry_bytes]);
    // The next index to hand out; held while submitting, so that the log
    // receives entries in index order.
    let next_index = Mutex::new(1u64);
    let before = wal.stats();
    let mut elapsed = Duration::ZERO;
    let mut latencies = new_histogram()?;
    for _ in 0..slices.1 {
        before_slice()?;
        let (slice_elapsed, slice_latencies) =
            run_appenders(&wal, appenders, &next_index, &command, slices.0)?;
        elapsed += slice_elapsed;
        latencies
            .add(slice_latencies)
            .context("merging latency histograms")?;
    }
    let after = wal.stats();
    let entries = after.entries_submitted - before.entries_submitted;
    ensure!(
        latencies.len() == entries,
        "{entries} entries submitted but {} appends completed",
        latencies.len()
    );
    wal.close().context("closing the WAL")?;
    check_log(&data_directory, &options, entries)?;
    std::fs::remove_dir_all(&data_directory)
        .with_context(|| format!("removing {}", data_directory.display()))?;

    let seconds = elapsed.as_secs_f64();
    Ok(WalResult {
        entries_per_s: entries as f64 / seconds,
        payload_mb_per_s: (entries * entry_bytes as u64) as f64 / seconds / 1e6,
        written_mb_per_s: (after.bytes_written - before.bytes_written) as f64 / seconds / 1e6,
        fdatasyncs_per_s: (after.fdatasyncs - before.fdatasyncs) as f64 / seconds,
        latency_us_p50: quantile_us(&latencies, 0.50),
        latency_us_p99: quantile_us(&latencies, 0.99),
    })
}

/// Runs `appenders` threads for `duration`, from the moment all exist;
/// returns the wall time until the last one finished, and the latencies.
fn run_appenders(
    wal: &Wal,
    appenders: usize,
    next_index: &Mutex<u64>,
    command: &Bytes,
    duration: Duration,
) -> Result<(Duration, Histogram<u64>)> {
    let start = Barrier::new(appenders + 1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..appenders)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    append_until(wal, next_index, command, Instant::now() + duration)
                })
            })
            .collect();
        start.wait();
        let started = Instant::now();
        let mut latencies = new_histogram()?;
        for thread in threads {
            let thread_latencies = match thread.join() {
                Ok(result) => result?,
                Err(_) => bail!("an appender thread panicked"),
            };
            latencies
                .add(thread_latencies)
                .context("merging latency histograms")?;
        }
        Ok((started.elapsed(), latencies))
    })
}

/// One appender: append one entry, wait until it is durable, repeat.
fn append_until(
    wal: &Wal,
    next_index: &Mutex<u64>,
    command: &Bytes,
    deadline: Instant,
) -> Result<Histogram<u64>> {
    let mut latencies = new_histogram()?;
    while Instant::now() < deadline {
        let before = Instant::now();
        let ticket = {
            let mut next = next_index
                .lock()
                .map_err(|_| anyhow::anyhow!("another appender panicked"))?;
            let entry = Entry {
                term: Term(1),
                index: LogIndex(*next),
                payload: EntryPayload::Command(command.clone()),
            };
            let ticket = wal
                .submit_append(vec![entry].into())
                .context("submitting an entry")?;
            *next += 1;
            ticket
        };
        wal.wait(ticket).context("waiting for durability")?;
        latencies.saturating_record(nanoseconds(before.elapsed()));
    }
    Ok(latencies)
}

/// Reopens the WAL and checks that it holds `entries` entries in order.
fn check_log(data_directory: &Path, options: &WalOptions, entries: u64) -> Result<()> {
    let wal = Wal::open(data_directory, options.clone())
        .with_context(|| format!("reopening the WAL in {}", data_directory.display()))?;
    ensure!(
        wal.last_index() == LogIndex(entries),
        "the reopened WAL ends at {} instead of {entries}",
        wal.last_index()
    );
    let low = LogIndex(entries.saturating_sub(1_000).max(1));
    let tail = wal
        .entries(low, LogIndex(entries + 1))
        .context("reading the reopened WAL")?;
    for (expected, entry) in (low.0..).zip(&tail) {
        ensure!(
            entry.index == LogIndex(expected),
            "entry {expected} reads back as {}",
            entry.index
        );
    }
    wal.close().context("closing the reopened WAL")
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).context("creating a latency histogram")
}

fn nanoseconds(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn quantile_us(latencies: &Histogram<u64>, quantile: f64) -> f64 {
    latencies.value_at_quantile(quantile) as f64 / 1_000.0
}

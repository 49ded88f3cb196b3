//! The core's allocation budget: a guard against losing speed unnoticed.
//!
//! The core once lost a third of its throughput to copies and allocation
//! churn that no test noticed (entries grew 2.3 times larger, and were
//! copied for every follower). Timing is no guard in a test (machines
//! differ and drift), but what the core allocates per committed entry is
//! the same on every machine and every run: this test counts it, on a
//! seeded in-process cluster driven round by round with ticks every few
//! rounds (no clock), and fails when it grows past the budget.
//!
//! The budgets were set from the code as it was when they were written,
//! with about 20% headroom. A failure names what grew; a change that
//! lowers a figure for good should lower its budget too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sim::core_bench::Benchmark;

/// Counts what this thread allocates; every thread's allocations go to
/// the system allocator.
struct CountingAllocator;

thread_local! {
    /// (allocations, bytes) made by this thread since the counts were
    /// last taken.
    static COUNTS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn count(bytes: usize) {
    // `try_with`: a thread being torn down may still allocate.
    let _ = COUNTS.try_with(|counts| {
        let (allocations, total) = counts.get();
        counts.set((allocations + 1, total + bytes as u64));
    });
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counting beside it never allocates (a const-initialised thread local).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Takes this thread's counts and starts them again from zero.
fn take_counts() -> (u64, u64) {
    COUNTS.with(|counts| counts.replace((0, 0)))
}

/// What the cluster allocated per committed entry.
#[derive(Debug)]
struct PerEntry {
    allocations: f64,
    bytes: f64,
}

/// Runs `operations` operations of `clients` clients on 3 members after a
/// warm-up (elections and the first growth of every buffer are not
/// counted), ticking every 8 rounds, and returns what they allocated per
/// committed entry.
fn measure(clients: u32, operations: u64) -> PerEntry {
    let warm_up = operations / 4;
    let mut benchmark = Benchmark::new(3, clients, warm_up + operations, 7).expect("cluster");
    let mut counted_from = None;
    while !benchmark.done() {
        if counted_from.is_none() && benchmark.completed() >= warm_up {
            take_counts();
            counted_from = Some(benchmark.leader_commit_index());
        }
        benchmark.round().expect("round");
        if benchmark.rounds().is_multiple_of(8) {
            benchmark.tick().expect("tick");
        }
    }
    let (allocations, bytes) = take_counts();
    let committed = benchmark.leader_commit_index().0 - counted_from.expect("warmed up").0;
    PerEntry {
        allocations: allocations as f64 / committed as f64,
        bytes: bytes as f64 / committed as f64,
    }
}

/// What to look at when a budget is exceeded.
const WHERE_TO_LOOK: &str = "look for entries copied instead of shared (raft::Entries: \
    the log, AppendLog, AppendEntries and Apply hold one allocation per batch), for Entry, \
    Message or Output grown larger (beside each, a compile-time check of its size), and for buffers \
    allocated per step or per message instead of reused; `cargo run --release --bin \
    core_bench` and `perf record -g` on it show where";

fn check(clients: u32, measured: &PerEntry, allocations_budget: f64, bytes_budget: f64) {
    println!("{clients} clients: {measured:?} per committed entry");
    assert!(
        measured.allocations <= allocations_budget,
        "{clients} clients: {:.3} allocations per committed entry, over the budget of \
         {allocations_budget}: {WHERE_TO_LOOK}",
        measured.allocations
    );
    assert!(
        measured.bytes <= bytes_budget,
        "{clients} clients: {:.0} bytes allocated per committed entry, over the budget of \
         {bytes_budget}: {WHERE_TO_LOOK}",
        measured.bytes
    );
}

#[test]
fn the_core_allocates_within_its_budget_per_committed_entry() {
    // Batches of about 256 entries: two allocations per batch (its run,
    // and room for the next), and the bytes of the entries themselves.
    // Measured: 0.0079 allocations and 113 bytes per entry.
    let many = measure(256, 200_000);
    check(256, &many, 0.0095, 135.0);
    // A batch per entry: every allocation the core makes per batch shows,
    // with the growth of each member's log. Measured: 2.03 allocations
    // and 532 bytes per entry.
    let one = measure(1, 20_000);
    check(1, &one, 2.4, 640.0);
}

//! Background work yields the CPU to the work that keeps the cluster up.
//!
//! A snapshot writer walks the whole state (a few seconds of CPU for
//! millions of keys) while the event loop must send a heartbeat every
//! interval. When every member of a cluster on a busy machine wrote its
//! snapshot at once (they take them at about the same index), their event
//! loops went 300–500 ms without the CPU, followers started elections and
//! clients got "no leader" (5M keys, 3 members on 2 cores). So a background
//! thread lowers its own priority: with a nice value 10 above the node's,
//! the kernel gives it about a tenth of the time of a thread at the node's
//! when both want the CPU, and all of it when nothing else does.

/// How far above the node's own nice value a background thread runs.
const BACKGROUND_NICENESS: i32 = 10;

/// The highest nice value there is.
#[cfg(target_os = "linux")]
const LOWEST_PRIORITY: i32 = 19;

/// Lowers the calling thread's CPU priority (on Linux, where a thread has a
/// nice value of its own; elsewhere it does nothing). A failure is logged
/// and otherwise ignored: the work goes on at the usual priority.
pub(crate) fn lower_this_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        let lowered = rustix::process::getpriority_process(Some(thread)).and_then(|current| {
            let target = current
                .saturating_add(BACKGROUND_NICENESS)
                .min(LOWEST_PRIORITY);
            rustix::process::setpriority_process(Some(thread), target)
        });
        if let Err(error) = lowered {
            tracing::debug!(%error, "cannot lower a background thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = BACKGROUND_NICENESS;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_background_thread_runs_at_a_lower_priority_than_the_others() {
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = own();
        let lowered = std::thread::spawn(move || {
            lower_this_thread_priority();
            own()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + BACKGROUND_NICENESS).min(LOWEST_PRIORITY));
        // Only that thread: this one is as it was.
        assert_eq!(own(), before);
    }
}

//! The chaos harness: real `raft_client` nodes, each on a test host of its
//! own (a network namespace) where the machine allows it, under a seeded
//! nemesis that kills, pauses, isolates, splits and bridges them while
//! clients read, write and compare-and-set over the etcd v3 API, and
//! watchers on every member follow the keys. At the end every fault is
//! undone, and the harness checks that every key's history is
//! linearizable (with the simulator's checker), that the final reads see
//! every acknowledged write, that every member holds the same store, and
//! that every watcher was told every write it covered, once, in order and
//! as written.
//!
//! The simulator proves the core; this finds what it cannot see: bugs in
//! the driver, the transport, the write-ahead log on a real file system,
//! the etcd API layer and the forwarding between members.

mod checks;
mod cluster;
pub mod nemesis;
pub mod network;
pub mod report;
pub mod runner;
pub mod watch_checks;
pub mod watchers;
pub mod workload;

pub use nemesis::{Fault, FaultCounts};
pub use network::{namespaces_available, NetworkMode};
pub use report::ChaosReport;
pub use runner::{run, ChaosError, ChaosOptions};
pub use watchers::WatcherFault;

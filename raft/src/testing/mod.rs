//! Test support that other crates (the simulator, future stores) use too.
//!
//! [`run_log_store_suite`] checks every rule of [`crate::storage::LogStore`]
//! on fresh stores; [`run_log_store_reopen_suite`] checks that a durable
//! store gives everything back after being closed and reopened. Every
//! implementation runs both (the in-memory store runs the first only).
//!
//! [`OrderedMapStateMachine`] is a small [`crate::StateMachine`] for tests
//! of snapshots and of the driver.
//!
//! [`open_wal_with_records`] and [`check_recovered_log`] put arbitrary
//! bytes in a WAL segment and check what recovery makes of them.
//!
//! [`step_arbitrary_input`] feeds arbitrary peer messages to a leader and a
//! follower (the fuzz target `core_messages` and a property test use it).

mod log_store;
mod log_store_model;
mod ordered_map;
mod peer_messages;
mod wal_recovery;

pub use self::log_store::{run_log_store_reopen_suite, run_log_store_suite};
pub use self::ordered_map::{MapCommand, MapResponse, OrderedMapSnapshot, OrderedMapStateMachine};
pub use self::peer_messages::{record as peer_message_record, step_arbitrary_input, Pair, Stepped};
pub use self::wal_recovery::{check_recovered_log, open_wal_with_records};

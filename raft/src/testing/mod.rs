//! Test support that other crates (the simulator, future stores) use too.
//!
//! [`run_log_store_suite`] checks every rule of [`crate::storage::LogStore`]
//! on fresh stores; [`run_log_store_reopen_suite`] checks that a durable
//! store gives everything back after being closed and reopened. Every
//! implementation runs both (the in-memory store runs the first only).
//!
//! [`OrderedMapStateMachine`] is a small [`crate::StateMachine`] for tests
//! of snapshots and, later, of the driver.

mod log_store;
mod log_store_model;
mod ordered_map;

pub use self::log_store::{run_log_store_reopen_suite, run_log_store_suite};
pub use self::ordered_map::{MapCommand, MapResponse, OrderedMapSnapshot, OrderedMapStateMachine};

//! The command line of `raft_client`: the node (`run`), the human commands
//! and the load generator.

pub mod bench;
pub mod commands;
pub mod endpoints;
pub mod logging;
pub mod members;
pub mod run;
pub mod unary_channel;

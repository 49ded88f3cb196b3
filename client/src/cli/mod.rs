//! The command line of `raft_client`: the node (`run`), the human commands
//! the load generator, and a throwaway PKI for TLS demos and tests.

pub mod bench;
pub mod commands;
pub mod endpoints;
pub mod logging;
pub mod pki;
pub mod run;
pub mod unary_channel;

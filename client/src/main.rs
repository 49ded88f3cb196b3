//! `raft_client`: the RustyRaft node binary. The node itself (the `run`
//! subcommand serving the etcd v3 API) arrives with the node issue; today the
//! binary reports its version and the library it is built on.

use clap::Parser;

/// The RustyRaft node binary.
#[derive(Parser, Debug)]
#[command(name = "raft_client", version, about)]
struct Arguments {}

fn main() {
    let _arguments = Arguments::parse();
    println!(
        "raft_client {}: the node commands arrive with the node issue; see README.md",
        env!("CARGO_PKG_VERSION")
    );
}

//! Unit tests of the core that assert its exact outputs, each tied to the
//! rule of the Raft paper or dissertation it checks.

mod append_test;
mod election_test;
mod fixture;
mod membership_test;
mod read_index_test;
mod replication_test;
mod restore_test;
mod snapshot_test;
mod term_test;
mod transfer_test;
mod vote_test;

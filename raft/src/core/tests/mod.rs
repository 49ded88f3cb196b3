//! Unit tests of the core that assert its exact outputs, each tied to the
//! rule of the Raft paper or dissertation it checks.

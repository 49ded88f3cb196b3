//! The command line's client side: the human commands (`put`, `get`,
//! `members ...`, `transfer-leader`, ...) and the load generator. Running a
//! node is [`crate::run`]; connections are [`crate::connect`].

pub mod bench;
pub mod commands;

//! The command line's client side: the human commands (`put`, `get`,
//! `members ...`, `transfer-leader`, ...) and the load generators (`bench`,
//! and for Watch and history `watch-bench` and `history-bench`). Running a
//! node is [`crate::run`]; connections are [`crate::connect`].

pub mod bench;
pub mod commands;
pub mod history_bench;
pub mod watch_bench;
pub mod watch_streams;

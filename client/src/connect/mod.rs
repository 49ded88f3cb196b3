//! Reaching a cluster as a client: endpoints (`http://` or `https://`
//! URLs, with etcdctl's `--cacert`, `--cert` and `--key`), the tonic
//! clients of each etcd service over them, and a channel that keeps one
//! HTTP/2 connection per endpoint for unary calls under load, and the
//! operations a client runs against a cluster (`operations`: member
//! changes, leader transfer, with retries; `watch`: a watch that resumes
//! on another member when its member fails).
//!
//! Used by the command line (`crate::cli`), by the harnesses in `sim/` and
//! by the tests; nothing here runs a server (`operations` names the
//! metadata key the cluster service reads, from `crate::server`).

pub mod endpoints;
pub mod operations;
pub mod unary_channel;
pub mod watch;

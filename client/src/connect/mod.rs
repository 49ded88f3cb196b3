//! Reaching a cluster as a client: endpoints (`http://` or `https://`
//! URLs, with etcdctl's `--cacert`, `--cert` and `--key`), the tonic
//! clients of each etcd service over them, and a channel that keeps one
//! HTTP/2 connection per endpoint for unary calls under load.
//!
//! Used by the command line (`crate::cli`), by the harnesses in `sim/` and
//! by the tests; nothing here depends on the server.

pub mod endpoints;
pub mod unary_channel;

//! Tests of the store's etcd semantics.

mod model_test;
mod range_test;
mod snapshot_test;
mod store_test;
mod support;
mod txn_test;
mod validation_test;

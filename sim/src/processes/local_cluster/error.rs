//! What can stop a local cluster from running at all (a failed check is not
//! an error: it is a `verdict=FAIL` in the [`Summary`](super::Summary)).

use std::path::PathBuf;

use thiserror::Error;

/// Why a local cluster could not run.
#[derive(Debug, Error)]
pub enum LocalClusterError {
    /// A file-system or process operation failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The data directory given already holds something.
    #[error(
        "the data directory {0} is not empty; the nodes get new ports every run, so old data \
         would belong to another cluster: give an empty or missing directory"
    )]
    DataDirectoryNotEmpty(PathBuf),
    /// The options cannot work.
    #[error("{0}")]
    Options(String),
}

impl LocalClusterError {
    /// A closure that wraps an I/O error with what was being done.
    pub fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalClusterError {
        let action = action.into();
        move |source| LocalClusterError::Io { action, source }
    }
}

//! Files and directories only the node's own user may read: a data
//! directory holds every key and value of the cluster. Directories are
//! created 0700 and files 0600, as etcd creates them; a data directory that
//! others may write to gets a warning at start.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of the directories a node creates.
pub const DIRECTORY_MODE: u32 = 0o700;

/// The mode of the files a node creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` and its missing parents, each 0700.
pub fn create_private_directory_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIRECTORY_MODE)
        .create(path)
}

/// Options that create a file 0600 (when they create one).
pub fn private_open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Creates (or truncates) `path` for writing, 0600 when new.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    private_open_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Logs a warning when the directory at `path` is writable by its group or
/// by anyone (a data directory made by hand, or by an older version).
pub fn warn_if_shared(path: &Path) {
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                "the data directory is writable by other users, who could change or remove \
                 the cluster's data: chmod 700 it (nodes create theirs 700)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn what_a_node_creates_only_its_user_may_read() {
        let scratch = tempfile::tempdir().unwrap();
        let nested = scratch.path().join("a").join("b");
        create_private_directory_all(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&scratch.path().join("a")), 0o700);
        let file = nested.join("file");
        create_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
    }
}

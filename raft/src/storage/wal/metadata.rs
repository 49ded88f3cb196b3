//! The data directory: its metadata file (which cluster and node it belongs
//! to), its lock, and its initialisation.
//!
//! Layout:
//!
//! ```text
//! <data-dir>/LOCK       flock()ed while a process uses the directory
//! <data-dir>/metadata   cluster id and node id, written once, checksummed
//! <data-dir>/wal/       the write-ahead log segments
//! ```
//!
//! The metadata file is plain text, so an operator can read it:
//!
//! ```text
//! RustyRaft data directory
//! format_version = 1
//! cluster_id = 42
//! node_id = 3
//! checksum = 0x1a2b3c4d
//! ```
//!
//! The checksum is the CRC32C of the lines above it. Initialisation creates
//! `wal/` first and writes the metadata last (atomically, by rename): a
//! directory with metadata therefore always has its log directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use super::segment::{sync_directory, SegmentId};
use crate::storage::private_files::{
    create_private_directory_all, create_private_file, private_open_options, warn_if_shared,
};
use crate::storage::StorageError;
use crate::types::ClusterId;
use crate::types::NodeId;

/// The metadata format this build writes and reads.
pub const METADATA_FORMAT_VERSION: u32 = 1;

const METADATA_FILE: &str = "metadata";
const LOCK_FILE: &str = "LOCK";
pub(crate) const WAL_DIRECTORY: &str = "wal";
const TITLE: &str = "RustyRaft data directory";

/// A data directory in use by this process.
#[derive(Debug)]
pub(crate) struct DataDirectory {
    pub wal_directory: PathBuf,
    /// Holds the flock for as long as the directory is in use.
    _lock: File,
}

/// Opens `data_directory` for `cluster_id` and `node_id`, initialising it if
/// it does not exist, and locks it against other processes.
pub(crate) fn open_data_directory(
    data_directory: &Path,
    cluster_id: ClusterId,
    node_id: NodeId,
) -> Result<DataDirectory, StorageError> {
    let unusable = |source: io::Error| StorageError::DataDirectoryUnusable {
        path: data_directory.to_path_buf(),
        source,
    };
    let existed = data_directory.is_dir();
    create_private_directory_all(data_directory).map_err(unusable)?;
    warn_if_shared(data_directory);
    if !existed {
        if let Some(parent) = data_directory
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            sync_directory(parent)?;
        }
    }
    let lock = lock_directory(data_directory)?;
    probe_writable(data_directory).map_err(unusable)?;

    let metadata_path = data_directory.join(METADATA_FILE);
    let wal_directory = data_directory.join(WAL_DIRECTORY);
    match fs::read(&metadata_path) {
        Ok(bytes) => {
            let (found_cluster, found_node) = parse_metadata(&metadata_path, &bytes)?;
            if found_cluster != cluster_id {
                return Err(StorageError::WrongCluster {
                    path: data_directory.to_path_buf(),
                    expected: cluster_id,
                    found: found_cluster,
                });
            }
            if found_node != node_id {
                return Err(StorageError::WrongNode {
                    path: data_directory.to_path_buf(),
                    expected: node_id,
                    found: found_node,
                });
            }
            if !wal_directory.is_dir() {
                return Err(StorageError::Corruption {
                    path: wal_directory,
                    offset: 0,
                    reason: "the log directory is missing although the metadata says this \
                             data directory was initialised"
                        .to_string(),
                });
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if has_segments(&wal_directory)? {
                return Err(StorageError::MissingMetadata {
                    path: data_directory.to_path_buf(),
                });
            }
            create_private_directory_all(&wal_directory).map_err(|source| StorageError::Io {
                action: "create log directory",
                path: wal_directory.clone(),
                source,
            })?;
            sync_directory(data_directory)?;
            write_metadata(data_directory, cluster_id, node_id)?;
        }
        Err(source) => {
            return Err(StorageError::Io {
                action: "read metadata",
                path: metadata_path,
                source,
            })
        }
    }
    Ok(DataDirectory {
        wal_directory,
        _lock: lock,
    })
}

fn lock_directory(data_directory: &Path) -> Result<File, StorageError> {
    let path = data_directory.join(LOCK_FILE);
    let file = private_open_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StorageError::DataDirectoryUnusable {
            path: data_directory.to_path_buf(),
            source,
        })?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StorageError::Locked {
            path: data_directory.to_path_buf(),
        }),
        Err(errno) => Err(StorageError::Io {
            action: "lock",
            path,
            source: errno.into(),
        }),
    }
}

/// Fails early, with a clear error, on a directory that cannot take new
/// files (permissions, read-only file system).
fn probe_writable(data_directory: &Path) -> io::Result<()> {
    let probe = data_directory.join(format!(".write-probe-{}", std::process::id()));
    create_private_file(&probe)?;
    fs::remove_file(&probe)
}

fn has_segments(wal_directory: &Path) -> Result<bool, StorageError> {
    let listing = match fs::read_dir(wal_directory) {
        Ok(listing) => listing,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(StorageError::Io {
                action: "list",
                path: wal_directory.to_path_buf(),
                source,
            })
        }
    };
    for item in listing {
        let item = item.map_err(|source| StorageError::Io {
            action: "list",
            path: wal_directory.to_path_buf(),
            source,
        })?;
        if SegmentId::parse_file_name(&item.file_name().to_string_lossy()).is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn metadata_body(cluster_id: ClusterId, node_id: NodeId) -> String {
    format!(
        "{TITLE}\nformat_version = {METADATA_FORMAT_VERSION}\ncluster_id = {}\nnode_id = {}\n",
        cluster_id.0, node_id.0
    )
}

fn write_metadata(
    data_directory: &Path,
    cluster_id: ClusterId,
    node_id: NodeId,
) -> Result<(), StorageError> {
    let body = metadata_body(cluster_id, node_id);
    let contents = format!(
        "{body}checksum = {:#010x}\n",
        crc32c::crc32c(body.as_bytes())
    );
    let temporary = data_directory.join(format!("{METADATA_FILE}.tmp"));
    let path = data_directory.join(METADATA_FILE);
    let mut file =
        create_private_file(&temporary).map_err(StorageError::io("create", &temporary))?;
    file.write_all(contents.as_bytes())
        .map_err(StorageError::io("write", &temporary))?;
    file.sync_all()
        .map_err(StorageError::io("sync", &temporary))?;
    fs::rename(&temporary, &path).map_err(StorageError::io("rename metadata to", &path))?;
    sync_directory(data_directory)
}

fn parse_metadata(path: &Path, bytes: &[u8]) -> Result<(ClusterId, NodeId), StorageError> {
    let corrupt = |reason: String| StorageError::Corruption {
        path: path.to_path_buf(),
        offset: 0,
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not UTF-8 text".into()))?;
    let (body, checksum_line) = text
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .ok_or_else(|| corrupt("too short".into()))?;
    let body = format!("{body}\n");
    let mut fields = Vec::new();
    for line in body.lines().skip(1).chain([checksum_line]) {
        let (key, value) = line
            .split_once(" = ")
            .ok_or_else(|| corrupt(format!("malformed line {line:?}")))?;
        fields.push((key, value));
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
            .ok_or_else(|| corrupt(format!("missing field {name}")))
    };
    let stored = field("checksum")?;
    let computed = format!("{:#010x}", crc32c::crc32c(body.as_bytes()));
    if !body.starts_with(TITLE) || stored != computed {
        return Err(corrupt(format!(
            "checksum mismatch (stored {stored}, computed {computed})"
        )));
    }
    let number = |name: &str| {
        field(name)?
            .parse::<u64>()
            .map_err(|_| corrupt(format!("{name} is not a number")))
    };
    let version = number("format_version")?;
    if version != u64::from(METADATA_FORMAT_VERSION) {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: METADATA_FORMAT_VERSION,
        });
    }
    Ok((ClusterId(number("cluster_id")?), NodeId(number("node_id")?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_detects_edits() {
        let directory = tempfile::tempdir().expect("temporary directory");
        write_metadata(directory.path(), ClusterId(42), NodeId(3)).expect("write");
        let path = directory.path().join(METADATA_FILE);
        let bytes = fs::read(&path).expect("read");
        assert_eq!(
            parse_metadata(&path, &bytes).expect("parse"),
            (ClusterId(42), NodeId(3))
        );
        let edited = String::from_utf8(bytes)
            .expect("text")
            .replace("node_id = 3", "node_id = 4");
        assert!(matches!(
            parse_metadata(&path, edited.as_bytes()),
            Err(StorageError::Corruption { .. })
        ));
        assert!(parse_metadata(&path, b"").is_err());
        assert!(parse_metadata(&path, &[0xff, 0xfe, b'\n']).is_err());
    }
}

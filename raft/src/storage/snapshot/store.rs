//! The snapshot directory, `<data-dir>/snapshots/`: naming, listing,
//! installing a new snapshot and removing the ones it replaces.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::{check_trailer_shape, damaged, MAX_METADATA_BYTES, TRAILER_BYTES};
use super::reader::SnapshotReader;
use super::receiver::SnapshotReceiver;
use super::writer::SnapshotWriter;
use crate::core::snapshot::SnapshotMetadata;
use crate::storage::private_files::create_private_directory_all;
use crate::storage::wal::segment::sync_directory;
use crate::storage::StorageError;
use crate::types::{LogIndex, Term};

const SNAPSHOT_DIRECTORY: &str = "snapshots";
const SUFFIX: &str = ".snap";
const TEMPORARY_SUFFIX: &str = ".snap.tmp";

/// Makes temporary names unique within the process; the data directory's
/// lock keeps other processes out.
static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The snapshots of one node, in `<data-dir>/snapshots/`.
///
/// Each snapshot is one immutable file named `<index>-<term>.snap` (20
/// decimal digits each) in the format of [`super::format`]. New snapshots
/// are written under a temporary name and renamed into place once durable,
/// so a file with a final name is always complete; the store then removes
/// the older ones. A file open for reading (say, by a
/// [`super::SnapshotSender`]) stays readable after it is removed.
///
/// The store does not lock the data directory: open it after
/// [`crate::storage::Wal::open`], which does, and only once per process
/// (opening removes temporary files, including those of another store on
/// the same directory). It is cheap to clone, and clones may be used from
/// several threads.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    directory: PathBuf,
}

impl SnapshotStore {
    /// Opens the snapshot directory of `data_directory`, creating it if
    /// needed, and removes the temporary files an interrupted write or
    /// transfer left.
    pub fn open(data_directory: impl AsRef<Path>) -> Result<SnapshotStore, StorageError> {
        let data_directory = data_directory.as_ref();
        let directory = data_directory.join(SNAPSHOT_DIRECTORY);
        if !directory.is_dir() {
            create_private_directory_all(&directory)
                .map_err(StorageError::io("create snapshot directory", &directory))?;
            sync_directory(data_directory)?;
        }
        let mut removed = false;
        for name in list(&directory)? {
            if name.ends_with(TEMPORARY_SUFFIX) {
                let path = directory.join(&name);
                tracing::warn!(file = %path.display(),
                    "removing a snapshot file left unfinished by an interrupted write or transfer");
                fs::remove_file(&path).map_err(StorageError::io("remove", &path))?;
                removed = true;
            }
        }
        if removed {
            sync_directory(&directory)?;
        }
        Ok(SnapshotStore { directory })
    }

    /// The snapshot directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The newest snapshot, if there is one, with its header and trailer
    /// checked (its data is checked by [`SnapshotFile::verify`] or when it
    /// is read). A damaged newest snapshot is an error: an older one would
    /// not match the log, which was compacted behind the newest.
    pub fn latest(&self) -> Result<Option<SnapshotFile>, StorageError> {
        let Some(Listed { index, term, path }) = self.snapshots()?.pop() else {
            return Ok(None);
        };
        let file = SnapshotFile::open(&path)?;
        if (file.metadata.index, file.metadata.term) != (index, term) {
            return Err(damaged(
                &path,
                0,
                &format!(
                    "the header says {} of {}, the file name {index} of {term}",
                    file.metadata.index, file.metadata.term
                ),
            ));
        }
        Ok(Some(file))
    }

    /// Starts writing a snapshot that `metadata` describes.
    pub fn create(&self, metadata: SnapshotMetadata) -> Result<SnapshotWriter, StorageError> {
        let members = metadata.membership.voters.len() + metadata.membership.learners.len();
        if 24 + 8 * members > MAX_METADATA_BYTES {
            return Err(StorageError::InvalidOptions {
                reason: format!("a snapshot's metadata cannot name {members} members"),
            });
        }
        SnapshotWriter::create(self.clone(), metadata, self.temporary_path())
    }

    /// A receiver for a snapshot sent in chunks by a peer.
    pub fn receiver(&self) -> SnapshotReceiver {
        SnapshotReceiver::new(self.clone())
    }

    /// A fresh temporary file name in the directory.
    pub(super) fn temporary_path(&self) -> PathBuf {
        let number = TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.directory
            .join(format!("{}-{number}{TEMPORARY_SUFFIX}", std::process::id()))
    }

    /// The complete snapshots, oldest first.
    fn snapshots(&self) -> Result<Vec<Listed>, StorageError> {
        let mut found: Vec<Listed> = list(&self.directory)?
            .into_iter()
            .filter_map(|name| {
                let (index, term) = parse_file_name(&name)?;
                Some(Listed {
                    index,
                    term,
                    path: self.directory.join(name),
                })
            })
            .collect();
        found.sort();
        Ok(found)
    }
}

/// A complete snapshot in the directory, as its name describes it. Sorts
/// oldest first.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    index: LogIndex,
    term: Term,
    path: PathBuf,
}

/// The file name of the snapshot at `index` of `term`.
pub fn snapshot_file_name(index: LogIndex, term: Term) -> String {
    format!("{:020}-{:020}{SUFFIX}", index.0, term.0)
}

fn parse_file_name(name: &str) -> Option<(LogIndex, Term)> {
    let (index, term) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    let number = |digits: &str| {
        (digits.len() == 20 && digits.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    Some((LogIndex(number(index)?), Term(number(term)?)))
}

fn list(directory: &Path) -> Result<Vec<String>, StorageError> {
    let listing = fs::read_dir(directory).map_err(StorageError::io("list", directory))?;
    let mut names = Vec::new();
    for item in listing {
        let item = item.map_err(StorageError::io("list", directory))?;
        names.push(item.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Makes the complete, synced `temporary` file the snapshot `metadata`
/// describes: renames it, syncs the directory, then removes the older
/// snapshots.
pub(super) fn install(
    store: &SnapshotStore,
    temporary: &Path,
    metadata: &SnapshotMetadata,
) -> Result<SnapshotFile, StorageError> {
    let path = store
        .directory
        .join(snapshot_file_name(metadata.index, metadata.term));
    fs::rename(temporary, &path).map_err(StorageError::io("rename snapshot to", &path))?;
    sync_directory(&store.directory)?;
    tracing::info!(file = %path.display(), index = %metadata.index, term = %metadata.term,
        "snapshot saved");
    let mut removed = false;
    for older in store.snapshots()? {
        if (older.index, older.term) < (metadata.index, metadata.term) {
            match fs::remove_file(&older.path) {
                Ok(()) => removed = true,
                Err(error) => tracing::warn!(file = %older.path.display(), %error,
                    "cannot remove a snapshot replaced by a newer one"),
            }
        }
    }
    if removed {
        sync_directory(&store.directory)?;
    }
    SnapshotFile::open(&path)
}

/// A complete snapshot file whose header and trailer were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    path: PathBuf,
    metadata: SnapshotMetadata,
    size_bytes: u64,
}

impl SnapshotFile {
    /// Opens the snapshot at `path`, checking its header, and that its
    /// trailer is where the header and the recorded data length say. The
    /// data's checksum is not checked: see [`SnapshotFile::verify`].
    pub fn open(path: &Path) -> Result<SnapshotFile, StorageError> {
        let file = File::open(path).map_err(StorageError::io("open snapshot", path))?;
        let size_bytes = file
            .metadata()
            .map_err(StorageError::io("read the size of", path))?
            .len();
        let reader = SnapshotReader::new(&file, path)?;
        let header_bytes = reader.header_bytes();
        let metadata = reader.metadata().clone();
        let truncated = || {
            damaged(
                path,
                size_bytes,
                "the file ends before its trailer: it is truncated",
            )
        };
        let trailer_offset = size_bytes
            .checked_sub(TRAILER_BYTES as u64)
            .filter(|&offset| offset >= header_bytes)
            .ok_or_else(truncated)?;
        let mut trailer = [0; TRAILER_BYTES];
        file.read_exact_at(&mut trailer, trailer_offset)
            .map_err(StorageError::io("read snapshot", path))?;
        // The checksum needs the data: it is checked when the data is read.
        check_trailer_shape(
            path,
            &trailer,
            trailer_offset,
            trailer_offset - header_bytes,
        )?;
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            metadata,
            size_bytes,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the snapshot covers.
    pub fn metadata(&self) -> &SnapshotMetadata {
        &self.metadata
    }

    /// The size of the whole file in bytes: what a transfer sends.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// A reader of the state machine's data, verifying it as it goes.
    pub fn reader(&self) -> Result<SnapshotReader<File>, StorageError> {
        let file = File::open(&self.path).map_err(StorageError::io("open snapshot", &self.path))?;
        SnapshotReader::new(file, &self.path)
    }

    /// Reads the whole file once and checks it, in bounded memory.
    pub fn verify(&self) -> Result<(), StorageError> {
        self.reader()?.finish().map(|_| ())
    }
}

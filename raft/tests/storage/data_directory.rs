//! The data directory: initialised when missing, refused when it belongs to
//! another cluster or node, is in use, or cannot be written.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use raft::storage::{ClusterId, LogStore, StorageError, Wal, WalOptions};
use raft::{LogIndex, NodeId};

use super::support::entry;

fn options(cluster: u64, node: u64) -> WalOptions {
    WalOptions::new(ClusterId(cluster), NodeId(node))
}

#[test]
fn a_missing_data_directory_is_initialised() {
    let parent = tempfile::tempdir().expect("temporary directory");
    let data = parent.path().join("deep").join("node-3");
    let mut wal = Wal::open(&data, options(42, 3)).expect("open");
    wal.append(vec![entry(1, 1, 10)].into()).expect("append");
    drop(wal);
    let metadata = fs::read_to_string(data.join("metadata")).expect("metadata");
    assert!(metadata.contains("cluster_id = 42"), "{metadata}");
    assert!(metadata.contains("node_id = 3"), "{metadata}");
    assert!(data.join("wal").is_dir());
    let wal = Wal::open(&data, options(42, 3)).expect("reopen");
    assert_eq!(wal.last_index(), LogIndex(1));
}

#[test]
fn only_the_nodes_user_may_read_what_it_writes() {
    // A data directory holds every key and value: directories 0700 and
    // files 0600, as etcd makes them (they were 0755 and 0644).
    let parent = tempfile::tempdir().expect("temporary directory");
    let data = parent.path().join("node-1");
    let mut wal = Wal::open(&data, options(42, 1)).expect("open");
    wal.append(vec![entry(1, 1, 10)].into()).expect("append");
    let snapshots = raft::storage::SnapshotStore::open(&data).expect("snapshot store");
    let metadata = raft::SnapshotMetadata {
        index: LogIndex(1),
        term: raft::Term(1),
        membership: raft::Membership::with_voters([NodeId(1)]).into(),
    };
    let mut writer = snapshots.create(metadata).expect("snapshot");
    std::io::Write::write_all(&mut writer, b"state").expect("write");
    writer.finish().expect("finish");
    drop(wal);
    let mut seen = 0;
    let mut pending = vec![data.clone()];
    while let Some(path) = pending.pop() {
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        if path.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            pending.extend(
                fs::read_dir(&path)
                    .expect("list")
                    .map(|item| item.expect("item").path()),
            );
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        seen += 1;
    }
    assert!(
        seen >= 6,
        "the directory, wal/, snapshots/, metadata, LOCK, a segment, a snapshot"
    );
}

#[test]
fn another_clusters_directory_is_refused() {
    let data = tempfile::tempdir().expect("temporary directory");
    drop(Wal::open(data.path(), options(1, 3)).expect("open"));
    let error = Wal::open(data.path(), options(2, 3)).expect_err("another cluster");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            StorageError::WrongCluster {
                expected: ClusterId(2),
                found: ClusterId(1),
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains(&data.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("belongs to cluster c1, not c2"),
        "{message}"
    );
}

#[test]
fn another_nodes_directory_is_refused() {
    let data = tempfile::tempdir().expect("temporary directory");
    drop(Wal::open(data.path(), options(1, 3)).expect("open"));
    let error = Wal::open(data.path(), options(1, 4)).expect_err("another node");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            StorageError::WrongNode {
                expected: NodeId(4),
                found: NodeId(3),
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("belongs to node n3, not n4"), "{message}");
}

#[test]
fn a_directory_in_use_is_refused() {
    let data = tempfile::tempdir().expect("temporary directory");
    let _first = Wal::open(data.path(), options(1, 1)).expect("open");
    let error = Wal::open(data.path(), options(1, 1)).expect_err("in use");
    assert!(matches!(error, StorageError::Locked { .. }), "{error}");
}

#[test]
fn an_unusable_directory_fails_clearly() {
    let parent = tempfile::tempdir().expect("temporary directory");
    let file = parent.path().join("a-file");
    fs::write(&file, b"not a directory").expect("write");
    let error = Wal::open(file.join("data"), options(1, 1)).expect_err("under a file");
    let message = error.to_string();
    assert!(
        matches!(error, StorageError::DataDirectoryUnusable { .. }),
        "{message}"
    );
    assert!(message.contains("is not usable"), "{message}");
    assert!(message.contains("a-file/data"), "{message}");
}

#[test]
fn a_read_only_directory_fails_clearly() {
    let data = tempfile::tempdir().expect("temporary directory");
    fs::set_permissions(data.path(), fs::Permissions::from_mode(0o555)).expect("chmod");
    // Root ignores permissions: the check can only be made as another user.
    let probe = data.path().join("probe");
    if fs::write(&probe, b"").is_ok() {
        fs::remove_file(&probe).expect("remove probe");
        eprintln!("skipped: permissions are not enforced for this user (root?)");
        return;
    }
    let error = Wal::open(data.path(), options(1, 1)).expect_err("read-only");
    fs::set_permissions(data.path(), fs::Permissions::from_mode(0o755)).expect("chmod back");
    let message = error.to_string();
    assert!(
        matches!(error, StorageError::DataDirectoryUnusable { .. }),
        "{message}"
    );
    assert!(message.contains("writable"), "{message}");
}

#[test]
fn a_log_without_metadata_is_refused() {
    let data = tempfile::tempdir().expect("temporary directory");
    let mut wal = Wal::open(data.path(), options(1, 1)).expect("open");
    wal.append(vec![entry(1, 1, 10)].into()).expect("append");
    drop(wal);
    fs::remove_file(data.path().join("metadata")).expect("remove metadata");
    let error = Wal::open(data.path(), options(1, 1)).expect_err("no metadata");
    assert!(
        matches!(error, StorageError::MissingMetadata { .. }),
        "{error}"
    );
}

#[test]
fn metadata_without_a_log_is_refused() {
    let data = tempfile::tempdir().expect("temporary directory");
    drop(Wal::open(data.path(), options(1, 1)).expect("open"));
    fs::remove_dir_all(data.path().join("wal")).expect("remove wal");
    let error = Wal::open(data.path(), options(1, 1)).expect_err("no log");
    assert!(matches!(error, StorageError::Corruption { .. }), "{error}");
}

#[test]
fn invalid_options_are_refused() {
    let data = tempfile::tempdir().expect("temporary directory");
    let tiny = WalOptions {
        segment_size_bytes: 100,
        ..options(1, 1)
    };
    assert!(matches!(
        Wal::open(data.path(), tiny),
        Err(StorageError::InvalidOptions { .. })
    ));
    assert!(matches!(
        Wal::open(data.path(), options(1, 0)),
        Err(StorageError::InvalidOptions { .. })
    ));
}

//! An ordered map as a replicated state machine: a small but complete
//! [`StateMachine`], used by the snapshot tests and as an example.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::Arc;

use bytes::Bytes;

use crate::core::snapshot::SnapshotMetadata;
use crate::state_machine::{StateMachine, StateMachineSnapshot};
use crate::types::LogIndex;

/// A command for [`OrderedMapStateMachine`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapCommand {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
}

const PUT: u8 = 1;
const DELETE: u8 = 2;

impl MapCommand {
    /// The command as log entry bytes: a tag, then length-prefixed fields.
    pub fn encode(&self) -> Bytes {
        let mut bytes = Vec::new();
        match self {
            MapCommand::Put { key, value } => {
                bytes.push(PUT);
                put_field(&mut bytes, key);
                put_field(&mut bytes, value);
            }
            MapCommand::Delete { key } => {
                bytes.push(DELETE);
                put_field(&mut bytes, key);
            }
        }
        bytes.into()
    }

    /// Parses what [`MapCommand::encode`] made; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<MapCommand> {
        let (&tag, mut rest) = bytes.split_first()?;
        let command = match tag {
            PUT => MapCommand::Put {
                key: take_field(&mut rest)?,
                value: take_field(&mut rest)?,
            },
            DELETE => MapCommand::Delete {
                key: take_field(&mut rest)?,
            },
            _ => return None,
        };
        rest.is_empty().then_some(command)
    }
}

fn put_field(bytes: &mut Vec<u8>, field: &[u8]) {
    bytes.extend_from_slice(&(field.len() as u32).to_le_bytes());
    bytes.extend_from_slice(field);
}

fn take_field(bytes: &mut &[u8]) -> Option<Bytes> {
    let (length, rest) = bytes.split_first_chunk::<4>()?;
    let length = u32::from_le_bytes(*length) as usize;
    let field = rest.get(..length)?;
    *bytes = &rest[length..];
    Some(Bytes::copy_from_slice(field))
}

/// What applying a [`MapCommand`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapResponse {
    /// The command was applied; the key's value before it.
    Applied {
        /// The previous value, if the key had one.
        previous: Option<Bytes>,
    },
    /// The entry was not a [`MapCommand`]; nothing changed (on every node).
    Malformed,
}

/// A map from byte keys to byte values, changed by [`MapCommand`]s.
///
/// The map sits behind an [`Arc`]: capturing a snapshot shares it, and the
/// next command copies it if the snapshot still holds it (copy-on-write).
/// A real state machine would use its storage engine's read snapshots
/// rather than copy.
#[derive(Clone, Debug, Default)]
pub struct OrderedMapStateMachine {
    map: Arc<BTreeMap<Bytes, Bytes>>,
    applied: LogIndex,
}

impl OrderedMapStateMachine {
    /// An empty map.
    pub fn new() -> OrderedMapStateMachine {
        OrderedMapStateMachine::default()
    }

    /// The current contents.
    pub fn map(&self) -> &BTreeMap<Bytes, Bytes> {
        &self.map
    }
}

impl StateMachine for OrderedMapStateMachine {
    type Response = MapResponse;
    type Error = Infallible;
    type Snapshot = OrderedMapSnapshot;

    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Result<MapResponse, Infallible> {
        debug_assert!(index > self.applied, "commands are applied in log order");
        self.applied = index;
        let previous = match MapCommand::decode(command) {
            Some(MapCommand::Put { key, value }) => Arc::make_mut(&mut self.map).insert(key, value),
            Some(MapCommand::Delete { key }) => Arc::make_mut(&mut self.map).remove(&key),
            None => return Ok(MapResponse::Malformed),
        };
        Ok(MapResponse::Applied { previous })
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&self) -> Result<OrderedMapSnapshot, Infallible> {
        Ok(OrderedMapSnapshot {
            map: Arc::clone(&self.map),
            applied: self.applied,
        })
    }

    /// Reads `key length, key, value length, value` records up to the end
    /// into a new map, and replaces the current one only then.
    fn restore(&mut self, reader: &mut dyn Read, metadata: &SnapshotMetadata) -> io::Result<()> {
        let mut reader = BufReader::new(reader);
        let mut map = BTreeMap::new();
        while let Some(key) = read_field(&mut reader)? {
            let value = read_field(&mut reader)?.ok_or_else(cut_short)?;
            map.insert(key, value);
        }
        self.map = Arc::new(map);
        self.applied = metadata.index;
        Ok(())
    }
}

/// Reads one length-prefixed field; `None` at the end of the data.
fn read_field(reader: &mut impl Read) -> io::Result<Option<Bytes>> {
    let mut length = [0; 4];
    let mut filled = 0;
    while filled < length.len() {
        match reader.read(&mut length[filled..])? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(cut_short()),
            count => filled += count,
        }
    }
    let length = u32::from_le_bytes(length);
    // Grows as bytes arrive: a damaged length cannot allocate gigabytes.
    let mut field = Vec::new();
    reader.take(u64::from(length)).read_to_end(&mut field)?;
    if field.len() != length as usize {
        return Err(cut_short());
    }
    Ok(Some(field.into()))
}

fn cut_short() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a record is cut short")
}

/// The map as it was when captured, with the index it was at.
#[derive(Debug)]
pub struct OrderedMapSnapshot {
    map: Arc<BTreeMap<Bytes, Bytes>>,
    applied: LogIndex,
}

impl StateMachineSnapshot for OrderedMapSnapshot {
    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn write_to(&mut self, writer: &mut dyn Write) -> io::Result<()> {
        let mut writer = BufWriter::new(writer);
        for (key, value) in self.map.iter() {
            for field in [key, value] {
                writer.write_all(&(field.len() as u32).to_le_bytes())?;
                writer.write_all(field)?;
            }
        }
        writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Bytes {
        MapCommand::Put {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
        .encode()
    }

    #[test]
    fn commands_round_trip_and_garbage_is_refused() {
        let delete = MapCommand::Delete {
            key: Bytes::from_static(b"k"),
        };
        assert_eq!(MapCommand::decode(&delete.encode()), Some(delete));
        let encoded = put("key", "value");
        assert!(MapCommand::decode(&encoded).is_some());
        for length in 0..encoded.len() {
            assert_eq!(MapCommand::decode(&encoded[..length]), None);
        }
        assert_eq!(MapCommand::decode(b"\x09"), None);
    }

    #[test]
    fn a_captured_snapshot_ignores_later_commands() {
        let mut machine = OrderedMapStateMachine::new();
        machine.apply(LogIndex(1), &put("a", "1")).expect("apply");
        let mut captured = machine.snapshot().expect("snapshot");
        let answer = machine.apply(LogIndex(2), &put("a", "2")).expect("apply");
        assert_eq!(
            answer,
            MapResponse::Applied {
                previous: Some(Bytes::from_static(b"1"))
            }
        );
        assert_eq!(
            machine.apply(LogIndex(3), b"junk").expect("apply"),
            MapResponse::Malformed
        );

        let mut data = Vec::new();
        captured.write_to(&mut data).expect("write");
        let mut restored = OrderedMapStateMachine::new();
        let metadata = SnapshotMetadata {
            index: captured.applied_index(),
            ..SnapshotMetadata::default()
        };
        restored
            .restore(&mut &data[..], &metadata)
            .expect("restore");
        assert_eq!(restored.applied_index(), LogIndex(1));
        assert_eq!(
            restored.map().get(&b"a"[..]),
            Some(&Bytes::from_static(b"1"))
        );
        assert_eq!(
            machine.map().get(&b"a"[..]),
            Some(&Bytes::from_static(b"2"))
        );
    }

    #[test]
    fn restore_refuses_a_cut_record_and_keeps_the_old_state() {
        let mut machine = OrderedMapStateMachine::new();
        machine
            .apply(LogIndex(1), &put("kept", "yes"))
            .expect("apply");
        let mut source = OrderedMapStateMachine::new();
        source
            .apply(LogIndex(5), &put("new", "value"))
            .expect("apply");
        let mut data = Vec::new();
        source
            .snapshot()
            .expect("snapshot")
            .write_to(&mut data)
            .expect("write");
        data.pop();
        let metadata = SnapshotMetadata {
            index: LogIndex(5),
            ..SnapshotMetadata::default()
        };
        assert!(machine.restore(&mut &data[..], &metadata).is_err());
        assert_eq!(machine.applied_index(), LogIndex(1));
        assert!(machine.map().contains_key(&b"kept"[..]));
    }
}

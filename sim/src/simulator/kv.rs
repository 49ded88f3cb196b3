//! The simulator's replicated state machine: registers keyed by `u64`, with
//! put and compare-and-set commands encoded in the log entries.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::linearizability::{Key, KvOutput};

/// A write command carried by a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The register.
        key: Key,
        /// The new value (unique per write in a run).
        value: u64,
    },
    /// Set `key` to `new` if it holds `expected`.
    Cas {
        /// The register.
        key: Key,
        /// The value the register must hold (`None`: absent).
        expected: Option<u64>,
        /// The new value (unique per write in a run).
        new: u64,
    },
}

const PUT: u8 = 1;
const CAS: u8 = 2;

impl Command {
    /// Encodes the command for a log entry.
    pub fn encode(&self) -> Bytes {
        let mut buffer = BytesMut::with_capacity(26);
        match *self {
            Command::Put { key, value } => {
                buffer.put_u8(PUT);
                buffer.put_u64(key);
                buffer.put_u64(value);
            }
            Command::Cas { key, expected, new } => {
                buffer.put_u8(CAS);
                buffer.put_u64(key);
                buffer.put_u8(u8::from(expected.is_some()));
                buffer.put_u64(expected.unwrap_or(0));
                buffer.put_u64(new);
            }
        }
        buffer.freeze()
    }

    /// Decodes a command; `None` for bytes no simulator client wrote.
    pub fn decode(mut bytes: &[u8]) -> Option<Command> {
        if bytes.is_empty() {
            return None;
        }
        match bytes.get_u8() {
            PUT if bytes.len() == 16 => Some(Command::Put {
                key: bytes.get_u64(),
                value: bytes.get_u64(),
            }),
            CAS if bytes.len() == 25 => {
                let key = bytes.get_u64();
                let present = bytes.get_u8() == 1;
                let expected = bytes.get_u64();
                Some(Command::Cas {
                    key,
                    expected: present.then_some(expected),
                    new: bytes.get_u64(),
                })
            }
            _ => None,
        }
    }
}

/// The registers, as one node has applied them.
#[derive(Clone, Debug, Default)]
pub struct KvStore {
    registers: BTreeMap<Key, u64>,
}

impl KvStore {
    /// Applies a command and returns what the client sees.
    pub fn apply(&mut self, command: Command) -> KvOutput {
        match command {
            Command::Put { key, value } => {
                self.registers.insert(key, value);
                KvOutput::Put
            }
            Command::Cas { key, expected, new } => {
                let succeeded = self.registers.get(&key).copied() == expected;
                if succeeded {
                    self.registers.insert(key, new);
                }
                KvOutput::Cas { succeeded }
            }
        }
    }

    /// The current value of `key`.
    pub fn get(&self, key: Key) -> Option<u64> {
        self.registers.get(&key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for command in [
            Command::Put { key: 3, value: 9 },
            Command::Cas {
                key: 1,
                expected: None,
                new: 4,
            },
            Command::Cas {
                key: 1,
                expected: Some(0),
                new: 4,
            },
        ] {
            assert_eq!(Command::decode(&command.encode()), Some(command));
        }
        assert_eq!(Command::decode(b""), None);
        assert_eq!(Command::decode(b"\x01short"), None);
    }

    #[test]
    fn cas_applies_only_on_match() {
        let mut store = KvStore::default();
        let cas = Command::Cas {
            key: 1,
            expected: None,
            new: 5,
        };
        assert_eq!(store.apply(cas), KvOutput::Cas { succeeded: true });
        assert_eq!(store.apply(cas), KvOutput::Cas { succeeded: false });
        assert_eq!(store.get(1), Some(5));
    }
}

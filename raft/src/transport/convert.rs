//! Conversions between the core's messages and the wire types of
//! `proto/raft.proto`. This is the only place where the two meet: the core
//! never sees a protobuf type.

use std::collections::BTreeSet;

use bytes::Bytes;
use raft_proto::raft as wire;
use thiserror::Error;

use crate::core::message::{
    AppendEntries, AppendEntriesResponse, ConflictHint, InstallSnapshotResponse, Message,
    MessageBody, RequestVote, RequestVoteResponse,
};
use crate::core::quorum::Membership;
use crate::core::snapshot::SnapshotMetadata;
use crate::types::ClusterId;
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, Term};

/// Why a message from the wire was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// A required field is absent.
    #[error("malformed peer message: {0} is missing")]
    Missing(&'static str),
    /// An entry of a kind this version does not know.
    #[error("malformed peer message: entry {index} has unknown kind {kind}")]
    UnknownEntryKind {
        /// The entry's index.
        index: u64,
        /// The kind number received.
        kind: i32,
    },
    /// A configuration entry whose configuration does not decode.
    #[error(
        "malformed peer message: the configuration in entry {index} does not decode: {reason}"
    )]
    BadConfiguration {
        /// The entry's index.
        index: u64,
        /// Why it does not decode.
        reason: String,
    },
    /// The message belongs to another cluster.
    #[error(
        "message from node {from} belongs to cluster {received}, this node to cluster {expected}; \
         check the members and the cluster token"
    )]
    WrongCluster {
        /// The sender.
        from: u64,
        /// The cluster id in the message.
        received: ClusterId,
        /// This node's cluster id.
        expected: ClusterId,
    },
    /// The sender is not a member of this cluster.
    #[error("node {from} is not a member of this cluster (it was removed, or has not been added yet); its messages are refused")]
    UnknownSender {
        /// The sender.
        from: u64,
    },
    /// The message is addressed to another node.
    #[error("message from node {from} is addressed to node {to}, not to this node ({this})")]
    WrongReceiver {
        /// The sender.
        from: u64,
        /// The addressee in the message.
        to: u64,
        /// This node.
        this: NodeId,
    },
}

impl WireError {
    /// The kind of error, as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Missing(_) => "missing_field",
            WireError::UnknownEntryKind { .. } => "unknown_entry_kind",
            WireError::BadConfiguration { .. } => "bad_configuration",
            WireError::WrongCluster { .. } => "wrong_cluster",
            WireError::UnknownSender { .. } => "unknown_sender",
            WireError::WrongReceiver { .. } => "wrong_receiver",
        }
    }
}

fn header(cluster: ClusterId, message: &Message) -> Option<wire::Header> {
    Some(wire::Header {
        cluster_id: cluster.0,
        from: message.from.0,
        to: message.to.0,
        term: message.term.0,
    })
}

/// Encodes a log entry.
pub fn entry_to_wire(entry: &Entry) -> wire::Entry {
    let (kind, data) = match &entry.payload {
        EntryPayload::Noop => (wire::EntryKind::Noop, Default::default()),
        EntryPayload::Command(command) => (wire::EntryKind::Command, command.clone()),
        EntryPayload::Configuration(membership) => (
            wire::EntryKind::Configuration,
            prost::Message::encode_to_vec(&membership_to_wire(membership)).into(),
        ),
    };
    wire::Entry {
        index: entry.index.0,
        term: entry.term.0,
        kind: kind as i32,
        data,
    }
}

/// Decodes a log entry.
pub fn entry_from_wire(entry: wire::Entry) -> Result<Entry, WireError> {
    let payload = match wire::EntryKind::try_from(entry.kind) {
        Ok(wire::EntryKind::Noop) => EntryPayload::Noop,
        // A copy of its own: the message's entries are slices of one
        // buffer, and a state machine may keep a slice of a command
        // (StateMachine::apply_shared) long after the others are gone,
        // which would pin the whole message.
        Ok(wire::EntryKind::Command) => EntryPayload::Command(Bytes::copy_from_slice(&entry.data)),
        Ok(wire::EntryKind::Configuration) => {
            let configuration: wire::Configuration =
                prost::Message::decode(entry.data).map_err(|error| {
                    WireError::BadConfiguration {
                        index: entry.index,
                        reason: error.to_string(),
                    }
                })?;
            EntryPayload::Configuration(membership_from_wire(configuration).into())
        }
        _ => {
            return Err(WireError::UnknownEntryKind {
                index: entry.index,
                kind: entry.kind,
            })
        }
    };
    Ok(Entry {
        index: LogIndex(entry.index),
        term: Term(entry.term),
        payload,
    })
}

/// Encodes snapshot metadata (size and checksum are the file's, added by
/// the snapshot transfer).
pub fn snapshot_metadata_to_wire(metadata: &SnapshotMetadata) -> wire::SnapshotMetadata {
    wire::SnapshotMetadata {
        last_included_index: metadata.index.0,
        last_included_term: metadata.term.0,
        configuration: Some(membership_to_wire(&metadata.membership)),
        size: 0,
        checksum: 0,
    }
}

/// Decodes snapshot metadata.
pub fn snapshot_metadata_from_wire(
    metadata: wire::SnapshotMetadata,
) -> Result<SnapshotMetadata, WireError> {
    let configuration = metadata
        .configuration
        .ok_or(WireError::Missing("snapshot configuration"))?;
    Ok(SnapshotMetadata {
        index: LogIndex(metadata.last_included_index),
        term: Term(metadata.last_included_term),
        membership: membership_from_wire(configuration).into(),
    })
}

/// Encodes a cluster configuration.
pub fn membership_to_wire(membership: &Membership) -> wire::Configuration {
    wire::Configuration {
        voters: membership.voters.iter().map(|node| node.0).collect(),
        learners: membership.learners.iter().map(|node| node.0).collect(),
        addresses: membership
            .addresses
            .iter()
            .map(|(node, address)| wire::MemberAddress {
                id: node.0,
                address: address.clone(),
            })
            .collect(),
        removed: membership.removed.iter().map(|node| node.0).collect(),
    }
}

/// Decodes a cluster configuration.
pub fn membership_from_wire(configuration: wire::Configuration) -> Membership {
    let nodes = |ids: Vec<u64>| ids.into_iter().map(NodeId).collect::<BTreeSet<_>>();
    Membership {
        voters: nodes(configuration.voters),
        learners: nodes(configuration.learners),
        addresses: configuration
            .addresses
            .into_iter()
            .map(|member| (NodeId(member.id), member.address))
            .collect(),
        removed: nodes(configuration.removed),
    }
}

/// Encodes a core message for a peer stream. An `InstallSnapshot` message
/// is not sent on the stream (the snapshot transfer carries it): `None`.
pub fn message_to_wire(cluster: ClusterId, message: &Message) -> Option<wire::PeerMessage> {
    use wire::peer_message::Body;
    let header = header(cluster, message);
    let body = match &message.body {
        MessageBody::RequestVote(request) => Body::RequestVote(wire::RequestVoteRequest {
            header,
            pre_vote: request.pre_vote,
            last_log_index: request.last_log_index.0,
            last_log_term: request.last_log_term.0,
            leadership_transfer: request.leadership_transfer,
        }),
        MessageBody::RequestVoteResponse(response) => {
            Body::RequestVoteResponse(wire::RequestVoteResponse {
                header,
                pre_vote: response.pre_vote,
                vote_granted: response.granted,
            })
        }
        MessageBody::AppendEntries(append) => Body::AppendEntries(wire::AppendEntriesRequest {
            header,
            prev_log_index: append.prev_log_index.0,
            prev_log_term: append.prev_log_term.0,
            entries: append.entries.iter().map(entry_to_wire).collect(),
            leader_commit: append.leader_commit.0,
            round: append.round,
        }),
        MessageBody::AppendEntriesResponse(response) => {
            let (conflict_term, conflict_index) = match response.conflict {
                None => (0, 0),
                Some(ConflictHint::LogTooShort { last_index }) => (0, last_index.0),
                Some(ConflictHint::TermMismatch { term, first_index }) => (term.0, first_index.0),
            };
            Body::AppendEntriesResponse(wire::AppendEntriesResponse {
                header,
                success: response.success,
                match_index: response.match_index.0,
                rejected_index: response.rejected_index.0,
                conflict_term,
                conflict_index,
                last_log_index: response.last_log_index.0,
                round: response.round,
            })
        }
        MessageBody::TimeoutNow => Body::TimeoutNow(wire::TimeoutNowRequest { header }),
        MessageBody::InstallSnapshotResponse(response) => {
            Body::InstallSnapshotResponse(wire::InstallSnapshotResponse {
                header,
                last_log_index: response.last_log_index.0,
                accepted: response.accepted,
            })
        }
        MessageBody::InstallSnapshot(_) => return None,
    };
    Some(wire::PeerMessage { body: Some(body) })
}

/// Who may send to this node: its cluster and the members it knows.
pub trait Admission: Send + Sync {
    /// This node.
    fn node(&self) -> NodeId;
    /// This node's cluster.
    fn cluster(&self) -> ClusterId;
    /// Whether `node` may send messages to this node.
    fn admits(&self, node: NodeId) -> bool;
}

/// Checks a message header against this node's cluster and members and
/// returns (from, to, term).
pub fn check_header(
    header: Option<wire::Header>,
    admission: &dyn Admission,
) -> Result<(NodeId, NodeId, Term), WireError> {
    let header = header.ok_or(WireError::Missing("header"))?;
    if ClusterId(header.cluster_id) != admission.cluster() {
        return Err(WireError::WrongCluster {
            from: header.from,
            received: ClusterId(header.cluster_id),
            expected: admission.cluster(),
        });
    }
    if !admission.admits(NodeId(header.from)) {
        return Err(WireError::UnknownSender { from: header.from });
    }
    if NodeId(header.to) != admission.node() {
        return Err(WireError::WrongReceiver {
            from: header.from,
            to: header.to,
            this: admission.node(),
        });
    }
    Ok((NodeId(header.from), NodeId(header.to), Term(header.term)))
}

/// Decodes a message from a peer stream, checking its header.
pub fn message_from_wire(
    message: wire::PeerMessage,
    admission: &dyn Admission,
) -> Result<Message, WireError> {
    use wire::peer_message::Body;
    let body = message.body.ok_or(WireError::Missing("message body"))?;
    let (header, body) = match body {
        Body::RequestVote(request) => (
            request.header,
            MessageBody::RequestVote(RequestVote {
                pre_vote: request.pre_vote,
                last_log_index: LogIndex(request.last_log_index),
                last_log_term: Term(request.last_log_term),
                leadership_transfer: request.leadership_transfer,
            }),
        ),
        Body::RequestVoteResponse(response) => (
            response.header,
            MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: response.pre_vote,
                granted: response.vote_granted,
            }),
        ),
        Body::AppendEntries(append) => {
            let entries = append
                .entries
                .into_iter()
                .map(entry_from_wire)
                .collect::<Result<Vec<_>, _>>()?
                .into();
            (
                append.header,
                MessageBody::AppendEntries(AppendEntries {
                    prev_log_index: LogIndex(append.prev_log_index),
                    prev_log_term: Term(append.prev_log_term),
                    entries,
                    leader_commit: LogIndex(append.leader_commit),
                    round: append.round,
                }),
            )
        }
        Body::AppendEntriesResponse(response) => {
            // A rejection with no index rejected carries no hint: the
            // answer to an append of an earlier term, which tells its sender
            // only the current term. (Every other rejection names the
            // previous index it refused, which is never 0: every log holds
            // index 0.) Read as "log too short at 0", it was refused as a
            // malformed hint, and a deposed leader never learned the term.
            let conflict = match (response.success, response.conflict_term) {
                (true, _) => None,
                (false, 0) if response.rejected_index == 0 => None,
                (false, 0) => Some(ConflictHint::LogTooShort {
                    last_index: LogIndex(response.conflict_index),
                }),
                (false, term) => Some(ConflictHint::TermMismatch {
                    term: Term(term),
                    first_index: LogIndex(response.conflict_index),
                }),
            };
            (
                response.header,
                MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                    success: response.success,
                    match_index: LogIndex(response.match_index),
                    rejected_index: LogIndex(response.rejected_index),
                    conflict,
                    last_log_index: LogIndex(response.last_log_index),
                    round: response.round,
                }),
            )
        }
        Body::TimeoutNow(request) => (request.header, MessageBody::TimeoutNow),
        Body::InstallSnapshotResponse(response) => (
            response.header,
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                accepted: response.accepted,
                last_log_index: LogIndex(response.last_log_index),
            }),
        ),
    };
    let (from, to, term) = check_header(header, admission)?;
    Ok(Message {
        from,
        to,
        term,
        body,
    })
}

#[cfg(test)]
mod configuration_tests {
    use super::*;

    #[test]
    fn configuration_entries_cross_the_wire_intact() {
        let entry = Entry {
            index: LogIndex(7),
            term: Term(3),
            payload: EntryPayload::Configuration(
                Membership {
                    voters: [NodeId(1), NodeId(2)].into(),
                    learners: [NodeId(9)].into(),
                    addresses: [(NodeId(9), "10.0.0.9:2380".to_string())].into(),
                    removed: [NodeId(4)].into(),
                }
                .into(),
            ),
        };
        assert_eq!(entry_from_wire(entry_to_wire(&entry)).unwrap(), entry);
        let mut garbled = entry_to_wire(&entry);
        garbled.data = vec![0xff, 0xff, 0xff].into();
        assert!(matches!(
            entry_from_wire(garbled),
            Err(WireError::BadConfiguration { index: 7, .. })
        ));
    }

    #[test]
    fn a_command_from_the_wire_is_an_allocation_of_its_own() {
        let message = Bytes::from(vec![7u8; 64]);
        let wire_entry = wire::Entry {
            index: 5,
            term: 2,
            kind: wire::EntryKind::Command as i32,
            data: message.slice(10..20),
        };
        let entry = entry_from_wire(wire_entry).unwrap();
        let EntryPayload::Command(command) = &entry.payload else {
            panic!("a command");
        };
        assert_eq!(&command[..], &[7u8; 10]);
        assert!(!message.as_ptr_range().contains(&command.as_ptr()));
    }

    #[test]
    fn the_answer_to_a_stale_append_crosses_the_wire_as_it_was_sent() {
        use crate::core::message::{AppendEntriesResponse, Message, MessageBody};
        let stale_answer = Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(7),
            body: MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                success: false,
                match_index: LogIndex(0),
                rejected_index: LogIndex(0),
                conflict: None,
                last_log_index: LogIndex(40),
                round: 0,
            }),
        };
        struct Leader;
        impl Admission for Leader {
            fn node(&self) -> NodeId {
                NodeId(1)
            }
            fn cluster(&self) -> ClusterId {
                ClusterId(9)
            }
            fn admits(&self, _: NodeId) -> bool {
                true
            }
        }
        let wire = message_to_wire(ClusterId(9), &stale_answer).expect("encodable");
        let decoded = message_from_wire(wire, &Leader).expect("decodes");
        assert_eq!(decoded, stale_answer);
        // And it passes the receiver's checks (it was refused as a bad
        // conflict hint, so the deposed leader never learned the term).
        assert_eq!(crate::core::validation::validate(&decoded), Ok(()));
    }
}

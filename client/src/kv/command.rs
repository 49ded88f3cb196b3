//! Writes as Raft log commands, and what applying one answers.
//!
//! A command is one etcd write request (put, delete-range or transaction),
//! or a member publishing its client URLs, protobuf-encoded inside a
//! one-field envelope so that later kinds (lease grants and revocations,
//! compaction) can take new field numbers without breaking old log entries.

use prost::Message;
use raft_proto::etcd::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, ResponseHeader, TxnRequest, TxnResponse,
};

use super::error::KvError;
use super::header::HeaderFields;
use super::members::{validate_attributes, MemberAttributes};
use super::validation::{validate_delete_range, validate_put, validate_txn, Limits};

/// One write to the key space, as replicated through the Raft log.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A put of one key.
    Put(PutRequest),
    /// A delete of a key or range.
    DeleteRange(DeleteRangeRequest),
    /// A transaction.
    Txn(TxnRequest),
    /// A member publishing where its clients reach it (see
    /// [`crate::kv::members`]); proposed by the server, never by a client.
    Publish(MemberAttributes),
    /// Dropping the history at and before a revision.
    Compact(CompactionRequest),
}

impl Command {
    /// Checks the request's own rules (the ones the store also enforces at
    /// apply time; see [`crate::kv::validation`](super::validation)).
    pub fn validate(&self) -> Result<(), KvError> {
        match self {
            Command::Put(request) => validate_put(request),
            Command::DeleteRange(request) => validate_delete_range(request),
            Command::Txn(request) => validate_txn(request),
            Command::Publish(attributes) => Ok(validate_attributes(attributes)?),
            // Whether the revision can be compacted depends on the store.
            Command::Compact(_) => Ok(()),
        }
    }

    /// Validates the command against its own rules and this node's `limits`,
    /// and encodes it for proposal. A refused command is never proposed, so
    /// it writes nothing.
    pub fn to_proposal(self, limits: &Limits) -> Result<Vec<u8>, KvError> {
        self.check(limits)?;
        let bytes = self.into_bytes();
        limits.check_size(bytes.len())?;
        Ok(bytes)
    }

    /// Checks `bytes` that another member made with
    /// [`Command::to_proposal`] against the same rules and this node's
    /// `limits`, so that they can be proposed as they are.
    pub fn check_proposal(bytes: &[u8], limits: &Limits) -> Result<(), KvError> {
        Command::from_bytes(bytes)?.check(limits)?;
        Ok(limits.check_size(bytes.len())?)
    }

    /// The request's own rules and this node's limits on transactions.
    fn check(&self, limits: &Limits) -> Result<(), KvError> {
        self.validate()?;
        if let Command::Txn(request) = self {
            limits.check_txn(request)?;
        }
        Ok(())
    }

    /// The log entry bytes of this command (no validation).
    pub fn into_bytes(self) -> Vec<u8> {
        Envelope {
            request: Some(self.into()),
        }
        .encode_to_vec()
    }

    /// Decodes log entry bytes written by [`Command::into_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Command, KvError> {
        let envelope = Envelope::decode(bytes).map_err(|error| KvError::MalformedCommand {
            reason: error.to_string(),
        })?;
        envelope
            .request
            .map(Command::from)
            .ok_or_else(|| KvError::MalformedCommand {
                reason: "the envelope holds no request of a known kind".to_string(),
            })
    }
}

/// The wire form of a [`Command`]. Field numbers are part of the log format:
/// never reuse one.
#[derive(Clone, PartialEq, Message)]
struct Envelope {
    #[prost(oneof = "EnvelopeRequest", tags = "1, 2, 3, 4, 5")]
    request: Option<EnvelopeRequest>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum EnvelopeRequest {
    #[prost(message, tag = "1")]
    Put(PutRequest),
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeRequest),
    #[prost(message, tag = "3")]
    Txn(TxnRequest),
    #[prost(message, tag = "4")]
    Publish(MemberAttributes),
    #[prost(message, tag = "5")]
    Compact(CompactionRequest),
}

impl From<Command> for EnvelopeRequest {
    fn from(command: Command) -> Self {
        match command {
            Command::Put(request) => EnvelopeRequest::Put(request),
            Command::DeleteRange(request) => EnvelopeRequest::DeleteRange(request),
            Command::Txn(request) => EnvelopeRequest::Txn(request),
            Command::Publish(attributes) => EnvelopeRequest::Publish(attributes),
            Command::Compact(request) => EnvelopeRequest::Compact(request),
        }
    }
}

impl From<EnvelopeRequest> for Command {
    fn from(request: EnvelopeRequest) -> Self {
        match request {
            EnvelopeRequest::Put(request) => Command::Put(request),
            EnvelopeRequest::DeleteRange(request) => Command::DeleteRange(request),
            EnvelopeRequest::Txn(request) => Command::Txn(request),
            EnvelopeRequest::Publish(attributes) => Command::Publish(attributes),
            EnvelopeRequest::Compact(request) => Command::Compact(request),
        }
    }
}

/// The answer to an applied [`Command`], of the matching kind. Headers carry
/// the store revision; the node fills in the rest with
/// [`CommandResponse::fill_headers`].
#[derive(Clone, Debug, PartialEq)]
pub enum CommandResponse {
    /// Answer to [`Command::Put`].
    Put(PutResponse),
    /// Answer to [`Command::DeleteRange`].
    DeleteRange(DeleteRangeResponse),
    /// Answer to [`Command::Txn`].
    Txn(TxnResponse),
    /// Answer to [`Command::Publish`]: the header alone.
    Published(Option<ResponseHeader>),
    /// Answer to [`Command::Compact`].
    Compacted(CompactionResponse),
}

impl CommandResponse {
    /// The store revision once the command took effect.
    pub fn revision(&self) -> i64 {
        let header = match self {
            CommandResponse::Put(response) => &response.header,
            CommandResponse::DeleteRange(response) => &response.header,
            CommandResponse::Txn(response) => &response.header,
            CommandResponse::Published(header) => header,
            CommandResponse::Compacted(response) => &response.header,
        };
        header.as_ref().map_or(0, |header| header.revision)
    }

    /// Sets cluster id, member id and term in every header of the response,
    /// those nested in transaction responses included.
    pub fn fill_headers(&mut self, fields: HeaderFields) {
        match self {
            CommandResponse::Put(response) => fields.fill(&mut response.header),
            CommandResponse::DeleteRange(response) => fields.fill(&mut response.header),
            CommandResponse::Txn(response) => fields.fill_txn(response),
            CommandResponse::Published(header) => fields.fill(header),
            CommandResponse::Compacted(response) => fields.fill(&mut response.header),
        }
    }
}

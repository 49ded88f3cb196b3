//! The member list a node starts with: `1=host:port,2=host:port` (the
//! `<clients_info>` of `raft_client run`).

use std::collections::BTreeMap;

use raft::NodeId;
use thiserror::Error;

/// Why a member list cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MembersError {
    /// An item has no `=`.
    #[error("member {item:?} is not of the form id=host:port")]
    Malformed {
        /// The item as given.
        item: String,
    },
    /// An id is not a number.
    #[error("member id {id:?} is not a positive integer")]
    InvalidId {
        /// The id as given.
        id: String,
    },
    /// An id is 0.
    #[error("member id 0 is reserved; use ids from 1")]
    ReservedId,
    /// An address has no port.
    #[error("member {id}'s address {address:?} is not of the form host:port")]
    InvalidAddress {
        /// The member.
        id: u64,
        /// The address as given.
        address: String,
    },
    /// An id appears twice.
    #[error("member id {id} appears twice")]
    Duplicate {
        /// The id.
        id: u64,
    },
    /// No member is given.
    #[error("the member list is empty; give every member as id=host:port, comma-separated")]
    Empty,
}

/// Parses `1=host:port,2=host:port` (spaces around items are ignored).
pub fn parse_members(list: &str) -> Result<BTreeMap<NodeId, String>, MembersError> {
    let mut members = BTreeMap::new();
    for item in list
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| MembersError::Malformed {
                item: item.to_string(),
            })?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| MembersError::InvalidId { id: id.to_string() })?;
        if id == 0 {
            return Err(MembersError::ReservedId);
        }
        let address = address.trim();
        if address
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            return Err(MembersError::InvalidAddress {
                id,
                address: address.to_string(),
            });
        }
        if members.insert(NodeId(id), address.to_string()).is_some() {
            return Err(MembersError::Duplicate { id });
        }
    }
    if members.is_empty() {
        return Err(MembersError::Empty);
    }
    Ok(members)
}

/// The inverse of [`parse_members`].
pub fn format_members(members: &BTreeMap<NodeId, String>) -> String {
    members
        .iter()
        .map(|(id, address)| format!("{}={address}", id.get()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_round_trips() {
        let members = parse_members(" 1=127.0.0.1:2379, 2=localhost:2380,").unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[&NodeId(2)], "localhost:2380");
        assert_eq!(
            format_members(&members),
            "1=127.0.0.1:2379,2=localhost:2380"
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            parse_members("1"),
            Err(MembersError::Malformed {
                item: "1".to_string()
            })
        );
        assert_eq!(
            parse_members("x=a:1"),
            Err(MembersError::InvalidId {
                id: "x".to_string()
            })
        );
        assert_eq!(parse_members("0=a:1"), Err(MembersError::ReservedId));
        assert_eq!(
            parse_members("1=a"),
            Err(MembersError::InvalidAddress {
                id: 1,
                address: "a".to_string()
            })
        );
        assert_eq!(
            parse_members("1=a:1,1=b:2"),
            Err(MembersError::Duplicate { id: 1 })
        );
        assert_eq!(parse_members(" , "), Err(MembersError::Empty));
    }
}

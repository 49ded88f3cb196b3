//! What each member published about itself: the URLs its clients reach it
//! at (etcd's member attributes).
//!
//! A member's peer address is in the Raft configuration; its client URLs
//! are not, since a member serving peers on a port of its own
//! (`--peer-address`) is reached by clients elsewhere. So each member
//! publishes them through the log, as etcd members do when they start: a
//! [`crate::kv::Command::Publish`] that the store keeps beside the key
//! space. It changes no key and no revision, and it is left out of the
//! store's digest (etcd's `HashKV` covers the key space alone), but it
//! travels in snapshots, so every member answers `MemberList` alike.
//!
//! Only the server proposes it, and only over the forwarding stream (a peer
//! RPC) or at the leader: no client request decodes to it.

use prost::Message;

use super::error::InvalidRequest;

/// The most client URLs a member may publish.
pub const MAX_CLIENT_URLS: usize = 16;

/// The longest client URL accepted, in bytes.
pub const MAX_CLIENT_URL_BYTES: usize = 512;

/// One member's published attributes. Field numbers are part of the log
/// and snapshot formats: never reuse one.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct MemberAttributes {
    /// The member's id (never 0).
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
    /// Where its clients reach it: `http://host:port` or `https://host:port`.
    #[prost(string, repeated, tag = "2")]
    pub client_urls: Vec<String>,
}

/// Every member's attributes, as a snapshot record holds them.
#[derive(Clone, PartialEq, Eq, Message)]
pub(super) struct PublishedMembers {
    /// By increasing member id, one each.
    #[prost(message, repeated, tag = "1")]
    pub(super) members: Vec<MemberAttributes>,
}

/// The rules of a [`MemberAttributes`]: a non-zero id, and 1 to
/// [`MAX_CLIENT_URLS`] well-formed `http(s)://host:port` URLs.
pub fn validate_attributes(attributes: &MemberAttributes) -> Result<(), InvalidRequest> {
    let invalid = |reason: String| Err(InvalidRequest::InvalidMemberAttributes { reason });
    if attributes.member_id == 0 {
        return invalid("member id 0 is reserved".to_string());
    }
    let count = attributes.client_urls.len();
    if count == 0 || count > MAX_CLIENT_URLS {
        return invalid(format!(
            "{count} client URLs; a member publishes 1 to {MAX_CLIENT_URLS}"
        ));
    }
    for url in &attributes.client_urls {
        if let Err(reason) = check_client_url(url) {
            return invalid(format!("client URL {url:?}: {reason}"));
        }
    }
    Ok(())
}

/// Whether `url` is `http://host:port` or `https://host:port`, nothing
/// after the port but an optional `/`.
fn check_client_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_CLIENT_URL_BYTES {
        return Err(format!("longer than {MAX_CLIENT_URL_BYTES} bytes"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("the scheme is neither http:// nor https://")?;
    let address = rest.strip_suffix('/').unwrap_or(rest);
    let well_formed = address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(['/', ' ', '@', '?', '#'])
            && port.parse::<u16>().is_ok_and(|port| port != 0)
    });
    if !well_formed {
        return Err("not of the form http://host:port".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(member_id: u64, urls: &[&str]) -> MemberAttributes {
        MemberAttributes {
            member_id,
            client_urls: urls.iter().map(|url| url.to_string()).collect(),
        }
    }

    #[test]
    fn well_formed_attributes_pass() {
        let accepted = [
            attributes(1, &["http://127.0.0.1:2379"]),
            attributes(7, &["https://node-7.example:2379/", "http://[::1]:2379"]),
        ];
        for attributes in accepted {
            assert_eq!(validate_attributes(&attributes), Ok(()), "{attributes:?}");
        }
    }

    #[test]
    fn each_broken_rule_is_refused_with_its_reason() {
        let long = format!("http://{}:1", "h".repeat(MAX_CLIENT_URL_BYTES));
        let too_many: Vec<String> = (0..=MAX_CLIENT_URLS)
            .map(|port| format!("http://h:{}", port + 1))
            .collect();
        let refused = [
            (attributes(0, &["http://h:1"]), "member id 0"),
            (attributes(1, &[]), "0 client URLs"),
            (
                MemberAttributes {
                    member_id: 1,
                    client_urls: too_many,
                },
                "17 client URLs",
            ),
            (attributes(1, &["ftp://h:1"]), "scheme"),
            (attributes(1, &["http://h"]), "host:port"),
            (attributes(1, &["http://:1"]), "host:port"),
            (attributes(1, &["http://h:0"]), "host:port"),
            (attributes(1, &["http://h:1/path"]), "host:port"),
            (attributes(1, &["http://u@h:1"]), "host:port"),
            (attributes(1, &[long.as_str()]), "longer than"),
        ];
        for (attributes, reason) in refused {
            match validate_attributes(&attributes) {
                Err(InvalidRequest::InvalidMemberAttributes { reason: found }) => {
                    assert!(found.contains(reason), "{found:?} lacks {reason:?}")
                }
                other => panic!("{attributes:?} gave {other:?}"),
            }
        }
    }
}

//! The responses a watch stream sends, and splitting a large one into
//! fragments.

use prost::Message;
use raft_proto::etcd::etcdserverpb::{ResponseHeader, WatchResponse};
use raft_proto::etcd::mvccpb::Event;

use crate::kv::HeaderFields;

/// The watch id of a response that belongs to no watcher: the answer to a
/// progress request, for every watcher of the stream (etcd's -1).
pub const NO_WATCHER: i64 = -1;

/// A header from this member at `revision` (0 leaves it unset, as etcd
/// leaves it in a compaction notice).
pub fn header(fields: HeaderFields, revision: i64) -> Option<ResponseHeader> {
    let mut header = Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    });
    fields.fill(&mut header);
    header
}

/// A watcher's events, covering revisions up to `revision`.
pub fn events(
    fields: HeaderFields,
    watch_id: i64,
    revision: i64,
    events: Vec<Event>,
) -> WatchResponse {
    WatchResponse {
        header: header(fields, revision),
        watch_id,
        events,
        ..WatchResponse::default()
    }
}

/// `response` split so that each part stays within `max_bytes` where it
/// can: as many events per part as fit (at least one), every part but the
/// last marked `fragment`. A response within the limit, or with at most
/// one event, is sent whole (etcd's rule).
pub fn fragments(response: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if response.events.len() <= 1 || response.encoded_len() <= max_bytes {
        return vec![response];
    }
    let WatchResponse { events, .. } = &response;
    let empty = WatchResponse {
        events: Vec::new(),
        ..response.clone()
    };
    let base = empty.encoded_len();
    let mut parts = Vec::new();
    let mut part = empty.clone();
    let mut size = base;
    for event in events {
        // Each event is a length-delimited field 11 of the response.
        let length = event.encoded_len();
        let event_bytes = 1 + prost::length_delimiter_len(length) + length;
        if !part.events.is_empty() && size.saturating_add(event_bytes) > max_bytes {
            part.fragment = true;
            parts.push(std::mem::replace(&mut part, empty.clone()));
            size = base;
        }
        part.events.push(event.clone());
        size = size.saturating_add(event_bytes);
    }
    parts.push(part);
    parts
}

#[cfg(test)]
mod tests {
    use raft_proto::etcd::mvccpb::KeyValue;

    use super::*;

    fn event(value_bytes: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                value: vec![b'v'; value_bytes],
                mod_revision: 2,
                ..KeyValue::default()
            }),
            ..Event::default()
        }
    }

    fn response(events: Vec<Event>) -> WatchResponse {
        self::events(HeaderFields::default(), 7, 9, events)
    }

    #[test]
    fn a_response_within_the_limit_or_of_one_event_goes_whole() {
        let small = response(vec![event(10), event(10)]);
        assert_eq!(fragments(small.clone(), 1000), vec![small]);
        let single = response(vec![event(5000)]);
        assert_eq!(fragments(single.clone(), 1000), vec![single]);
    }

    #[test]
    fn a_large_response_splits_into_parts_within_the_limit_all_but_the_last_marked() {
        let all: Vec<Event> = (0..10).map(|_| event(300)).collect();
        let parts = fragments(response(all.clone()), 1000);
        assert!(parts.len() > 1);
        for part in &parts {
            assert!(part.encoded_len() <= 1000, "{} bytes", part.encoded_len());
            assert_eq!((part.watch_id, part.header), (7, response(vec![]).header));
        }
        let marked: Vec<bool> = parts.iter().map(|part| part.fragment).collect();
        let mut expected = vec![true; parts.len() - 1];
        expected.push(false);
        assert_eq!(marked, expected);
        let rejoined: Vec<Event> = parts.into_iter().flat_map(|part| part.events).collect();
        assert_eq!(rejoined, all);
    }
}

//! Tests of [`super::AuthorityRepair`]: etcdctl's requests get a valid
//! authority, everything else passes byte for byte.

use std::pin::Pin;
use std::task::{Context, Poll};

use loona_hpack::{Decoder, Encoder};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::*;

/// What etcdctl 3.4 sent for `etcdctl --endpoints=http://127.0.0.1:33799
/// endpoint status` on the connection it dials the member URL on (captured
/// from a socket): the preface, its SETTINGS, the ACK of ours, the request's
/// HEADERS (HPACK with Huffman-coded strings), DATA and RST_STREAM.
const ETCDCTL_STATUS: &str =
    "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a0000000400000000000000000401000000000000\
    770104000000018386459760a924882d9dcb6571afa066a925a87510ac6e48d36a3f41909d29aee30c044eae\
    05c0b86e32cbafbf5f8b1d75d0620d263d4c4d65647a8b9acac8b4c7602bb2caecff40027465864d833505b1\
    1f40899acac8b24d494f6a7f867df79b0bf6ff408d25062d495875996ee5b1063d5f03332e34000005000100\
    000001000000000000000403000000000100000008";

fn from_hex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Yields its bytes a few at a time, as a slow network would.
struct Trickle {
    bytes: Vec<u8>,
    position: usize,
    step: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let end = (self.position + self.step)
            .min(self.bytes.len())
            .min(self.position + buf.remaining());
        buf.put_slice(&self.bytes[self.position..end]);
        self.position = end;
        Poll::Ready(Ok(()))
    }
}

/// Everything the server would read, and whether the connection was
/// repaired, with the client's bytes coming `step` at a time.
async fn served(bytes: &[u8], step: usize) -> (Vec<u8>, bool) {
    let mut repair = AuthorityRepair::new(Trickle {
        bytes: bytes.to_vec(),
        position: 0,
        step,
    });
    let mut out = Vec::new();
    repair.read_to_end(&mut out).await.expect("read");
    (out, repair.is_repairing())
}

/// The frames after the preface: (type, flags, stream, payload).
fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut rest = &bytes[PREFACE.len()..];
    let mut frames = Vec::new();
    while rest.len() >= FRAME_HEADER_BYTES {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let stream = u32::from_be_bytes(rest[5..9].try_into().unwrap());
        frames.push((rest[3], rest[4], stream, rest[9..9 + length].to_vec()));
        rest = &rest[9 + length..];
    }
    assert!(rest.is_empty(), "a torn frame");
    frames
}

/// The header lists of the HEADERS frames (with their CONTINUATIONs), in
/// order, decoded with one decoder as the server would.
fn header_lists(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut decoder = Decoder::new();
    let mut lists = Vec::new();
    let mut block = Vec::new();
    for (kind, flags, _, payload) in frames(bytes) {
        match kind {
            HEADERS => {
                let start = if flags & PRIORITY != 0 { 5 } else { 0 };
                block = payload[start..].to_vec();
            }
            CONTINUATION => block.extend_from_slice(&payload),
            _ => continue,
        }
        if flags & END_HEADERS != 0 {
            lists.push(decode(&mut decoder, &block).expect("the server can decode it"));
        }
    }
    lists
}

fn authority(list: &[(Vec<u8>, Vec<u8>)]) -> String {
    let (_, value) = list
        .iter()
        .find(|(name, _)| name == b":authority")
        .expect("an authority");
    String::from_utf8(value.clone()).unwrap()
}

/// A client's request headers with `authority`.
fn request(authority: &str, path: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    .into_iter()
    .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
    .collect()
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A connection carrying each of `requests` as one HEADERS frame and a DATA
/// frame, encoded with one client encoder.
fn connection(requests: &[Vec<(Vec<u8>, Vec<u8>)>]) -> Vec<u8> {
    let mut encoder = Encoder::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    for (position, headers) in requests.iter().enumerate() {
        let stream = 1 + 2 * position as u32;
        let block = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        bytes.extend(frame(HEADERS, END_HEADERS, stream, &block));
        bytes.extend(frame(0x0, END_STREAM, stream, b"\0\0\0\0\x03\x0a\x01a"));
    }
    bytes
}

#[tokio::test]
async fn an_etcdctl_request_gets_a_valid_authority_and_nothing_else_changes() {
    let captured = from_hex(ETCDCTL_STATUS);
    for step in [1, 7, 64, 4096] {
        let (out, repairing) = served(&captured, step).await;
        assert!(repairing, "step {step}");
        let before = header_lists(&captured);
        let after = header_lists(&out);
        assert_eq!(authority(&before[0]), "http://127.0.0.1:33799");
        assert_eq!(authority(&after[0]), "127.0.0.1:33799");
        let others = |list: &[(Vec<u8>, Vec<u8>)]| -> Vec<(Vec<u8>, Vec<u8>)> {
            list.iter()
                .filter(|(name, _)| name != b":authority")
                .cloned()
                .collect()
        };
        assert_eq!(others(&after[0]), others(&before[0]));
        // Every frame but the HEADERS is as it came.
        let not_headers = |bytes: &[u8]| -> Vec<_> {
            frames(bytes)
                .into_iter()
                .filter(|frame| frame.0 != HEADERS)
                .collect()
        };
        assert_eq!(not_headers(&out), not_headers(&captured));
        assert!(http::uri::Authority::try_from(authority(&after[0])).is_ok());
    }
}

#[tokio::test]
async fn later_requests_are_repaired_with_both_tables_in_step() {
    let requests: Vec<_> = (0..40)
        .map(|number| {
            request(
                "https://10.0.0.1:2379/",
                &format!("/etcdserverpb.KV/Range{number}"),
            )
        })
        .collect();
    let bytes = connection(&requests);
    let (out, repairing) = served(&bytes, 13).await;
    assert!(repairing);
    let lists = header_lists(&out);
    assert_eq!(lists.len(), 40);
    for (number, list) in lists.iter().enumerate() {
        assert_eq!(authority(list), "10.0.0.1:2379");
        let path = list.iter().find(|(name, _)| name == b":path").unwrap();
        assert_eq!(
            path.1,
            format!("/etcdserverpb.KV/Range{number}").into_bytes()
        );
    }
}

#[tokio::test]
async fn a_valid_authority_and_other_protocols_pass_byte_for_byte() {
    let valid = connection(&[request("127.0.0.1:2379", "/a"), request("http://x", "/b")]);
    let http1 = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec();
    let torn = PREFACE[..10].to_vec();
    for bytes in [valid, http1, torn] {
        let (out, repairing) = served(&bytes, 5).await;
        assert_eq!(out, bytes);
        assert!(!repairing);
    }
}

#[tokio::test]
async fn a_padded_prioritised_block_split_over_continuations_is_repaired() {
    let mut headers = request("http://127.0.0.1:2379", "/etcdserverpb.KV/Put");
    headers.push((b"x-large".to_vec(), vec![b'v'; 40_000]));
    let block = Encoder::new().encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
    let (first, rest) = block.split_at(10_000);
    let (second, third) = rest.split_at(16_000);
    let mut payload = vec![3];
    payload.extend_from_slice(&[0, 0, 0, 0, 15]);
    payload.extend_from_slice(first);
    payload.extend_from_slice(&[0; 3]);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &payload));
    bytes.extend(frame(CONTINUATION, 0, 1, second));
    bytes.extend(frame(CONTINUATION, END_HEADERS, 1, third));
    let (out, repairing) = served(&bytes, 1000).await;
    assert!(repairing);
    let lists = header_lists(&out);
    assert_eq!(authority(&lists[0]), "127.0.0.1:2379");
    assert_eq!(lists[0].len(), headers.len());
    let out_frames = frames(&out);
    assert_eq!(
        out_frames[0].1 & (END_STREAM | PRIORITY),
        END_STREAM | PRIORITY
    );
    assert!(out_frames
        .iter()
        .all(|frame| frame.3.len() <= MAX_FRAME_BYTES));
}

#[tokio::test]
async fn a_block_larger_than_the_bound_ends_a_repaired_connection() {
    let small = request("http://127.0.0.1:2379", "/a");
    let mut large = request("http://127.0.0.1:2379", "/b");
    large.push((b"x-large".to_vec(), vec![b'v'; MAX_BLOCK_BYTES]));
    let mut encoder = Encoder::new();
    let mut bytes = PREFACE.to_vec();
    for (stream, headers) in [(1, &small), (3, &large)] {
        let block = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        for (position, chunk) in block.chunks(MAX_FRAME_BYTES).enumerate() {
            let kind = if position == 0 { HEADERS } else { CONTINUATION };
            let last = (position + 1) * MAX_FRAME_BYTES >= block.len();
            bytes.extend(frame(
                kind,
                if last { END_HEADERS } else { 0 },
                stream,
                chunk,
            ));
        }
    }
    let mut repair = AuthorityRepair::new(&bytes[..]);
    let mut out = Vec::new();
    let error = repair.read_to_end(&mut out).await.expect_err("ended");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(out.len() < 2 * MAX_BLOCK_BYTES);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_frames_never_panic_and_stay_bounded(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        url in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let first = request(if url { "http://h:1" } else { "h:1" }, "/p");
        let mut bytes = connection(&[first]);
        bytes.extend_from_slice(&body);
        let mut repair = AuthorityRepair::new(&bytes[..]);
        let mut out = Vec::new();
        let _ = runtime.block_on(repair.read_to_end(&mut out));
        prop_assert!(out.len() <= 2 * bytes.len() + 4 * MAX_FRAME_BYTES);
    }
}

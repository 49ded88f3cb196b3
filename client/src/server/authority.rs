//! Repairs the `:authority` etcdctl sends, in front of the HTTP/2 server.
//!
//! etcdctl 3.4 dials a member URL such as `http://127.0.0.1:2379` as the
//! gRPC target `passthrough:///http://127.0.0.1:2379`, so its requests
//! carry `:authority: http://127.0.0.1:2379`. That is no valid authority,
//! and the `h2` crate refuses such a request before any service sees it
//! (`RST_STREAM` with `PROTOCOL_ERROR`); etcd's Go server ignores it. So
//! `etcdctl endpoint status --cluster`, `endpoint hashkv --cluster` and any
//! `--endpoints=http(s)://...` printed nothing.
//!
//! [`AuthorityRepair`] wraps each accepted connection and reads the
//! client's side of it. It decodes the connection's first header block
//! (HPACK, RFC 7541): when its `:authority` starts with `http://` or
//! `https://`, every header block of the connection is decoded, the scheme
//! is taken off the authority, and the block is encoded again (with an
//! encoder whose dynamic table the server's decoder follows from the
//! start); otherwise the connection is passed through untouched from then
//! on, so other clients pay for one decoded header block per connection.
//! Anything that is not HTTP/2, or that does not parse, is passed through
//! for the server to judge. Memory is bounded: a header block larger than
//! [`MAX_BLOCK_BYTES`] is passed through on an undecided connection and
//! ends a repaired one.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_BYTES: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer must accept.
const MAX_FRAME_BYTES: usize = 16_384;
/// The largest header block (all its frames) this layer holds.
pub const MAX_BLOCK_BYTES: usize = 64 << 10;
/// The dynamic table size the server's decoder allows (the HTTP/2 default,
/// which tonic keeps).
const HEADER_TABLE_BYTES: usize = 4096;

/// A server-side connection whose client's `:authority` is repaired.
pub struct AuthorityRepair<IO> {
    io: IO,
    state: State,
    /// Read from the client, not yet looked at.
    input: BytesMut,
    /// Looked at, for the server to read.
    output: BytesMut,
    /// Payload bytes of the current frame to pass unchanged.
    forward: usize,
    block: Option<Block>,
    codec: Option<Box<Codec>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Preface,
    Frames,
    Passthrough,
}

/// A header block being gathered: a HEADERS frame and its CONTINUATIONs.
struct Block {
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragments: Vec<u8>,
    /// The frames as they came, for a connection that needs no repair.
    raw: Vec<u8>,
}

/// The HPACK state of a repaired connection: the client's table (decoder)
/// and the one the server's decoder follows (encoder).
struct Codec {
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl<IO> AuthorityRepair<IO> {
    /// Wraps a connection the server accepted.
    pub fn new(io: IO) -> AuthorityRepair<IO> {
        AuthorityRepair {
            io,
            state: State::Preface,
            input: BytesMut::new(),
            output: BytesMut::new(),
            forward: 0,
            block: None,
            codec: None,
        }
    }

    /// Whether the connection's authorities are being repaired.
    pub fn is_repairing(&self) -> bool {
        self.codec.is_some()
    }

    /// Moves what can be decided from `input` to `output`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::Passthrough => {
                    let rest = self.input.split();
                    self.output.unsplit(rest);
                    return Ok(());
                }
                State::Preface => {
                    let seen = self.input.len().min(PREFACE.len());
                    if self.input[..seen] != PREFACE[..seen] {
                        self.state = State::Passthrough;
                    } else if seen < PREFACE.len() {
                        return Ok(());
                    } else {
                        let preface = self.input.split_to(PREFACE.len());
                        self.output.unsplit(preface);
                        self.state = State::Frames;
                    }
                }
                State::Frames => {
                    if !self.next_frame()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Handles the next frame, or what has come of it; false when more
    /// input is needed.
    fn next_frame(&mut self) -> io::Result<bool> {
        if self.forward > 0 {
            let passed = self.forward.min(self.input.len());
            let bytes = self.input.split_to(passed);
            self.output.unsplit(bytes);
            self.forward -= passed;
            return Ok(self.forward == 0);
        }
        if self.input.len() < FRAME_HEADER_BYTES {
            return Ok(false);
        }
        let length = usize::from(self.input[0]) << 16
            | usize::from(self.input[1]) << 8
            | usize::from(self.input[2]);
        let kind = self.input[3];
        if kind != HEADERS && kind != CONTINUATION {
            let header = self.input.split_to(FRAME_HEADER_BYTES);
            self.output.unsplit(header);
            self.forward = length;
            return Ok(true);
        }
        let gathered = self.block.as_ref().map_or(0, |block| block.raw.len());
        if gathered + FRAME_HEADER_BYTES + length > MAX_BLOCK_BYTES {
            return self.give_up("a header block larger than this layer holds");
        }
        if self.input.len() < FRAME_HEADER_BYTES + length {
            return Ok(false);
        }
        let frame = self.input.split_to(FRAME_HEADER_BYTES + length);
        match self.gather(&frame) {
            Some(true) => self.finish_block().map(|()| true),
            Some(false) => Ok(true),
            None => self.give_up_with(frame, "a malformed header frame"),
        }
    }

    /// Adds a HEADERS or CONTINUATION frame to the block; whether the block
    /// is complete, or `None` when the frame does not fit the rules.
    fn gather(&mut self, frame: &[u8]) -> Option<bool> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream: [u8; 4] = frame[5..9].try_into().ok()?;
        let payload = &frame[FRAME_HEADER_BYTES..];
        if kind == CONTINUATION {
            let block = self.block.as_mut().filter(|block| block.stream == stream)?;
            block.fragments.extend_from_slice(payload);
            block.raw.extend_from_slice(frame);
            return Some(flags & END_HEADERS != 0);
        }
        if self.block.is_some() {
            return None;
        }
        let mut start = 0;
        let mut padding = 0;
        if flags & PADDED != 0 {
            padding = usize::from(*payload.first()?);
            start = 1;
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            priority = Some(payload.get(start..start + 5)?.try_into().ok()?);
            start += 5;
        }
        let end = payload.len().checked_sub(padding)?;
        let fragment = payload.get(start..end)?;
        self.block = Some(Block {
            stream,
            end_stream: flags & END_STREAM != 0,
            priority,
            fragments: fragment.to_vec(),
            raw: frame.to_vec(),
        });
        Some(flags & END_HEADERS != 0)
    }

    /// Decodes the complete block and passes it on, repaired if it must be.
    fn finish_block(&mut self) -> io::Result<()> {
        let block = self.block.take().expect("a block being gathered");
        let mut codec = match self.codec.take() {
            Some(codec) => codec,
            None => {
                let mut decoder = Decoder::new();
                decoder.set_max_allowed_table_size(HEADER_TABLE_BYTES);
                let Ok(headers) = decode(&mut decoder, &block.fragments) else {
                    return self.pass_on(block);
                };
                if !headers
                    .iter()
                    .any(|(name, value)| needs_repair(name, value))
                {
                    return self.pass_on(block);
                }
                tracing::debug!("repairing the :authority of a client that sends a URL");
                let codec = Box::new(Codec {
                    decoder,
                    encoder: Encoder::new(),
                });
                self.codec = Some(codec);
                return self.emit(&block, &headers);
            }
        };
        let decoded = decode(&mut codec.decoder, &block.fragments);
        self.codec = Some(codec);
        match decoded {
            Ok(headers) => self.emit(&block, &headers),
            Err(reason) => Err(io::Error::new(io::ErrorKind::InvalidData, reason)),
        }
    }

    /// Passes an undecided connection's first block on as it came; the
    /// rest of the connection needs no look.
    fn pass_on(&mut self, block: Block) -> io::Result<()> {
        self.output.put_slice(&block.raw);
        self.state = State::Passthrough;
        Ok(())
    }

    /// Encodes `headers`, repaired, as the block's HEADERS and CONTINUATION
    /// frames.
    fn emit(&mut self, block: &Block, headers: &HeaderList) -> io::Result<()> {
        let codec = self.codec.as_mut().expect("a repaired connection");
        let repaired: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(name, value)| (name.as_slice(), repaired_value(name, value)))
            .collect();
        let encoded = codec.encoder.encode(repaired);
        let priority_bytes = if block.priority.is_some() { 5 } else { 0 };
        let first = encoded.len().min(MAX_FRAME_BYTES - priority_bytes);
        let mut chunks =
            std::iter::once(&encoded[..first]).chain(encoded[first..].chunks(MAX_FRAME_BYTES));
        let head = chunks.next().expect("a first chunk");
        let last_is_head = encoded.len() == first;
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if last_is_head {
            flags |= END_HEADERS;
        }
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        self.put_frame_header(head.len() + priority_bytes, HEADERS, flags, block.stream);
        if let Some(priority) = block.priority {
            self.output.put_slice(&priority);
        }
        self.output.put_slice(head);
        let rest: Vec<&[u8]> = chunks.collect();
        for (position, chunk) in rest.iter().enumerate() {
            let flags = if position + 1 == rest.len() {
                END_HEADERS
            } else {
                0
            };
            self.put_frame_header(chunk.len(), CONTINUATION, flags, block.stream);
            self.output.put_slice(chunk);
        }
        Ok(())
    }

    fn put_frame_header(&mut self, length: usize, kind: u8, flags: u8, stream: [u8; 4]) {
        let length = length as u32;
        self.output.put_slice(&length.to_be_bytes()[1..]);
        self.output.put_u8(kind);
        self.output.put_u8(flags);
        self.output.put_slice(&stream);
    }

    /// On an undecided connection, steps aside (the server judges the
    /// bytes); on a repaired one, ends it.
    fn give_up(&mut self, reason: &str) -> io::Result<bool> {
        self.give_up_with(BytesMut::new(), reason)
    }

    fn give_up_with(&mut self, frame: BytesMut, reason: &str) -> io::Result<bool> {
        if self.codec.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                reason.to_string(),
            ));
        }
        if let Some(block) = self.block.take() {
            self.output.put_slice(&block.raw);
        }
        self.output.unsplit(frame);
        self.state = State::Passthrough;
        Ok(true)
    }
}

/// A decoded header list: (name, value) pairs in order.
type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes one header block into (name, value) pairs.
fn decode(decoder: &mut Decoder<'static>, block: &[u8]) -> Result<HeaderList, String> {
    let mut headers = Vec::new();
    decoder
        .decode_with_cb(block, |name, value| {
            headers.push((name.into_owned(), value.into_owned()))
        })
        .map_err(|error| format!("a header block that does not decode: {error:?}"))?;
    Ok(headers)
}

/// Whether the header is an `:authority` that is a URL.
fn needs_repair(name: &[u8], value: &[u8]) -> bool {
    name == b":authority" && scheme_length(value).is_some()
}

/// The length of an `http://` or `https://` prefix of `value`.
fn scheme_length(value: &[u8]) -> Option<usize> {
    [&b"http://"[..], &b"https://"[..]]
        .into_iter()
        .find(|scheme| {
            value.len() >= scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme)
        })
        .map(<[u8]>::len)
}

/// The value to send on: an `:authority` URL loses its scheme (and a
/// trailing `/`); anything else is unchanged.
fn repaired_value<'a>(name: &[u8], value: &'a [u8]) -> &'a [u8] {
    if name != b":authority" {
        return value;
    }
    match scheme_length(value) {
        Some(scheme) => {
            let rest = &value[scheme..];
            rest.strip_suffix(b"/").unwrap_or(rest)
        }
        None => value,
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityRepair<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let count = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..count]);
                this.output.advance(count);
                return Poll::Ready(Ok(()));
            }
            if this.state == State::Passthrough && this.input.is_empty() {
                return Pin::new(&mut this.io).poll_read(context, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            std::task::ready!(Pin::new(&mut this.io).poll_read(context, &mut read))?;
            if read.filled().is_empty() {
                // The client closed its side: what is left goes on as it is,
                // for the server to judge.
                let rest = this.input.split();
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.output.unsplit(rest);
                this.state = State::Passthrough;
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.process()?;
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(context, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(context)
    }
}

impl<IO: Connected> Connected for AuthorityRepair<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;

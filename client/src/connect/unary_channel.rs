//! A lean gRPC client for unary calls, straight on an HTTP/2 connection:
//! what the load generator uses so that it measures the server, not itself.
//!
//! tonic's client sends a request as three writes (HEADERS, then DATA, then
//! an empty DATA that ends the stream) and hands each call through a buffer
//! task; here the headers and the whole message are queued together with
//! the end of the stream, so the connection writes them at once, and calls
//! made meanwhile on the same connection share that write.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use prost::Message;
use raft::transport::tls::TlsConnect;
use thiserror::Error;
use tokio::net::TcpStream;

/// Why a call failed.
#[derive(Debug, Error)]
pub enum UnaryError {
    /// The endpoint is not `http://host:port`, nor `https://host:port`
    /// with TLS settings.
    #[error("endpoint {0:?} is not http://host:port (or https://host:port with --cacert)")]
    Endpoint(String),
    /// The TCP connection could not be made.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP/2 layer failed (connection lost, stream reset, ...).
    #[error("HTTP/2: {0}")]
    Http2(#[from] h2::Error),
    /// The server answered with an HTTP status other than 200.
    #[error("HTTP status {0}")]
    HttpStatus(StatusCode),
    /// The server answered with a gRPC status other than OK.
    #[error("gRPC status {code}: {message}")]
    Status {
        /// The `grpc-status` code.
        code: u32,
        /// The `grpc-message`, decoded.
        message: String,
    },
    /// The answer is not one well-formed gRPC message.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// One HTTP/2 connection to one endpoint; cheap to clone (clones share it).
#[derive(Clone)]
pub struct UnaryChannel {
    authority: String,
    sender: h2::client::SendRequest<Bytes>,
}

impl UnaryChannel {
    /// Connects to `endpoint` (`http://host:port`) and starts the
    /// connection's task.
    pub async fn connect(
        endpoint: &str,
        tls: Option<&TlsConnect>,
    ) -> Result<UnaryChannel, UnaryError> {
        let bad = || UnaryError::Endpoint(endpoint.to_string());
        let failed = |source| UnaryError::Connect {
            endpoint: endpoint.to_string(),
            source,
        };
        if let Some(rest) = endpoint.strip_prefix("https://") {
            let tls = tls.ok_or_else(bad)?;
            let (host, port) = rest
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
                .ok_or_else(bad)?;
            let stream = tls.connect_stream(host, port).await.map_err(failed)?;
            return UnaryChannel::start(stream, rest.to_string()).await;
        }
        let authority = endpoint
            .strip_prefix("http://")
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .ok_or_else(bad)?
            .to_string();
        let stream = TcpStream::connect(&authority).await.map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        UnaryChannel::start(stream, authority).await
    }

    /// Starts HTTP/2 on a connected `stream` and its connection's task.
    async fn start<IO>(stream: IO, authority: String) -> Result<UnaryChannel, UnaryError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = h2::client::handshake(stream).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "benchmark connection ended");
            }
        });
        Ok(UnaryChannel { authority, sender })
    }

    /// Calls `path` (`/package.Service/Method`) with `request` and decodes
    /// the answer.
    pub async fn call<Q: Message, A: Message + Default>(
        &self,
        path: &str,
        request: &Q,
    ) -> Result<A, UnaryError> {
        let length = request.encoded_len();
        let mut body = BytesMut::with_capacity(5 + length);
        body.put_u8(0); // not compressed
        body.put_u32(length as u32);
        request
            .encode(&mut body)
            .expect("the buffer has the message's length");
        let head = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}{path}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("a valid request head");
        let mut sender = self.sender.clone().ready().await?;
        let (answer, mut stream) = sender.send_request(head, false)?;
        stream.send_data(body.freeze(), true)?;
        let answer = answer.await?;
        if answer.status() != StatusCode::OK {
            return Err(UnaryError::HttpStatus(answer.status()));
        }
        // A failure may come as headers alone ("trailers-only").
        check_status(answer.headers())?;
        let mut body = answer.into_body();
        let mut received = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            received.extend_from_slice(&chunk);
        }
        match body.trailers().await? {
            Some(trailers) => check_status(&trailers)?,
            None => return Err(UnaryError::Malformed("no grpc-status".to_string())),
        }
        decode_message(&received)
    }
}

/// Fails unless the headers carry `grpc-status: 0` (or none, as the first
/// headers of a successful answer do).
fn check_status(headers: &HeaderMap) -> Result<(), UnaryError> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code = code
        .to_str()
        .ok()
        .and_then(|code| code.parse::<u32>().ok())
        .ok_or_else(|| UnaryError::Malformed(format!("grpc-status {code:?}")))?;
    if code == 0 {
        return Ok(());
    }
    // gRPC percent-encodes the message (spaces are "%20").
    let message = headers
        .get("grpc-message")
        .map(|message| {
            percent_encoding::percent_decode(message.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Err(UnaryError::Status { code, message })
}

/// Decodes the one length-prefixed, uncompressed message of an answer.
fn decode_message<A: Message + Default>(received: &[u8]) -> Result<A, UnaryError> {
    let Some((prefix, message)) = received.split_first_chunk::<5>() else {
        return Err(UnaryError::Malformed(format!(
            "{} bytes, less than a message prefix",
            received.len()
        )));
    };
    if prefix[0] != 0 {
        return Err(UnaryError::Malformed(
            "a compressed message (none was asked for)".to_string(),
        ));
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if length != message.len() {
        return Err(UnaryError::Malformed(format!(
            "prefix says {length} bytes, {} follow",
            message.len()
        )));
    }
    A::decode(message).map_err(|error| UnaryError::Malformed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_proto::etcd::etcdserverpb::PutResponse;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(message);
        framed
    }

    #[test]
    fn an_answer_is_decoded_from_its_length_prefixed_frame() {
        let answer = PutResponse {
            header: Some(Default::default()),
            prev_kv: None,
        };
        let decoded: PutResponse = decode_message(&framed(&answer.encode_to_vec())).unwrap();
        assert_eq!(decoded, answer);
    }

    #[test]
    fn a_short_truncated_or_compressed_answer_is_malformed() {
        let whole = framed(&PutResponse::default().encode_to_vec());
        let mut truncated = framed(b"\x0a\x02\x08\x01");
        truncated.pop();
        let mut compressed = whole.clone();
        compressed[0] = 1;
        for bad in [&b"\0\0"[..], &truncated, &compressed] {
            let outcome: Result<PutResponse, _> = decode_message(bad);
            assert!(
                matches!(outcome, Err(UnaryError::Malformed(_))),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn a_non_zero_grpc_status_is_an_error_with_its_message() {
        let mut headers = HeaderMap::new();
        assert!(check_status(&headers).is_ok());
        headers.insert("grpc-status", "0".parse().unwrap());
        assert!(check_status(&headers).is_ok());
        headers.insert("grpc-status", "14".parse().unwrap());
        // As a server sends it: percent-encoded.
        headers.insert("grpc-message", "etcdserver:%20no%20leader".parse().unwrap());
        match check_status(&headers) {
            Err(UnaryError::Status { code, message }) => {
                assert_eq!((code, message.as_str()), (14, "etcdserver: no leader"))
            }
            other => panic!("{other:?}"),
        }
        headers.insert("grpc-status", "x".parse().unwrap());
        assert!(matches!(
            check_status(&headers),
            Err(UnaryError::Malformed(_))
        ));
    }
}

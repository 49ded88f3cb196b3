//! Outgoing connections over TLS, for tonic channels: a connector that
//! dials, then handshakes with the client configuration in force at that
//! moment (rotated files are picked up at the next connection).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use super::settings::Reloading;

/// Dials `host:port` of a URI and speaks TLS to it (`https://` or
/// `http://` alike: the channel never sees the difference).
#[derive(Clone, Debug)]
pub struct TlsConnect {
    config: Arc<Reloading<ClientConfig>>,
    timeout: Duration,
}

impl TlsConnect {
    /// A connector with the client configuration `config`, giving up on a
    /// connection and handshake that take longer than `timeout`.
    pub fn new(config: Arc<Reloading<ClientConfig>>, timeout: Duration) -> TlsConnect {
        TlsConnect { config, timeout }
    }

    /// A TCP connection to `host:port` (Nagle's algorithm off) after its
    /// TLS handshake, checking the server's certificate for `host`.
    pub async fn connect_stream(
        &self,
        host: &str,
        port: u16,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = ServerName::try_from(host.clone()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is no host name"),
            )
        })?;
        let config = self.config.current();
        let connect = async {
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            TlsConnector::from(config).connect(name, stream).await
        };
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(stream) => stream,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "connecting to {host}:{port} took longer than {:?}",
                    self.timeout
                ),
            )),
        }
    }

    /// A lazily connected channel to `endpoint` over TLS.
    pub fn channel_lazy(&self, endpoint: Endpoint) -> Channel {
        endpoint.connect_with_connector_lazy(self.clone())
    }

    /// A channel to `endpoint` over TLS, connected now.
    pub async fn channel(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        endpoint.connect_with_connector(self.clone()).await
    }
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<TlsStream<TcpStream>>, std::io::Error>> + Send>>;

impl tower_service::Service<Uri> for TlsConnect {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connect = self.clone();
        Box::pin(async move {
            let invalid = |reason: &str| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("cannot connect to {uri}: {reason}"),
                )
            };
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            connect.connect_stream(host, port).await.map(TokioIo::new)
        })
    }
}

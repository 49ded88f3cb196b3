//! Incoming connections, plain or TLS, and the check that a peer RPC came
//! over a connection whose certificate chains to the peer CA.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::server::danger::ClientCertVerifier;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::{Request, Status};

use super::settings::Reloading;

/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is at the other end of an accepted connection; tonic puts it in the
/// extensions of every request that arrives on it.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    /// The remote address.
    pub remote: Option<SocketAddr>,
    /// The certificate chain the client presented (TLS only).
    pub certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// An accepted connection.
pub enum ServerStream {
    /// Plaintext.
    Plain(TcpStream),
    /// After a completed TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Accepts the connections of `listener` with Nagle's algorithm off; with
/// `tls`, hands each on once its handshake completes (handshakes run
/// concurrently, each within [`HANDSHAKE_TIMEOUT`]). A failed handshake
/// (plaintext to a TLS port, an unknown CA, an expired certificate, ...) is
/// dropped and logged with its reason, at most once a second.
pub fn accept(
    listener: TcpListener,
    tls: Option<Arc<Reloading<ServerConfig>>>,
) -> ReceiverStream<io::Result<ServerStream>> {
    let (accepted, stream) = mpsc::channel(64);
    tokio::spawn(async move {
        let warned = Arc::new(Mutex::new(None::<Instant>));
        loop {
            let connection = tokio::select! {
                connection = listener.accept() => connection,
                _ = accepted.closed() => return,
            };
            let connection = match connection {
                Ok((connection, _)) => connection,
                Err(error) => {
                    // Out of file descriptors, say: wait, then go on.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(error) = connection.set_nodelay(true) {
                tracing::warn!(%error, "cannot turn off Nagle's algorithm on a connection");
            }
            let Some(tls) = &tls else {
                if accepted
                    .send(Ok(ServerStream::Plain(connection)))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            };
            let acceptor = TlsAcceptor::from(tls.current());
            let accepted = accepted.clone();
            let warned = warned.clone();
            tokio::spawn(async move {
                let remote = connection.peer_addr().ok();
                let reason = match tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    acceptor.accept(connection),
                )
                .await
                {
                    Ok(Ok(stream)) => {
                        let _ = accepted.send(Ok(ServerStream::Tls(Box::new(stream)))).await;
                        return;
                    }
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                };
                let mut warned = warned
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    *warned = Some(Instant::now());
                    tracing::warn!(?remote, %reason, "refused a TLS connection at the handshake");
                } else {
                    tracing::debug!(?remote, %reason, "refused a TLS connection at the handshake");
                }
            });
        }
    });
    ReceiverStream::new(stream)
}

impl Connected for ServerStream {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        match self {
            ServerStream::Plain(stream) => PeerIdentity {
                remote: stream.peer_addr().ok(),
                certificates: None,
            },
            ServerStream::Tls(stream) => {
                let (tcp, session) = stream.get_ref();
                PeerIdentity {
                    remote: tcp.peer_addr().ok(),
                    certificates: session.peer_certificates().map(|chain| {
                        Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect())
                    }),
                }
            }
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_read(context, buf),
            ServerStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_write(context, buf),
            ServerStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_write_vectored(context, bufs),
            ServerStream::Tls(stream) => {
                Pin::new(stream.as_mut()).poll_write_vectored(context, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerStream::Plain(stream) => stream.is_write_vectored(),
            ServerStream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_flush(context),
            ServerStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            ServerStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}

/// Refuses a request unless its connection presented a certificate that
/// chains to the peer CA: for every peer RPC of a cluster with peer TLS,
/// before anything of the request is decoded (a tonic interceptor).
#[derive(Clone, Debug)]
pub struct RequirePeerCertificate {
    verifier: Arc<Reloading<Arc<dyn ClientCertVerifier>>>,
}

impl RequirePeerCertificate {
    /// Checks against what `verifier` trusts.
    pub fn new(verifier: Arc<Reloading<Arc<dyn ClientCertVerifier>>>) -> RequirePeerCertificate {
        RequirePeerCertificate { verifier }
    }

    /// Whether `identity` may make peer RPCs.
    pub fn check(&self, identity: Option<&PeerIdentity>) -> Result<(), Status> {
        let chain = identity
            .and_then(|identity| identity.certificates.as_ref())
            .filter(|chain| !chain.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "a peer RPC needs a client certificate from the peer CA (--peer-trusted-ca-file)",
                )
            })?;
        let (leaf, intermediates) = chain.split_first().expect("a non-empty chain");
        self.verifier
            .current()
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|error| {
                Status::permission_denied(format!(
                    "a peer RPC with a certificate the peer CA does not vouch for: {error}"
                ))
            })
    }
}

impl tonic::service::Interceptor for RequirePeerCertificate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request.extensions().get::<PeerIdentity>())?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustls_pki_types::ServerName;
    use tokio_stream::StreamExt;

    use super::*;
    use crate::transport::tls::settings::{client_config, server_config, Identity};

    /// A CA in `directory` and a certificate of it for 127.0.0.1 named
    /// `name`: (CA file, identity).
    fn pki(directory: &Path, name: &str) -> (std::path::PathBuf, Identity) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            "127.0.0.1".parse().expect("address"),
        ));
        let certificate = params.signed_by(&key, &issuer).expect("certificate");
        let ca_path = directory.join(format!("{name}-ca.crt"));
        std::fs::write(&ca_path, ca.pem()).expect("write");
        let identity = Identity {
            certificate: directory.join("server.crt"),
            key: directory.join("server.key"),
        };
        std::fs::write(&identity.certificate, certificate.pem()).expect("write");
        std::fs::write(&identity.key, key.serialize_pem()).expect("write");
        (ca_path, identity)
    }

    /// The certificate the server at `address` presents to a client that
    /// trusts `ca`, or why the handshake failed.
    async fn presented(address: SocketAddr, ca: &Path) -> Result<Vec<u8>, String> {
        let config = client_config(None, &[ca.to_path_buf()]).map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").expect("a name");
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| e.to_string())?;
        let chain = tls.get_ref().1.peer_certificates().expect("a chain");
        Ok(chain[0].to_vec())
    }

    #[tokio::test]
    async fn a_rotated_certificate_is_presented_from_the_next_handshake_on() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let (first_ca, identity) = pki(directory.path(), "first");
        let watched = vec![identity.certificate.clone(), identity.key.clone()];
        let build_identity = identity.clone();
        let config = Arc::new(
            Reloading::new(watched, move || server_config(&build_identity, &[], false))
                .expect("server TLS"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut accepted = accept(listener, Some(config));
        tokio::spawn(async move { while accepted.next().await.is_some() {} });

        let before = presented(address, &first_ca)
            .await
            .expect("the first certificate");
        // New files in place, as a certificate manager writes them.
        let (second_ca, _) = pki(directory.path(), "second");
        let after = presented(address, &second_ca)
            .await
            .expect("the rotated certificate");
        assert_ne!(before, after);
        let stale = presented(address, &first_ca).await;
        assert!(stale.is_err(), "the old CA no longer vouches: {stale:?}");
    }

    #[tokio::test]
    async fn plaintext_to_a_tls_port_is_dropped_at_the_handshake() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let directory = tempfile::tempdir().expect("temporary directory");
        let (_, identity) = pki(directory.path(), "only");
        let config = Arc::new(
            Reloading::new(vec![], move || server_config(&identity, &[], false))
                .expect("server TLS"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut accepted = accept(listener, Some(config));
        let mut plain = TcpStream::connect(address).await.expect("connect");
        plain
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer).await;
        // Closed without a connection reaching the server.
        let next = tokio::time::timeout(Duration::from_millis(200), accepted.next()).await;
        assert!(next.is_err(), "nothing was handed to the server");
    }
}

//! TLS for the peer transport and for servers built on it (rustls with
//! ring; no OpenSSL).
//!
//! - [`settings`]: identities and trust from PEM files ([`Identity`],
//!   [`server_config`], [`client_config`], [`client_verifier`]), re-read
//!   when the files change ([`Reloading`]): certificates rotate without a
//!   restart, at the next handshake.
//! - [`accept`]: a server's connections, plain or after a TLS handshake
//!   ([`accept::accept`]), each telling requests who is at the other end
//!   ([`PeerIdentity`]); and [`RequirePeerCertificate`], the interceptor
//!   that refuses a peer RPC whose connection presented no certificate of
//!   the peer CA.
//! - [`connect`]: outgoing connections for tonic channels ([`TlsConnect`]).

pub mod accept;
pub mod connect;
pub mod settings;

pub use self::accept::{PeerIdentity, RequirePeerCertificate, ServerStream};
pub use self::connect::TlsConnect;
pub use self::settings::{
    client_config, client_verifier, server_config, Identity, Reloading, TlsError,
};

//! TLS identities and trust read from PEM files, and re-read when the files
//! change, so certificates rotate without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM item.
    #[error("{what} {}: {reason}", path.display())]
    File {
        /// What the file is for ("certificate", "key", "trusted CA").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The files read, but do not make a working configuration (a key that
    /// does not match its certificate, say).
    #[error("TLS configuration from {certificate}: {reason}")]
    Configuration {
        /// The certificate file of the identity.
        certificate: String,
        /// What rustls said.
        reason: String,
    },
}

/// A certificate and its private key, PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The certificate chain, leaf first.
    pub certificate: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The crypto this crate uses: ring. (rustls now marks it deprecated
/// because ring has no post-quantum key exchange; the alternative,
/// aws-lc-rs, is a large C and assembly build that the Bazel build would
/// need a toolchain for. To be revisited with that.)
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The certificates of a PEM file; at least one.
pub fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(what, path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(what, path, error))?;
    if certificates.is_empty() {
        return Err(file_error(what, path, "it holds no PEM certificate"));
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| file_error("key", path, error))
}

/// The trusted roots of the CA files.
pub fn read_roots(paths: &[PathBuf]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        for certificate in read_certificates("trusted CA", path)? {
            roots
                .add(certificate)
                .map_err(|error| file_error("trusted CA", path, error))?;
        }
    }
    Ok(Arc::new(roots))
}

fn configuration_error(identity: &Identity, reason: impl ToString) -> TlsError {
    TlsError::Configuration {
        certificate: identity.certificate.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A verifier of client certificates chaining to the CAs of `roots`:
/// required, or only checked when one is presented.
pub fn client_verifier(
    roots: &[PathBuf],
    required: bool,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let builder = WebPkiClientVerifier::builder_with_provider(read_roots(roots)?, provider());
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|error| TlsError::Configuration {
        certificate: format!("{roots:?}"),
        reason: error.to_string(),
    })
}

/// A server configuration: `identity`, and client certificates checked
/// against `client_roots` (none: no client certificates asked for).
pub fn server_config(
    identity: &Identity,
    client_roots: &[PathBuf],
    require_client_certificate: bool,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| configuration_error(identity, error))?;
    let builder = if client_roots.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder
            .with_client_cert_verifier(client_verifier(client_roots, require_client_certificate)?)
    };
    let certificates = read_certificates("certificate", &identity.certificate)?;
    let key = read_key(&identity.key)?;
    let mut config = builder
        .with_single_cert(certificates, key)
        .map_err(|error| configuration_error(identity, error))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A client configuration: servers checked against `roots`, presenting
/// `identity` when there is one.
pub fn client_config(
    identity: Option<&Identity>,
    roots: &[PathBuf],
) -> Result<ClientConfig, TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(read_roots(roots)?, provider())
        .build()
        .map_err(|error| TlsError::Configuration {
            certificate: format!("{roots:?}"),
            reason: error.to_string(),
        })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Configuration {
            certificate: String::new(),
            reason: error.to_string(),
        })?
        .with_webpki_verifier(verifier);
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(
                read_certificates("certificate", &identity.certificate)?,
                read_key(&identity.key)?,
            )
            .map_err(|error| configuration_error(identity, error))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// What a file looked like when it was read: changed when either differs.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// A value built from files, built again when one of them changes (checked
/// at each use: a few `stat` calls per handshake). A rebuild that fails
/// keeps the value in use and is logged once per change.
pub struct Reloading<T> {
    paths: Vec<PathBuf>,
    build: Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>,
    state: Mutex<(Vec<Stamp>, Arc<T>)>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Reloading")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl<T> Reloading<T> {
    /// Builds the value once (an error here is the caller's to report) and
    /// watches `paths`.
    pub fn new(
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, TlsError> {
        let stamps = paths.iter().map(|path| stamp(path)).collect();
        let value = Arc::new(build()?);
        Ok(Reloading {
            paths,
            build: Box::new(build),
            state: Mutex::new((stamps, value)),
        })
    }

    /// The value, rebuilt first if a file changed since it was built.
    pub fn current(&self) -> Arc<T> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stamps: Vec<Stamp> = self.paths.iter().map(|path| stamp(path)).collect();
        if stamps != state.0 {
            state.0 = stamps;
            match (self.build)() {
                Ok(value) => {
                    tracing::info!(files = ?self.paths, "TLS files changed: re-read");
                    state.1 = Arc::new(value);
                }
                Err(error) => tracing::error!(%error,
                    "TLS files changed but cannot be used; the previous ones stay in use"),
            }
        }
        state.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `name` and its key, as PEM files in
    /// `directory`.
    fn write_identity(directory: &Path, name: &str) -> Identity {
        let key = rcgen::KeyPair::generate().expect("key");
        let certificate = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let identity = Identity {
            certificate: directory.join("node.crt"),
            key: directory.join("node.key"),
        };
        std::fs::write(&identity.certificate, certificate.pem()).expect("write");
        std::fs::write(&identity.key, key.serialize_pem()).expect("write");
        identity
    }

    /// The DER of the certificate in `identity`'s file now.
    fn certificate_now(identity: &Identity) -> Vec<u8> {
        read_certificates("certificate", &identity.certificate).expect("read")[0].to_vec()
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_good() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let identity = write_identity(directory.path(), "first.example");
        server_config(&identity, &[], false).expect("a working identity");
        let first = certificate_now(&identity);
        let watched = vec![identity.certificate.clone(), identity.key.clone()];
        let built = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = built.clone();
        let reloading_identity = identity.clone();
        let reloading = Reloading::new(watched, move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            read_certificates("certificate", &reloading_identity.certificate)
        })
        .expect("first build");
        assert_eq!(reloading.current()[0].to_vec(), first);
        assert_eq!(
            built.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "not rebuilt unchanged"
        );

        // Rotated: the next use sees the new certificate.
        let rotated = write_identity(directory.path(), "second.example");
        let second = certificate_now(&rotated);
        assert_ne!(first, second);
        assert_eq!(reloading.current()[0].to_vec(), second);

        // Broken: the last good one stays in use.
        std::fs::write(&identity.certificate, "not a certificate").expect("write");
        assert_eq!(reloading.current()[0].to_vec(), second);
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let first = tempfile::tempdir().expect("temporary directory");
        let second = tempfile::tempdir().expect("temporary directory");
        let one = write_identity(first.path(), "one.example");
        let other = write_identity(second.path(), "other.example");
        let mismatched = Identity {
            certificate: one.certificate.clone(),
            key: other.key.clone(),
        };
        let error = server_config(&mismatched, &[], false).expect_err("mismatched key");
        assert!(matches!(error, TlsError::Configuration { .. }), "{error}");
        let error = server_config(
            &Identity {
                certificate: first.path().join("missing.crt"),
                key: one.key.clone(),
            },
            &[],
            false,
        )
        .expect_err("missing file");
        assert!(error.to_string().contains("missing.crt"), "{error}");
    }
}

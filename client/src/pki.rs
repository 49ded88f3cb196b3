//! A throwaway certificate authority, for a demo or a test cluster with
//! mutual TLS: a CA, one certificate every member and client may use
//! (server and client authentication, for 127.0.0.1 and `localhost`), and,
//! to show what gets refused, a certificate of another CA and an expired
//! one. Never for production: the keys sit unencrypted in one folder.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use raft::transport::tls::Identity;

use crate::connect::endpoints::ClientTlsFiles;

/// The PEM files of a throwaway PKI.
#[derive(Clone, Debug)]
pub struct ThrowawayPki {
    /// The CA's certificate: the trusted CA of clients and peers.
    pub ca: PathBuf,
    /// A certificate of that CA for members and clients alike.
    pub member: Identity,
    /// A certificate of another CA, which the cluster must refuse.
    pub stranger: Identity,
    /// A certificate of the right CA that expired in 2021.
    pub expired: Identity,
}

/// Why the PKI could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a throwaway PKI in {directory}: {reason}")]
pub struct PkiError {
    directory: String,
    reason: String,
}

impl ThrowawayPki {
    /// Writes a new PKI into `directory` (created if needed).
    pub fn create(directory: &Path) -> Result<ThrowawayPki, PkiError> {
        ThrowawayPki::create_for(directory, &[])
    }

    /// [`ThrowawayPki::create`], its certificates also good for
    /// `addresses` (members on other hosts than 127.0.0.1).
    pub fn create_for(directory: &Path, addresses: &[IpAddr]) -> Result<ThrowawayPki, PkiError> {
        let failure = |reason: String| PkiError {
            directory: directory.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(directory).map_err(|error| failure(error.to_string()))?;
        let write = |name: &str, text: &str| -> Result<PathBuf, PkiError> {
            let path = directory.join(name);
            std::fs::write(&path, text).map_err(|error| failure(error.to_string()))?;
            Ok(path)
        };
        let (ca, ca_pem) =
            authority("RustyRaft throwaway CA").map_err(|e| failure(e.to_string()))?;
        let (other_ca, _) = authority("Another CA").map_err(|e| failure(e.to_string()))?;
        let identity = |name: &str, issuer: &Issuer<'_, KeyPair>, expired: bool| {
            let (certificate, key) =
                leaf(name, issuer, expired, addresses).map_err(|e| failure(e.to_string()))?;
            Ok::<_, PkiError>(Identity {
                certificate: write(&format!("{name}.crt"), &certificate)?,
                key: write(&format!("{name}.key"), &key)?,
            })
        };
        let member = identity("member", &ca, false)?;
        let stranger = identity("stranger", &other_ca, false)?;
        let expired = identity("expired", &ca, true)?;
        Ok(ThrowawayPki {
            ca: write("ca.crt", &ca_pem)?,
            member,
            stranger,
            expired,
        })
    }
}

impl ThrowawayPki {
    /// The flags that run a member with mutual TLS from this PKI between
    /// members and, with `require_client_certificates`, with clients
    /// (`--client-cert-auth`).
    pub fn node_arguments(&self, require_client_certificates: bool) -> Vec<String> {
        let path = |path: &Path| path.display().to_string();
        [
            ("--cert-file", path(&self.member.certificate)),
            ("--key-file", path(&self.member.key)),
            ("--trusted-ca-file", path(&self.ca)),
            ("--peer-cert-file", path(&self.member.certificate)),
            ("--peer-key-file", path(&self.member.key)),
            ("--peer-trusted-ca-file", path(&self.ca)),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .chain(require_client_certificates.then(|| "--client-cert-auth".to_string()))
        .collect()
    }

    /// A client's TLS: the CA, presenting the member certificate.
    pub fn client_files(&self) -> ClientTlsFiles {
        ClientTlsFiles {
            ca: Some(self.ca.clone()),
            certificate: Some(self.member.certificate.clone()),
            key: Some(self.member.key.clone()),
        }
    }
}

/// A self-signed CA: its issuer and its certificate (PEM).
fn authority(name: &str) -> Result<(Issuer<'static, KeyPair>, String), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let certificate = params.self_signed(&key)?;
    Ok((Issuer::new(params, key), certificate.pem()))
}

/// A certificate for 127.0.0.1 and `localhost`, for servers and clients:
/// certificate and key (PEM).
fn leaf(
    name: &str,
    issuer: &Issuer<'_, KeyPair>,
    expired: bool,
    addresses: &[IpAddr],
) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.subject_alt_names.extend(
        addresses
            .iter()
            .filter(|address| !address.is_loopback())
            .map(|address| SanType::IpAddress(*address)),
    );
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, issuer)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

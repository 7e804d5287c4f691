//! TLS termination settings: certificate and key from PEM files or Docker secrets, or a
//! self-signed development certificate made at start; ALPN offers `h2` then `http/1.1`.
//! The certificate in force sits behind [`Certificates`], so a reload swaps it for new
//! handshakes while established connections keep the one they began with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {what} file {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The certificate PEM holds no usable certificate.
    #[error("no certificate found in the {0}")]
    NoCertificate(&'static str),
    /// PEM parsing failed.
    #[error("invalid PEM in the {what}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// Only one of certificate and key was given.
    #[error("TLS needs both a certificate and a private key; only the {0} is configured")]
    Incomplete(&'static str),
    /// The development certificate could not be generated.
    #[error("cannot generate the development certificate")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate/key pair.
    #[error("rustls refused the certificate or key")]
    Rustls(#[from] rustls::Error),
    /// The client CA bundle (`tls.client_ca_path`) cannot be used.
    #[error("the client CA bundle cannot verify client certificates")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
}

/// Where a PEM document comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// The text itself (from a secret): never shown by `Debug`, as it may be a key.
    Text(String),
    /// A file, read at every (re)load.
    File(PathBuf),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(_) => f.write_str("Text([redacted])"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl Pem {
    /// The PEM bytes; `what` names the document in an error.
    fn read(&self, what: &'static str) -> Result<Vec<u8>, TlsError> {
        match self {
            Self::Text(text) => Ok(text.as_bytes().to_vec()),
            Self::File(path) => read(path, what),
        }
    }
}

/// What TLS is set up from (`[tls]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain; with no key either, a development certificate is made.
    pub cert: Option<Pem>,
    /// The private key.
    pub key: Option<Pem>,
    /// The CA bundle client certificates are verified against (mTLS); `None`: none asked.
    pub client_ca_path: Option<PathBuf>,
}

/// Where the certificate came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// Configured PEM (files or secrets).
    Configured,
    /// Generated at start for `localhost` and `127.0.0.1`.
    SelfSignedDev,
}

/// The certificate every new handshake is answered with.
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

impl Certificates {
    /// Puts `key` in force for handshakes from now on.
    pub fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }

    /// The leaf certificate in force (DER).
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.cert.first().cloned()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls server configuration from `cfg`, and the handle that swaps its
/// certificate.
pub fn server_config(
    cfg: &TlsSettings,
) -> Result<(Arc<ServerConfig>, CertSource, Arc<Certificates>), TlsError> {
    let (key, source) = certified_key(cfg)?;
    let certificates = Arc::new(Certificates {
        current: RwLock::new(Arc::new(key)),
    });
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &cfg.client_ca_path {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path)?),
    };
    let mut config =
        builder.with_cert_resolver(Arc::clone(&certificates) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok((Arc::new(config), source, certificates))
}

/// The certificate chain and key `cfg` names, checked to belong together; or, with
/// neither configured, a fresh development certificate.
pub fn certified_key(cfg: &TlsSettings) -> Result<(CertifiedKey, CertSource), TlsError> {
    let cert_pem = cfg
        .cert
        .as_ref()
        .map(|pem| pem.read("certificate"))
        .transpose()?;
    let key_pem = cfg
        .key
        .as_ref()
        .map(|pem| pem.read("private key"))
        .transpose()?;
    let (certs, key, source) = match (cert_pem, key_pem) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| TlsError::Pem {
                    what: "certificate",
                    source,
                })?;
            if certs.is_empty() {
                return Err(TlsError::NoCertificate("certificate PEM"));
            }
            let key = PrivateKeyDer::from_pem_slice(&key).map_err(|source| TlsError::Pem {
                what: "private key",
                source,
            })?;
            (certs, key, CertSource::Configured)
        }
        (Some(_), None) => return Err(TlsError::Incomplete("certificate")),
        (None, Some(_)) => return Err(TlsError::Incomplete("private key")),
        (None, None) => {
            let (cert, key) = dev_certificate()?;
            (vec![cert], key, CertSource::SelfSignedDev)
        }
    };
    // from_der checks that the key is the certificate's (rustls >= 0.23.17).
    let key = CertifiedKey::from_der(certs, key, &provider())?;
    Ok((key, source))
}

/// Verifies client certificates against the CA bundle at `path`; a client without one is
/// let in (it may present an API key instead).
fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let pem = read(path, "client CA")?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|source| TlsError::Pem {
            what: "client CA",
            source,
        })?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate("client CA bundle"));
    }
    Ok(
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()?,
    )
}

/// The first 8 bytes of a certificate's SHA-256, as hex: which certificate this is, in
/// logs (the one in force after a reload, a client's).
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    crate::hex::encode(&sha2::Sha256::digest(der)[..8])
}

/// The name a verified client certificate goes by in spans and log rows: `cert:` and its
/// [`fingerprint`].
pub fn client_name(cert: &CertificateDer<'_>) -> String {
    format!("cert:{}", fingerprint(cert))
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, for development only.
pub fn dev_certificate() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    Ok((certified.cert.der().clone(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_dev_certificate_when_none_is_configured() {
        let (config, source, _) = server_config(&TlsSettings::default()).expect("dev cert");
        assert_eq!(source, CertSource::SelfSignedDev);
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn half_configured_tls_is_refused() {
        let cfg = TlsSettings {
            cert: Some(Pem::Text("-----BEGIN CERTIFICATE-----".into())),
            ..TlsSettings::default()
        };
        assert!(matches!(
            server_config(&cfg),
            Err(TlsError::Incomplete("certificate"))
        ));
    }

    #[test]
    fn missing_files_name_their_path() {
        let cfg = TlsSettings {
            cert: Some(Pem::File("/nonexistent/cert.pem".into())),
            key: Some(Pem::File("/nonexistent/key.pem".into())),
            ..TlsSettings::default()
        };
        let err = server_config(&cfg).expect_err("error");
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}

//! `infergate healthcheck`: one GET over HTTP/1.1 (TLS or not), success on 200.
//!
//! Meant for a container HEALTHCHECK on images without curl. It checks liveness of the
//! local process, not identity, so the server certificate is not verified (the gateway
//! often serves a self-signed or internal certificate on the probed address).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The URL is not an absolute http(s) URL.
    #[error("not an http:// or https:// URL with a host")]
    Url,
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Could not connect.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// TLS failed.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// HTTP failed.
    #[error("HTTP failed: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    /// The server answered, but not 200.
    #[error("answered {0}")]
    Status(StatusCode),
}

/// GETs `url`; `Ok` when it answers 200 within `timeout`.
pub async fn check(url: &str, timeout: Duration) -> Result<(), HealthError> {
    match tokio::time::timeout(timeout, probe(url)).await {
        Ok(Ok(StatusCode::OK)) => Ok(()),
        Ok(Ok(status)) => Err(HealthError::Status(status)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(HealthError::Timeout(timeout)),
    }
}

async fn probe(url: &str) -> Result<StatusCode, HealthError> {
    let uri: Uri = url.parse().map_err(|_| HealthError::Url)?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(HealthError::Url),
    };
    let host = uri.host().ok_or(HealthError::Url)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(HealthError::Connect)?;
    if !https {
        return get(tcp, &uri).await;
    }
    let name = ServerName::try_from(host).map_err(|e| HealthError::Tls(e.to_string()))?;
    let tls = tls_connector()?
        .connect(name, tcp)
        .await
        .map_err(|e| HealthError::Tls(e.to_string()))?;
    get(tls, &uri).await
}

async fn get<S>(io: S, uri: &Uri) -> Result<StatusCode, HealthError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or("localhost", |a| a.as_str());
    let request = Request::get(path)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "infergate-healthcheck")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await;
    driver.abort();
    Ok(response?.status())
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, HealthError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HealthError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Accepts any certificate, but still checks the handshake signatures (so the peer
/// holds the key of the certificate it shows).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

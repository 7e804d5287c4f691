//! `infergate healthcheck`: one HTTP/1.1 request (TLS or not, or plaintext over a Unix
//! socket), success on a 2xx.
//!
//! Meant for a container HEALTHCHECK on images without curl, and for deploy scripts that
//! check one instance through its check socket (`/ready`, then a smoke prediction with
//! `--data`) before activating it. It checks liveness of the local process, not identity,
//! so the server certificate is not verified (the gateway often serves a self-signed or
//! internal certificate on the probed address).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// Most bytes of a failed answer's body shown in the error.
const BODY_SHOWN: usize = 512;

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The URL is not an absolute http(s) URL (or, with a socket, not even a path).
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
    /// The server answered, but not 2xx.
    #[error("answered {status}: {body}")]
    Status {
        /// The status it answered.
        status: StatusCode,
        /// The start of the body (at most 512 bytes, lossy UTF-8).
        body: String,
    },
}

/// One probe: where to send what.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The URL; with `socket`, only its path, query and authority (for `Host`) are used.
    pub url: String,
    /// Plaintext HTTP/1.1 over this Unix-domain socket instead of the URL's host.
    pub socket: Option<PathBuf>,
    /// A body to POST, with its content type; `None` sends a GET.
    pub body: Option<(String, Bytes)>,
    /// The whole exchange's deadline.
    pub timeout: Duration,
}

/// Sends the probe; `Ok` when it answers 2xx within its timeout.
pub async fn check(probe: &Probe) -> Result<(), HealthError> {
    match tokio::time::timeout(probe.timeout, run(probe)).await {
        Ok(result) => result,
        Err(_) => Err(HealthError::Timeout(probe.timeout)),
    }
}

async fn run(probe: &Probe) -> Result<(), HealthError> {
    let uri: Uri = probe.url.parse().map_err(|_| HealthError::Url)?;
    if let Some(path) = &probe.socket {
        if uri.path_and_query().is_none() {
            return Err(HealthError::Url);
        }
        let unix = UnixStream::connect(path)
            .await
            .map_err(HealthError::Connect)?;
        return exchange(unix, &uri, probe.body.as_ref()).await;
    }
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
        return exchange(tcp, &uri, probe.body.as_ref()).await;
    }
    let name = ServerName::try_from(host).map_err(|e| HealthError::Tls(e.to_string()))?;
    let tls = tls_connector()?
        .connect(name, tcp)
        .await
        .map_err(|e| HealthError::Tls(e.to_string()))?;
    exchange(tls, &uri, probe.body.as_ref()).await
}

/// Sends one request on `io`; `Ok` on a 2xx, else the status and the start of the body.
async fn exchange<S>(io: S, uri: &Uri, body: Option<&(String, Bytes)>) -> Result<(), HealthError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or("localhost", |a| a.as_str());
    let builder = Request::builder()
        .uri(path)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "infergate-healthcheck");
    let request = match body {
        None => builder.method(Method::GET).body(Full::new(Bytes::new()))?,
        Some((content_type, bytes)) => builder
            .method(Method::POST)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).map_err(http::Error::from)?,
            )
            .body(Full::new(bytes.clone()))?,
    };
    let result = match sender.send_request(request).await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            Err(HealthError::Status {
                status,
                body: body_head(response.into_body()).await,
            })
        }
        Err(e) => Err(e.into()),
    };
    driver.abort();
    result
}

/// The first [`BODY_SHOWN`] bytes of a body as text; the rest is not read.
async fn body_head(mut body: Incoming) -> String {
    let mut buf = Vec::new();
    while buf.len() <= BODY_SHOWN {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    let truncated = buf.len() > BODY_SHOWN;
    buf.truncate(BODY_SHOWN);
    let mut text = String::from_utf8_lossy(&buf).trim_end().to_owned();
    if truncated {
        text.push_str("...");
    }
    text
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

//! Plaintext HTTP over a Unix-domain socket (a gateway's check socket): HTTP/1.1, or
//! HTTP/2 with prior knowledge (h2c).

use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

fn build(method: &str, path: &str, body: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    req.body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .expect("request")
}

async fn answer(response: http::Response<hyper::body::Incoming>) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// One HTTP/1.1 request on a new connection to the socket at `socket`.
pub async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Answer> {
    let stream = UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    let driver = tokio::spawn(conn);
    let response = sender
        .send_request(build(method, path, body))
        .await
        .map_err(std::io::Error::other)?;
    let answer = answer(response).await;
    driver.abort();
    Ok(answer)
}

/// One HTTP/2 (prior knowledge) request on a new connection to the socket at `socket`.
pub async fn request_h2(socket: &Path, path: &str) -> std::io::Result<Answer> {
    let stream = UnixStream::connect(socket).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
    let driver = tokio::spawn(conn);
    let response = sender
        .send_request(build("GET", path, None))
        .await
        .map_err(std::io::Error::other)?;
    let answer = answer(response).await;
    driver.abort();
    Ok(answer)
}

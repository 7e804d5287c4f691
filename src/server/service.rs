//! The hyper service of one connection: it tells the connection's [`Activity`] about each
//! request (in flight, against the connection's cap, framed two ways), hands the request
//! to the router (`http::handle`), and adds what the connection decides to the answer
//! (`Strict-Transport-Security`, `Connection: close`).

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use http::header::{CONNECTION, HeaderValue, STRICT_TRANSPORT_SECURITY};
use http::{Request, Response};
use hyper::body::Incoming;

use crate::http::{AmbiguousFraming, ClientCert, ResponseBody, handle};
use crate::server::idle::Activity;
use crate::state::Gateway;

/// The hyper service for one connection.
#[derive(Clone)]
pub struct GatewayService {
    gateway: Arc<Gateway>,
    activity: Rc<Activity>,
    peer: Option<IpAddr>,
    close_when_draining: bool,
    hsts: Option<HeaderValue>,
    client_cert: Option<ClientCert>,
}

impl GatewayService {
    /// A service answering from `gateway` to the client at `peer` (`None`: no IP address,
    /// as on the check socket), reporting requests in flight to `activity`. With
    /// `close_when_draining` (HTTP/1.1), every answer sent once the drain has begun, and
    /// the answer to the connection's last request under its cap, carries
    /// `Connection: close`, so the client knows not to reuse the connection.
    pub fn new(
        gateway: Arc<Gateway>,
        activity: Rc<Activity>,
        peer: Option<IpAddr>,
        close_when_draining: bool,
    ) -> Self {
        Self {
            gateway,
            activity,
            peer,
            close_when_draining,
            hsts: None,
            client_cert: None,
        }
    }

    /// Every request on this connection comes with this verified client certificate
    /// (`admin`, see `tls.client_ca_path`).
    pub fn with_client_cert(mut self, name: Option<Arc<str>>) -> Self {
        self.client_cert = name.map(ClientCert);
        self
    }

    /// Adds `Strict-Transport-Security: hsts` to every answer (HTTPS connections).
    pub fn with_hsts(mut self, hsts: Option<HeaderValue>) -> Self {
        self.hsts = hsts;
        self
    }
}

impl hyper::service::Service<Request<Incoming>> for GatewayService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let gateway = Arc::clone(&self.gateway);
        let ambiguous = self.activity.is_ambiguous(self.activity.begun());
        let in_flight = self.activity.begin_request();
        let last_on_connection = self.activity.at_request_cap();
        let peer = self.peer;
        let close_when_draining = self.close_when_draining;
        let hsts = self.hsts.clone();
        let mut req = req;
        if ambiguous {
            req.extensions_mut().insert(AmbiguousFraming);
        }
        if let Some(cert) = &self.client_cert {
            req.extensions_mut().insert(cert.clone());
        }
        Box::pin(async move {
            let mut response = handle(&gateway, req, peer).await;
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .insert(STRICT_TRANSPORT_SECURITY, hsts);
            }
            if ambiguous
                || close_when_draining
                    && (last_on_connection || gateway.lifecycle.shutdown.is_draining())
            {
                // hyper closes an HTTP/1.1 connection after an answer saying so.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            drop(in_flight);
            Ok(response)
        })
    }
}

//! The public listener: opened at start, or — in standby — on SIGUSR2, from a bound
//! address or a socket handed over at start. The gateway's `listening` flag (in `/ready`
//! and `/stats`) follows it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::server::conn::ConnSettings;
use crate::server::{ListenSettings, Running, ServerError, Source};

/// The public listener, open or waiting to be.
pub(crate) struct PublicListener {
    listen: ListenSettings,
    /// Where the sockets come from; dropped once the I/O threads hold their own.
    source: Option<Source>,
    settings: Arc<ConnSettings>,
    running: Option<Running>,
}

impl PublicListener {
    /// A listener that opens on [`PublicListener::open`].
    pub(crate) fn new(listen: ListenSettings, source: Source, settings: Arc<ConnSettings>) -> Self {
        Self {
            listen,
            source: Some(source),
            settings,
            running: None,
        }
    }

    /// Whether it is open.
    pub(crate) fn is_open(&self) -> bool {
        self.running.is_some()
    }

    /// Where it listens (or will): the inherited socket's address, else `server.listen`.
    pub(crate) fn addr(&self) -> SocketAddr {
        match (&self.running, &self.source) {
            (Some(running), _) => running.local_addr,
            (None, Some(Source::Inherited(listener))) => {
                listener.local_addr().unwrap_or(self.listen.addr)
            }
            (None, _) => self.listen.addr,
        }
    }

    /// Whether it serves a socket handed over at start (socket activation).
    pub(crate) fn is_inherited(&self) -> bool {
        matches!(self.source, Some(Source::Inherited(_)))
    }

    /// Whether another process already accepts on the address this listener will bind:
    /// a connect to it (loopback for a wildcard address) succeeds within 300 ms. Always
    /// true for an inherited socket, whose launcher holds it for us.
    pub(crate) fn peer_listening(&self) -> bool {
        if matches!(self.source, Some(Source::Inherited(_))) {
            return true;
        }
        let mut addr = self.listen.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr.port() != 0
            && std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300))
                .is_ok()
    }

    /// Binds (or shares the inherited socket) and starts the I/O threads; returns the
    /// address. On failure nothing is open and a later call may try again.
    pub(crate) fn open(&mut self) -> Result<SocketAddr, ServerError> {
        if let Some(running) = &self.running {
            return Ok(running.local_addr);
        }
        let bind = Source::Bind;
        let source = self.source.as_ref().unwrap_or(&bind);
        let running = crate::server::start(&self.listen, source, Arc::clone(&self.settings))?;
        let addr = running.local_addr;
        self.running = Some(running);
        // The I/O threads hold their own duplicates of an inherited socket.
        self.source = None;
        self.settings.gateway.lifecycle.flags.set_listening(true);
        Ok(addr)
    }
}

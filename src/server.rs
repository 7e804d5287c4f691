//! Serving connections: listening sockets, one I/O thread per core, TLS, hyper.
//!
//! The I/O backend is a seam: `uring` (io_uring through tokio-uring) or `epoll` (plain
//! tokio), chosen once at start (`backend`). Each supplies a runtime per I/O thread and a
//! way to accept; `accept`, `listener`, `tls`, `tls_session` and `conn` are the same code for both. The
//! check socket (`check_socket`) serves the same routes over a Unix-domain socket on its
//! own thread.

pub mod accept;
pub mod activation;
pub mod backend;
pub mod check_socket;
pub mod conn;
pub mod epoll;
pub mod fd_limit;
pub mod h1_framing;
pub mod idle;
pub mod listener;
pub mod park;
pub mod peer_cap;
pub mod redirect;
pub mod service;
pub mod tls;
pub mod tls_session;
pub mod uring;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::Semaphore;

use crate::background::SpawnError;
use crate::server::backend::Backend;
use crate::server::conn::ConnSettings;
use crate::server::listener::BindError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listening socket could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// An I/O thread could not be spawned.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The inherited listening socket could not be duplicated for every I/O thread.
    #[error("cannot share the inherited listening socket {addr} among the I/O threads")]
    Share {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where the public listening sockets come from.
#[derive(Debug)]
pub enum Source {
    /// Bind [`ListenSettings::addr`]: one `SO_REUSEPORT` socket per I/O thread.
    Bind,
    /// A listening socket handed over at start (socket activation); every I/O thread
    /// accepts on a duplicate of it, and `addr` is ignored.
    Inherited(TcpListener),
}

/// How to listen.
#[derive(Debug, Clone, Copy)]
pub struct ListenSettings {
    /// Address to bind (with [`Source::Bind`]); port 0 picks a free port.
    pub addr: SocketAddr,
    /// I/O threads, each with its own listener.
    pub threads: usize,
    /// Listen backlog per socket.
    pub backlog: u32,
    /// Open connections allowed across all threads.
    pub max_connections: usize,
    /// Which I/O backend serves connections (see [`backend::choose`]).
    pub backend: Backend,
}

/// The running I/O threads.
pub struct Running {
    /// The bound address (with the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Whether every I/O thread has finished.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }
}

/// Binds the listeners (or shares the inherited one) and starts the I/O threads.
pub fn start(
    listen: &ListenSettings,
    source: &Source,
    settings: Arc<ConnSettings>,
) -> Result<Running, ServerError> {
    let (local_addr, listeners) = match source {
        Source::Bind => listener::bind_group(listen.addr, listen.threads, listen.backlog)?,
        Source::Inherited(inherited) => {
            let addr = inherited
                .local_addr()
                .map_err(|source| ServerError::Share {
                    addr: listen.addr,
                    source,
                })?;
            let listeners = listener::share(inherited, listen.threads)
                .map_err(|source| ServerError::Share { addr, source })?;
            (addr, listeners)
        }
    };
    let permits = Arc::new(Semaphore::new(listen.max_connections.max(1)));
    let mut threads = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let settings = Arc::clone(&settings);
        let permits = Arc::clone(&permits);
        let backend = listen.backend;
        let name = format!("infergate-io-{i}");
        let handle = match backend {
            Backend::Epoll => epoll::start_thread(name, listener, settings, permits)?,
            Backend::Uring(ring) => uring::start_thread(name, listener, settings, permits, ring)?,
        };
        threads.push(handle);
    }
    Ok(Running {
        local_addr,
        threads,
    })
}

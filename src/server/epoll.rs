//! The epoll backend: one current-thread tokio runtime per I/O thread, each accepting on its
//! own `SO_REUSEPORT` socket and serving its connections on that thread (`spawn_local`).

use std::net::TcpListener as StdListener;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::background::{self, SpawnError};
use crate::server::accept;
use crate::server::conn::ConnSettings;

/// Starts I/O thread `name`, serving `listener` until the drain starts and all its
/// connections have closed.
pub fn start_thread(
    name: String,
    listener: StdListener,
    settings: Arc<ConnSettings>,
    permits: Arc<Semaphore>,
) -> Result<std::thread::JoinHandle<()>, SpawnError> {
    let started = background::spawn(name, move || async move {
        match TcpListener::from_std(listener) {
            Ok(socket) => accept::serve_public(socket, settings, permits).await,
            Err(e) => tracing::error!(error = %e, "I/O thread stopped: its listener failed"),
        }
    })?;
    Ok(started.thread)
}

//! The check socket (`server.check_socket`): a Unix-domain socket serving plaintext
//! HTTP/1.1 (and h2c, by its preface) with the same routes as the public listener. When two
//! instances share one TCP port through `SO_REUSEPORT`, the kernel picks which one a TCP
//! client reaches; the check socket reaches one instance for certain, so a deploy script can
//! gate on a standby instance's `/ready` and a smoke prediction before activating it, and
//! watch a draining one's `/ready` turn 503.
//!
//! It is served on its own thread (its own current-thread runtime, like an I/O thread)
//! from before any public listener opens until the drain is over, with its own small
//! connection cap: a burst of public clients never locks the deploy script out.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

use crate::background;
use crate::server::accept::{self, Caps};
use crate::server::conn::{self, ConnSettings};

/// Connections the check socket keeps open at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 16;

/// Why the check socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CheckSocketError {
    /// A live process listens on the path (two instances configured with one path).
    #[error("check socket {}: another process is listening on it", .0.display())]
    InUse(PathBuf),
    /// The path holds something other than a socket; it is not ours to remove.
    #[error("check socket {}: the path exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// Binding, removing the stale file, or setting the mode failed.
    #[error("cannot set up the check socket {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Its thread could not start.
    #[error(transparent)]
    Spawn(#[from] background::SpawnError),
}

/// A bound check socket, not served yet.
#[derive(Debug)]
pub struct CheckSocket {
    listener: StdUnixListener,
    file: SocketFile,
}

impl CheckSocket {
    /// Binds `path` (mode 0600), first removing a stale socket file that a process which
    /// is gone left there. Refuses a path where a live process still listens, or that holds
    /// something other than a socket.
    pub fn bind(path: &Path) -> Result<Self, CheckSocketError> {
        let io_err = |source| CheckSocketError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(CheckSocketError::NotASocket(path.to_owned()));
            }
            Ok(_) => {
                if someone_listens(path) {
                    return Err(CheckSocketError::InUse(path.to_owned()));
                }
                match std::fs::remove_file(path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed a stale check socket")
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let listener = StdUnixListener::bind(path).map_err(io_err)?;
        // Until this chmod the umask's mode applies; harmless, as the socket serves nothing
        // the public listener does not.
        let file = SocketFile::of(path).map_err(io_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        listener.set_nonblocking(true).map_err(io_err)?;
        Ok(Self { listener, file })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Serves the socket on its own thread until the returned handle is closed (or
    /// dropped), which also removes the file.
    pub fn serve(self, settings: Arc<ConnSettings>) -> Result<Serving, CheckSocketError> {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let listener = self.listener;
        let started = background::spawn("infergate-check", move || async move {
            let listener = match UnixListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(error = %e, "check socket stopped");
                    return;
                }
            };
            let stop = async move {
                let _ = stop_rx.await;
            };
            // Once accepting stops (the drain is over), the connections left are dropped
            // with the thread's LocalSet: the process is about to exit.
            accept::serve(
                listener,
                Caps::own(MAX_CONNECTIONS),
                stop,
                |stream, peer| conn::serve(stream, peer, Arc::clone(&settings)),
            )
            .await;
        })?;
        Ok(Serving {
            stop: Some(stop_tx),
            thread: Some(started.thread),
            file: self.file,
        })
    }
}

/// The check socket being served. Closing (or dropping) it stops accepting, ends its
/// connections and removes the file.
#[derive(Debug)]
pub struct Serving {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    file: SocketFile,
}

impl Serving {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Stops serving and removes the file.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // `file` drops after this: the path goes once nothing accepts on it.
    }
}

/// The socket's file, removed on drop if it is still the one we bound (a later instance
/// may have replaced it after we stopped listening).
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn of(path: &Path) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Self {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether a live process accepts on the socket at `path`. The connect is non-blocking:
/// a live listener with a full backlog answers "would block", a stale file "refused".
fn someone_listens(path: &Path) -> bool {
    let Ok(addr) = SockAddr::unix(path) else {
        return false;
    };
    let Ok(socket) = Socket::new(Domain::UNIX, Type::STREAM, None) else {
        return false;
    };
    if socket.set_nonblocking(true).is_err() {
        return false;
    }
    match socket.connect(&addr) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("check.sock");
        // A stale file: bound, then its listener gone.
        drop(StdUnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let bound = CheckSocket::bind(&path).expect("stale file replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second instance on the same path is refused while the first listens.
        assert!(matches!(
            CheckSocket::bind(&path),
            Err(CheckSocketError::InUse(_))
        ));
        drop(bound);
        assert!(!path.exists(), "the file goes with the socket");
    }

    #[test]
    fn a_path_holding_a_regular_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, "data").unwrap();
        assert!(matches!(
            CheckSocket::bind(&path),
            Err(CheckSocketError::NotASocket(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }

    #[test]
    fn a_replaced_file_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("check.sock");
        let first = CheckSocket::bind(&path).unwrap();
        // Someone else's file now sits at the path (a later instance, after a stale-file
        // cleanup); dropping ours must not remove it.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "theirs").unwrap();
        drop(first);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs");
    }
}

//! Socket activation: systemd's `LISTEN_FDS` protocol (also spoken by
//! `systemd-socket-activate` and inetd-style launchers). The launcher binds and listens,
//! then starts us with the socket as fd 3, `LISTEN_FDS=1` and `LISTEN_PID` set to our pid;
//! we accept on it instead of binding `server.listen`. Connections made while we start (or
//! after we exit) wait in that socket's backlog, which the launcher keeps open.
//!
//! The protocol is parsed by the `listenfd` crate. It relaxes one rule (a missing
//! `LISTEN_PID` is accepted, for `systemfd`); we keep systemd's: without a `LISTEN_PID`
//! naming this process nothing is inherited, so a `LISTEN_FDS` leaked from a parent
//! shell never turns an unrelated fd 3 into our listener.

use std::io;
use std::net::{SocketAddr, TcpListener};

use listenfd::ListenFd;

/// Why a handed-over socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// More than one socket was handed over.
    #[error("socket activation handed over {0} sockets (LISTEN_FDS); infergate serves exactly one")]
    Count(usize),
    /// fd 3 is not a TCP stream socket (not a socket, a UDP or Unix socket, or closed).
    #[error("socket activation: fd 3 is not a TCP stream socket")]
    NotTcp(#[source] io::Error),
    /// fd 3 is a TCP socket nobody called `listen` on.
    #[error("socket activation: fd 3 is a TCP socket but not a listening one")]
    NotListening,
    /// The socket could not be inspected or set up.
    #[error("socket activation: cannot use fd 3")]
    Io(#[source] io::Error),
}

/// A listening socket handed over by the process that started us.
#[derive(Debug)]
pub struct Inherited {
    /// The socket, non-blocking, close-on-exec.
    pub listener: TcpListener,
    /// Its bound address.
    pub addr: SocketAddr,
    /// Its name in `LISTEN_FDNAMES`, when the launcher gave one.
    pub name: Option<String>,
}

/// What the environment says about socket activation.
#[derive(Debug)]
pub enum Handover {
    /// No `LISTEN_FDS`: bind `server.listen`.
    None,
    /// `LISTEN_FDS` is set but `LISTEN_PID` is missing or names another process (the
    /// variables were meant for a parent): bind `server.listen`.
    NotOurs {
        /// The `LISTEN_PID` found (empty when missing).
        listen_pid: String,
    },
    /// A listening socket to serve on.
    Socket(Inherited),
}

/// Takes the socket the environment hands over, if it is ours, and checks that it is a
/// listening TCP stream socket.
///
/// Call it from `main` before any thread exists: `listenfd` removes `LISTEN_PID` and
/// `LISTEN_FDS` from the environment (so nothing we start inherits them), and changing the
/// environment is only sound while the process has one thread.
pub fn take_from_env() -> Result<Handover, ActivationError> {
    let fds = std::env::var("LISTEN_FDS").unwrap_or_default();
    if fds.is_empty() || fds == "0" {
        return Ok(Handover::None);
    }
    let listen_pid = std::env::var("LISTEN_PID").unwrap_or_default();
    if listen_pid.is_empty() {
        return Ok(Handover::NotOurs { listen_pid });
    }
    let mut handed = ListenFd::from_env();
    match handed.len() {
        0 => return Ok(Handover::NotOurs { listen_pid }),
        1 => {}
        n => return Err(ActivationError::Count(n)),
    }
    let listener = handed
        .take_tcp_listener(0)
        .map_err(ActivationError::NotTcp)?
        .ok_or_else(|| ActivationError::NotTcp(io::ErrorKind::NotFound.into()))?;
    let inherited = check_listener(listener)?;
    let name = std::env::var("LISTEN_FDNAMES")
        .ok()
        .and_then(|names| names.split(':').next().map(str::to_owned))
        .filter(|n| !n.is_empty());
    Ok(Handover::Socket(Inherited { name, ..inherited }))
}

/// Checks that `listener` is listening and makes it non-blocking (launchers hand over
/// blocking sockets; tokio needs non-blocking ones).
pub fn check_listener(listener: TcpListener) -> Result<Inherited, ActivationError> {
    let socket = socket2::SockRef::from(&listener);
    if !socket.is_listener().map_err(ActivationError::Io)? {
        return Err(ActivationError::NotListening);
    }
    listener
        .set_nonblocking(true)
        .map_err(ActivationError::Io)?;
    let addr = listener.local_addr().map_err(ActivationError::Io)?;
    Ok(Inherited {
        listener,
        addr,
        name: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};

    #[test]
    fn a_listening_socket_is_accepted_and_made_non_blocking() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inherited = check_listener(listener).unwrap();
        assert_eq!(inherited.addr, addr);
        // Non-blocking: accept with nothing queued returns at once.
        let err = inherited.listener.accept().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_bound_but_not_listening_socket_is_refused() {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let listener: TcpListener = socket.into();
        assert!(matches!(
            check_listener(listener),
            Err(ActivationError::NotListening)
        ));
    }
}

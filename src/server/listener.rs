//! Listening sockets: one `SO_REUSEPORT` socket per I/O thread, all bound to one address,
//! so the kernel spreads accepted connections across threads; or one inherited socket
//! (socket activation) that every I/O thread accepts on through its own duplicate.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Why a listening socket could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `count` (at least 1) non-blocking listeners to `addr`. With port 0 the first
/// socket's kernel-chosen port is reused for the others, so they form one group.
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> Result<(SocketAddr, Vec<TcpListener>), BindError> {
    let first = bind_one(addr, backlog)?;
    let bound = first
        .local_addr()
        .map_err(|source| BindError { addr, source })?;
    let mut listeners = vec![first];
    for _ in 1..count.max(1) {
        listeners.push(bind_one(bound, backlog)?);
    }
    Ok((bound, listeners))
}

/// `count` (at least 1) duplicates of one listening socket (`dup`: one socket, one accept
/// queue, each thread polling its own descriptor). The socket stays open until `listener`
/// and every duplicate are closed.
pub fn share(listener: &TcpListener, count: usize) -> std::io::Result<Vec<TcpListener>> {
    (0..count.max(1)).map(|_| listener.try_clone()).collect()
}

fn bind_one(addr: SocketAddr, backlog: u32) -> Result<TcpListener, BindError> {
    let err = |source| BindError { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.set_tcp_nodelay(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket
        .listen(i32::try_from(backlog).unwrap_or(i32::MAX))
        .map_err(err)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port() {
        let (addr, listeners) = bind_group("127.0.0.1:0".parse().unwrap(), 3, 16).unwrap();
        assert_ne!(addr.port(), 0);
        for l in &listeners {
            assert_eq!(l.local_addr().unwrap(), addr);
        }
    }

    #[test]
    fn a_shared_socket_is_one_accept_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = share(&listener, 3).unwrap();
        drop(listener);
        assert_eq!(shared.len(), 3);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        // The connection queued on the socket is accepted through any of its handles.
        let (_, peer) = shared[1].accept().unwrap();
        assert!(peer.ip().is_loopback());
    }
}

//! An inetd-style launcher, as systemd's socket activation: it binds and listens, waits for
//! a connection to queue, then starts the real binary with the socket as fd 3,
//! `LISTEN_FDS=1` and `LISTEN_PID` set to the child's own pid. It keeps its socket, so
//! connections made while no instance runs wait in the backlog.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd as _, OwnedFd};
use std::process::Command;
use std::time::Duration;

use command_fds::{CommandFdExt as _, FdMapping};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{Gateway, Options, bin};

/// Sets `LISTEN_PID` to the shell's pid, which `exec` hands to the binary.
const AS_CHILD: &str = r#"LISTEN_PID=$$ exec "$0" "$@""#;
/// Sets `LISTEN_PID` to init's pid: the variables are not meant for the binary.
const AS_OTHER: &str = r#"LISTEN_PID=1 exec "$0" "$@""#;

/// The launcher's listening socket.
pub struct Launcher {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl Launcher {
    /// Binds a loopback port and listens.
    pub fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        Self { listener, addr }
    }

    /// Waits up to `timeout` until a connection is queued on the socket (it polls
    /// readable); accepts nothing.
    pub fn wait_queued(&self, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(timeout).expect("a poll timeout");
        poll(&mut fds, timeout).expect("poll") == 1
    }

    /// Accepts a queued connection itself, without waiting: whether one was queued.
    pub fn take_queued(&self) -> bool {
        self.listener.set_nonblocking(true).expect("non-blocking");
        let taken = self.listener.accept().is_ok();
        self.listener.set_nonblocking(false).expect("blocking");
        taken
    }

    /// Starts the real binary on the socket (fd 3, `LISTEN_FDS=1`, `LISTEN_PID` its pid)
    /// and waits for it to listen and be ready.
    pub fn launch(&self, opts: Options) -> Gateway {
        Gateway::start_with(self.command(AS_CHILD, self.fd()), opts)
    }

    /// Like [`Launcher::launch`], but with `LISTEN_PID` naming another process.
    pub fn launch_for_another_pid(&self, opts: Options) -> Gateway {
        Gateway::start_with(self.command(AS_OTHER, self.fd()), opts)
    }

    /// The binary's command with `fd` as its fd 3 and the activation variables set, for
    /// a test that runs it to completion itself.
    pub fn command_with_fd3(fd: OwnedFd) -> Command {
        Self::command_for(AS_CHILD, fd)
    }

    fn fd(&self) -> OwnedFd {
        self.listener.try_clone().expect("dup").into()
    }

    fn command(&self, script: &str, fd: OwnedFd) -> Command {
        Self::command_for(script, fd)
    }

    fn command_for(script: &str, fd: OwnedFd) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg(bin())
            .arg("serve")
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", "https")
            .env_remove("LISTEN_PID");
        cmd.fd_mappings(vec![FdMapping {
            parent_fd: fd,
            child_fd: 3,
        }])
        .expect("fd 3 mapped");
        cmd
    }
}

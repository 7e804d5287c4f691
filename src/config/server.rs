//! The `[server]` section: where the public listener binds, its I/O threads and backend,
//! connection limits and timeouts, the check socket, standby and the idle exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::server::ListenSettings;
use crate::server::backend::{Backend, IoBackend};

/// Listening, connection limits and timeouts.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// I/O threads, each with its own `SO_REUSEPORT` listener and runtime; 0 = one per
    /// available core.
    pub io_threads: usize,
    /// I/O backend. `"auto"`: io_uring (tokio-uring) when a one-time probe at start says
    /// the kernel and the sandbox allow it; otherwise epoll, with one WARN naming the
    /// reason (Docker >= 25's default seccomp profile refuses io_uring:
    /// config/seccomp/io_uring.json is that profile plus the three io_uring syscalls, and
    /// compose.uring.yml opts in). `"uring"`: io_uring, or exit 2 with the reason.
    /// `"epoll"`: plain tokio.
    pub io: IoBackend,
    /// Open connections allowed across all I/O threads; more are closed at accept. Each
    /// is a file descriptor: at start the soft open-file limit is raised to the hard one,
    /// and one below this plus 256 of the gateway's own gets a WARN (see
    /// `strict_fd_limit`); at the limit, idle keep-alive connections are closed, longest
    /// idle first, to make room for new ones.
    pub max_connections: usize,
    /// Refuse to start (exit 2) when the open-file limit, raised as far as it goes, cannot
    /// hold `max_connections` plus the gateway's own 256, instead of starting with a WARN.
    pub strict_fd_limit: bool,
    /// Listen backlog per socket.
    pub backlog: u32,
    /// Milliseconds a client has to finish the TLS handshake.
    pub tls_handshake_timeout_ms: u64,
    /// Milliseconds a client has to send a request's headers (a slowloris guard).
    pub header_read_timeout_ms: u64,
    /// Milliseconds an idle keep-alive connection stays open (nginx's `keepalive_timeout`
    /// is 75 s).
    pub keepalive_idle_timeout_ms: u64,
    /// Milliseconds an HTTP/1.1 keep-alive connection may be quiet between requests before
    /// it is parked: hyper and its buffers are freed and the TLS session waits for the
    /// client's next bytes with no read buffer, a few KB per idle connection instead of
    /// about 18. At most half of `header_read_timeout_ms` is waited, whatever this says:
    /// hyper starts that timer at the end of each answer, and closes a connection still
    /// idle when it fires. 0 = never park (an idle connection then closes at
    /// `header_read_timeout_ms`, before `keepalive_idle_timeout_ms`).
    pub keepalive_park_after_ms: u64,
    /// Largest request body, bytes; a larger one gets 413 before it is read (nginx's
    /// 10 MiB).
    pub max_body_bytes: usize,
    /// Milliseconds a request body may take to arrive (408 past it), and the deadline of a
    /// request that names none, from its head to its answer (504 past it; capped by
    /// `admission.max_deadline_ms`).
    pub request_timeout_ms: u64,
    /// This instance's own Unix-domain socket serving plaintext HTTP/1.1 (and h2c) with
    /// the same routes: health checks and deploy.sh reach this very instance even while
    /// two share `listen` through `SO_REUSEPORT`. Unset: none.
    /// Example: `"/run/infergate/check.sock"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_socket: Option<PathBuf>,
    /// Start in standby: load and warm up the models and serve `check_socket`, but open
    /// the public listener only on SIGUSR2 (at once when nothing else listens on the
    /// port). Without it, an instance started where another already listens on the port
    /// opens its listener once ready, not before.
    pub standby: bool,
    /// Seconds without any request after which the gateway drains and exits 0; 0 = never.
    /// For socket activation (config/systemd/).
    pub idle_exit_s: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            io_threads: 0,
            io: IoBackend::Auto,
            max_connections: 10_000,
            strict_fd_limit: false,
            backlog: 1024,
            tls_handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            keepalive_idle_timeout_ms: 75_000,
            keepalive_park_after_ms: 1_000,
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout_ms: 30_000,
            check_socket: None,
            standby: false,
            idle_exit_s: 0,
        }
    }
}

/// Longest path a Unix-domain socket can be bound to (`sun_path` holds 108 bytes, the last
/// one a NUL).
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

/// Longest `server.idle_exit_s` accepted: a year (anything longer means "never": use 0).
pub const MAX_IDLE_EXIT_S: u64 = 365 * 86_400;

impl ServerSection {
    /// `io_threads`, with 0 resolved to the number of available cores.
    pub fn resolved_io_threads(&self) -> usize {
        match self.io_threads {
            0 => available_cores(),
            n => n,
        }
    }

    /// How the public listener listens, served by `backend`.
    pub fn listen_settings(&self, backend: Backend) -> ListenSettings {
        ListenSettings {
            addr: self.listen,
            threads: self.resolved_io_threads(),
            backlog: self.backlog,
            max_connections: self.max_connections,
            backend,
        }
    }

    /// The TLS handshake deadline.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }

    /// The deadline for a request's headers.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// How long an idle keep-alive connection is kept.
    pub fn keepalive_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_idle_timeout_ms)
    }

    /// How long an HTTP/1.1 keep-alive connection is quiet before it is parked: the
    /// setting, capped at half the header timeout; `None`: never.
    pub fn keepalive_park_after(&self) -> Option<Duration> {
        let ms = self
            .keepalive_park_after_ms
            .min(self.header_read_timeout_ms / 2)
            .max(1);
        (self.keepalive_park_after_ms > 0).then(|| Duration::from_millis(ms))
    }

    /// The deadline for reading a body and answering.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long without a request before the gateway exits; `None` when `idle_exit_s` is 0.
    pub fn idle_exit(&self) -> Option<Duration> {
        (self.idle_exit_s > 0).then(|| Duration::from_secs(self.idle_exit_s))
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.io_threads <= 1024,
            "server.io_threads",
            "must be at most 1024",
        );
        checks.check(
            self.max_connections >= 1,
            "server.max_connections",
            "must be at least 1",
        );
        checks.check(self.backlog >= 1, "server.backlog", "must be at least 1");
        checks.check(
            self.max_body_bytes >= 1,
            "server.max_body_bytes",
            "must be at least 1",
        );
        for (key, ms) in [
            (
                "server.tls_handshake_timeout_ms",
                self.tls_handshake_timeout_ms,
            ),
            ("server.header_read_timeout_ms", self.header_read_timeout_ms),
            (
                "server.keepalive_idle_timeout_ms",
                self.keepalive_idle_timeout_ms,
            ),
            ("server.request_timeout_ms", self.request_timeout_ms),
        ] {
            checks.check(ms >= 1, key, "must be at least 1 millisecond");
        }
        checks.check(
            self.check_socket.as_ref().is_none_or(|p| {
                let len = p.as_os_str().len();
                (1..=MAX_UNIX_SOCKET_PATH).contains(&len)
            }),
            "server.check_socket",
            "must be a path of 1 to 107 bytes (the limit of a Unix socket address)",
        );
        checks.check(
            self.idle_exit_s <= MAX_IDLE_EXIT_S,
            "server.idle_exit_s",
            "must be at most 31536000 (a year); 0 turns it off",
        );
    }
}

/// The cores this process may run on (1 when unknown).
pub(crate) fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

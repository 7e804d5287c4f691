//! Wiring: builds the gateway from a validated `Config`, starts the compute threads, the
//! check socket and (unless in standby) the I/O threads, then runs the control loop on the
//! calling thread — warm-up, metrics upkeep, signals (SIGUSR2 opens a standby instance's
//! public listener, SIGHUP re-reads the API keys and the TLS certificate), the idle exit
//! and the drain. An instance started beside another that serves its port opens its
//! listener only once ready ([`Opening`]).

pub mod access;
mod assemble;
mod public_listener;
pub mod tls_reload;

pub use assemble::{Assembled, assemble, assemble_with_metrics};

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::app::public_listener::PublicListener;
use crate::app::tls_reload::TlsReload;
use crate::auth::KeyFileLoadError;
use crate::auth::reload;
use crate::cache::l2::L2Error;
use crate::config::{Config, LoadOptions, Loaded};
use crate::file_watch::LookNow;
use crate::idle_exit::IdleExit;
use crate::infer::InferError;
use crate::infer::model::ModelError;
use crate::prediction_log::LogError;
use crate::readiness::Readiness;
use crate::server::activation::Handover;
use crate::server::backend::{self, UringRefused};
use crate::server::check_socket::{self, CheckSocket, CheckSocketError};
use crate::server::conn::ConnSettings;
use crate::server::fd_limit::{self, FdLimitError};
use crate::server::peer_cap::PeerCap;
use crate::server::redirect::{self, RedirectError, RedirectSettings};
use crate::server::tls::{self, CertSource, TlsError};
use crate::server::{ServerError, Source};
use crate::state::Gateway;
use crate::telemetry::client_noise::{self, NoiseSummary};

/// How often histogram samples are drained into the exporter's buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// How often an instance waiting to open beside a serving one asks whether it is ready.
const READY_POLL: Duration = Duration::from_millis(100);

/// Why the gateway could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The Prometheus recorder could not be installed.
    #[error("cannot install the metrics recorder")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    /// The model could not be loaded.
    #[error("cannot load the model")]
    Model(#[from] ModelError),
    /// The compute threads could not start, or the warm-up failed.
    #[error("inference core failed")]
    Infer(#[from] InferError),
    /// Redis could not be set up (a bad URL; Redis being down is not an error).
    #[error("cannot set up the Redis cache tier")]
    Redis(#[from] L2Error),
    /// The prediction log could not be set up (bad settings or spool directory; Postgres
    /// being down is not an error).
    #[error("cannot set up the prediction log")]
    PredictionLog(#[from] LogError),
    /// TLS could not be set up.
    #[error("TLS setup failed")]
    Tls(#[from] TlsError),
    /// The listeners or I/O threads could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The API key file exists but cannot be used (a configuration error: exit 2).
    #[error(transparent)]
    Keys(#[from] KeyFileLoadError),
    /// `server.io = "uring"` where io_uring is refused (a configuration error: exit 2).
    #[error(transparent)]
    UringRefused(#[from] UringRefused),
    /// The open-file limit could not be read, or (`server.strict_fd_limit`) cannot hold
    /// `server.max_connections` (a configuration error: exit 2).
    #[error(transparent)]
    FdLimit(#[from] FdLimitError),
    /// The check socket could not be set up.
    #[error(transparent)]
    CheckSocket(#[from] CheckSocketError),
    /// The redirect listener could not be set up.
    #[error(transparent)]
    Redirect(#[from] RedirectError),
    /// The OTLP trace export could not start.
    #[error(transparent)]
    Traces(#[from] crate::telemetry::traces::TracesError),
    /// The model repository could not be read or its thread started.
    #[error(transparent)]
    Repository(#[from] crate::repository::RepositoryError),
    /// A background thread (the batcher's, the shadow runner's) did not start.
    #[error(transparent)]
    Thread(#[from] crate::background::SpawnError),
    /// The control runtime or signal handlers could not start.
    #[error("cannot start the control runtime")]
    Runtime(#[source] std::io::Error),
}

/// Serves until a signal (or `server.idle_exit_s` without a request) ends the drain, on the
/// socket `handover` names or else on `server.listen`. Returns once the gateway has shut
/// down cleanly.
/// `options` are where `loaded` came from: a reload (SIGHUP, a renewed certificate) loads
/// the configuration from them again.
pub fn serve(loaded: &Loaded, options: LoadOptions, handover: Handover) -> Result<(), AppError> {
    let config = &loaded.config;
    // rustls clients that pick the process-wide provider (Redis over rediss://) get ring,
    // like our server. An error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = control_runtime().map_err(AppError::Runtime)?;
    // Signal handlers before the slow part (models): SIGUSR2's default action would kill a
    // standby instance that a deploy script signals early; a SIGTERM while loading drains.
    let signals = {
        let _context = runtime.enter();
        Signals::install().map_err(AppError::Runtime)?
    };
    // Before anything else starts: `auto` may fall back, `uring` may refuse to start.
    let backend = backend::choose(config.server.io)?;
    // Before any connection: the soft open-file limit up to the hard one.
    fd_limit::prepare(config.server.max_connections, config.server.strict_fd_limit)?;
    let Assembled { gateway, metrics } = assemble(config, backend)?;
    let tls = if config.tls.enabled {
        let (server_config, source, certificates) = tls::server_config(&config.tls.settings())?;
        if source == CertSource::SelfSignedDev {
            tracing::warn!(
                "no TLS certificate configured: serving a self-signed development certificate \
                 for localhost/127.0.0.1; set tls.cert_path and tls.key_path (or the tls_cert \
                 and tls_key secrets) in production"
            );
        }
        let reload = TlsReload::new(loaded, options, certificates, &source);
        Some((server_config, reload))
    } else {
        None
    };
    let (tls, tls_reload) = tls.unzip();
    let tls_enabled = tls.is_some();
    let peer_cap = PeerCap::new(config.http.max_connections_per_ip);
    let conn_settings = |tls| conn_settings(config, &gateway, tls, &peer_cap);
    let settings = Arc::new(conn_settings(tls));
    let check = match &config.server.check_socket {
        Some(path) => {
            let serving = CheckSocket::bind(path)?.serve(Arc::new(conn_settings(None)))?;
            tracing::info!(
                path = %serving.path().display(),
                max_connections = check_socket::MAX_CONNECTIONS,
                "check socket listening (plaintext HTTP)"
            );
            Some(serving)
        }
        None => None,
    };
    let source = match handover {
        Handover::Socket(inherited) => {
            tracing::info!(
                addr = %inherited.addr,
                name = inherited.name.as_deref().unwrap_or(""),
                "socket activation: serving the inherited listening socket (server.listen is ignored)"
            );
            Source::Inherited(inherited.listener)
        }
        Handover::NotOurs { listen_pid } => {
            tracing::info!(
                listen_pid = %listen_pid,
                "LISTEN_FDS is set, but LISTEN_PID does not name this process: ignoring it"
            );
            Source::Bind
        }
        Handover::None => Source::Bind,
    };
    let listen = config.server.listen_settings(backend);
    let io_threads = listen.threads;
    let mut public = PublicListener::new(listen, source, settings);
    let opening = Opening::decide(config.server.standby, &public);
    match opening {
        Opening::OnSignal => {
            tracing::info!(
                addr = %public.addr(),
                tls = tls_enabled,
                "standby: the public listener opens on SIGUSR2"
            );
            if check.is_none() {
                tracing::warn!(
                    "standby without server.check_socket: nothing can check this instance \
                     before its activation"
                );
            }
        }
        Opening::WhenReady => tracing::info!(
            addr = %public.addr(),
            tls = tls_enabled,
            "standby: another instance serves this port; the public listener opens once \
             this one is ready"
        ),
        Opening::Now => {
            if config.server.standby {
                // A standby instance exists to take over from a peer on this port; with
                // none (the peer is gone, or this is a restart of the one instance left),
                // waiting for a SIGUSR2 that nobody will send would be an outage.
                tracing::info!(
                    addr = %public.addr(),
                    "standby: nothing else listens on this port; opening it now"
                );
            }
            let addr = public.open()?;
            tracing::info!(
                addr = %addr,
                tls = tls_enabled,
                io_backend = gateway.lifecycle.io_backend.as_str(),
                io_threads,
                compute_threads = config.compute.resolved_threads(),
                "listening"
            );
        }
    }
    // After the public listener opened: with port 0 (tests), the redirects name the
    // port it got.
    if let Some(listen) = config.redirect.listen {
        let addr = redirect::start(RedirectSettings {
            listen,
            https_port: config.redirect.https_port(public.addr().port()),
            header_read_timeout: config.server.header_read_timeout(),
            gateway: Arc::clone(&gateway),
        })?;
        tracing::info!(%addr, "redirect listener: plain HTTP sent to HTTPS, and /health");
    }
    let traces = Arc::clone(&gateway.serving.traces);
    let repository = gateway.lifecycle.repository.as_ref().map(|r| r.look_now());
    let served = runtime.block_on(control(Control {
        gateway,
        metrics,
        signals,
        public,
        opening,
        check,
        drain_timeout: config.shutdown.drain_timeout(),
        idle_exit: config.server.idle_exit(),
        reloads: Reloads {
            repository,
            key_interval: config.auth.reload_interval(),
            tls: tls_reload,
            tls_interval: config.tls.reload_interval(),
        },
    }));
    // After the drain: the last requests' spans go out before the process does.
    traces.shutdown();
    served
}

/// `infergate hold-netns`: waits for SIGTERM or SIGINT and returns its name, doing nothing
/// else — the process that keeps a shared network namespace (and its published port) alive
/// while gateways are replaced behind it.
pub fn hold_netns() -> std::io::Result<&'static str> {
    let runtime = control_runtime()?;
    runtime.block_on(async { Ok(StopSignals::install()?.next().await) })
}

/// The current-thread runtime the control thread (and `migrate`, `hold-netns`) runs on.
fn control_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `infergate migrate`: applies the embedded migrations and reports the schema version.
pub fn migrate(
    config: &Config,
) -> Result<crate::prediction_log::schema::MigrationReport, MigrateError> {
    // No process-wide rustls provider needed: the Postgres TLS config names ring itself.
    let db = config.database.settings().ok_or(MigrateError::NoDatabase)?;
    let runtime = control_runtime().map_err(MigrateError::Runtime)?;
    runtime.block_on(async {
        let connector = crate::prediction_log::db::Connector::new(&db)?;
        let mut client = connector.connect().await?;
        let report = crate::prediction_log::schema::migrate(&mut client)
            .await
            .map_err(crate::prediction_log::db::DbError::from)?;
        Ok(report)
    })
}

/// Why `infergate migrate` failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Nothing to migrate.
    #[error(
        "no database.url configured (set it in a config file, INFERGATE_DATABASE__URL or the database_url secret)"
    )]
    NoDatabase,
    /// Postgres refused or was unreachable.
    #[error(transparent)]
    Db(#[from] crate::prediction_log::db::DbError),
    /// The runtime could not start.
    #[error("cannot start a runtime")]
    Runtime(#[source] std::io::Error),
}

/// The signals the control loop answers: SIGTERM and SIGINT drain, SIGUSR2 activates,
/// SIGHUP re-reads the API key file and the TLS certificate.
struct Signals {
    stop: StopSignals,
    activate: Signal,
    reload: Signal,
}

impl Signals {
    /// Installs the handlers; needs a tokio runtime context.
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            stop: StopSignals::install()?,
            activate: signal(SignalKind::user_defined2())?,
            reload: signal(SignalKind::hangup())?,
        })
    }
}

/// SIGTERM and SIGINT.
struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    /// Installs the handlers; needs a tokio runtime context.
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves with the name of the next SIGTERM or SIGINT.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Why the drain starts.
enum Stop {
    Signal(&'static str),
    Idle(Duration),
    /// The public listener, deferred until ready, could not open.
    OpenFailed(ServerError),
}

/// When the public listener opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// At start, before the warm-up: with no other instance on the port, a client's
    /// connection waits in the queue rather than being refused.
    Now,
    /// In standby, on SIGUSR2 (a deploy script's gate passed).
    OnSignal,
    /// Once ready (`/ready` would say 200), because another instance already serves the
    /// port: SO_REUSEPORT would otherwise hand this cold one its share of new connections
    /// while it loads and warms up (a Swarm rolling update starts the new task beside the
    /// old one), and one that never turns ready would take traffic until it is killed.
    WhenReady,
}

impl Opening {
    /// From `server.standby` and whether a peer listens where `public` will.
    fn decide(standby: bool, public: &PublicListener) -> Self {
        // An inherited socket is ours to serve (its launcher only holds it for us).
        if public.is_inherited() {
            return if standby { Self::OnSignal } else { Self::Now };
        }
        match (standby, public.peer_listening()) {
            (_, false) => Self::Now,
            (true, true) => Self::OnSignal,
            (false, true) => Self::WhenReady,
        }
    }
}

/// What the control loop runs.
struct Control {
    gateway: Arc<Gateway>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    signals: Signals,
    public: PublicListener,
    opening: Opening,
    check: Option<check_socket::Serving>,
    drain_timeout: Duration,
    idle_exit: Option<Duration>,
    /// What SIGHUP and the file looks reload.
    reloads: Reloads,
}

/// The API key file's and the TLS certificate's reload loops, before they start.
struct Reloads {
    /// The model repository's look (its loop runs on its own thread).
    repository: Option<LookNow>,
    key_interval: Duration,
    /// `None` without TLS.
    tls: Option<TlsReload>,
    tls_interval: Duration,
}

impl Reloads {
    /// Starts the loops on the calling runtime; the triggers SIGHUP fires.
    fn start(self, auth: &Arc<crate::auth::Auth>) -> Vec<LookNow> {
        let mut triggers: Vec<LookNow> = self.repository.into_iter().collect();
        let keys = LookNow::new();
        if reload::spawn(Arc::clone(auth), self.key_interval, keys.clone()) {
            triggers.push(keys);
        }
        if let Some(tls) = self.tls {
            let now = LookNow::new();
            tls_reload::spawn(tls, self.tls_interval, now.clone());
            triggers.push(now);
        }
        triggers
    }
}

/// Warm-up, metrics upkeep, activation, signal handling and the idle exit, until the drain
/// is over.
async fn control(c: Control) -> Result<(), AppError> {
    let Control {
        gateway,
        metrics,
        mut signals,
        mut public,
        opening,
        mut check,
        drain_timeout,
        idle_exit,
        reloads,
    } = c;
    let reload = reloads.start(&gateway.serving.auth);
    // A stop signal during the warm-up ends it: the drain follows, nothing is served.
    let stop = tokio::select! {
        warmed = warm_up(&gateway) => {
            warmed?;
            gateway.lifecycle.flags.mark_models_warm();
            tracing::info!(listening = public.is_open(), "ready");
            let serving = Serving {
                reload: &reload,
                idle_exit,
                opening,
            };
            serve_until_stop(&gateway, &metrics, &mut signals, &mut public, serving).await
        }
        name = signals.stop.next() => {
            tracing::info!(signal = name, "signal during warm-up: not serving");
            Stop::Signal(name)
        }
    };
    let shutdown = &gateway.lifecycle.shutdown;
    let drain_deadline = tokio::time::Instant::now() + drain_timeout;
    shutdown.begin_drain();
    // The accept loops stop now; the check socket serves until the end.
    gateway.lifecycle.flags.set_listening(false);
    match stop {
        Stop::Signal(name) => tracing::info!(
            signal = name,
            open_connections = shutdown.open_connections(),
            drain_timeout_ms = drain_timeout.as_millis() as u64,
            "draining: no new connections, finishing in-flight requests"
        ),
        Stop::Idle(idle) => tracing::info!(
            idle_s = idle.as_secs(),
            open_connections = shutdown.open_connections(),
            drain_timeout_ms = drain_timeout.as_millis() as u64,
            "no request for {} s (server.idle_exit_s): draining and exiting",
            idle.as_secs()
        ),
        Stop::OpenFailed(_) => tracing::info!("draining: the public listener did not open"),
    }
    tokio::select! {
        () = shutdown.wait_closed() => {
            tracing::info!("drained; exiting");
        }
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!(
                open_connections = shutdown.open_connections(),
                "drain deadline passed; closing the remaining connections"
            );
        }
        name = signals.stop.next() => second_signal(name, check.take()),
    }
    // Mirrored requests hand their rows over (with or without a comparison) before the
    // log closes; the shadow gets at most a fifth of what is left of the drain.
    let shadow_deadline = tokio::time::Instant::now()
        + drain_deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(500))
            / 5;
    if !gateway.lifecycle.shadow.close(shadow_deadline).await {
        tracing::warn!("the shadow runner did not stop in time");
    }
    if let Some(log) = &gateway.lifecycle.log {
        // Requests are answered; their rows go to Postgres, or to the spool, before exit.
        // The log gets what is left of the drain deadline, and at least a second.
        let deadline = drain_deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            done = log.close(deadline) => {
                if !done {
                    tracing::error!("prediction log did not finish draining in time");
                }
            }
            name = signals.stop.next() => second_signal(name, check.take()),
        }
    }
    if let Some(check) = check {
        check.close();
    }
    drop(public);
    match stop {
        Stop::OpenFailed(e) => Err(e.into()),
        Stop::Signal(_) | Stop::Idle(_) => Ok(()),
    }
}

/// What the serving phase answers besides the listener and the signals.
struct Serving<'a> {
    /// The reload loops SIGHUP asks for a look.
    reload: &'a [LookNow],
    idle_exit: Option<Duration>,
    opening: Opening,
}

/// Serves until a signal or the idle exit says stop; opens the public listener on SIGUSR2,
/// re-reads the API keys and the TLS certificate on SIGHUP.
async fn serve_until_stop(
    gateway: &Gateway,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
    signals: &mut Signals,
    public: &mut PublicListener,
    serving: Serving<'_>,
) -> Stop {
    let Serving {
        reload,
        idle_exit,
        opening,
    } = serving;
    let idle = idle_exit.map(|after| IdleExit::new(&gateway.serving.last_request, after));
    // Idle time counts from when the gateway can be reached at all.
    gateway
        .serving
        .last_request
        .stamp(tokio::time::Instant::now());
    let mut upkeep = tokio::time::interval(METRICS_UPKEEP);
    let mut noise = NoiseSummary::new(client_noise::SUMMARY_INTERVAL);
    let mut ready_poll = tokio::time::interval(READY_POLL);
    loop {
        tokio::select! {
            _ = ready_poll.tick(), if opening == Opening::WhenReady && !public.is_open() => {
                if !Readiness::of(gateway).is_ready() {
                    continue;
                }
                match public.open() {
                    Ok(addr) => {
                        gateway.serving.last_request.stamp(tokio::time::Instant::now());
                        tracing::info!(addr = %addr, "ready beside the serving instance: listening on {addr}");
                    }
                    Err(e) => {
                        tracing::error!(
                            error = %e,
                            cause = std::error::Error::source(&e).map(ToString::to_string),
                            "cannot open the public listener"
                        );
                        return Stop::OpenFailed(e);
                    }
                }
            }
            now = upkeep.tick() => {
                metrics.run_upkeep();
                #[cfg(feature = "cuda")]
                crate::infer::cuda::record_memory();
                noise.write_if_due(now);
            }
            name = signals.stop.next() => return Stop::Signal(name),
            _ = signals.reload.recv() => {
                if reload.is_empty() {
                    tracing::info!("SIGHUP: nothing to reload (no API key file, no TLS)");
                }
                reload.iter().for_each(LookNow::fire);
            }
            _ = signals.activate.recv() => {
                if public.is_open() {
                    tracing::info!(addr = %public.addr(), "SIGUSR2: already listening");
                    continue;
                }
                match public.open() {
                    Ok(addr) => {
                        gateway.serving.last_request.stamp(tokio::time::Instant::now());
                        tracing::info!(addr = %addr, "activated: listening on {addr}");
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        cause = std::error::Error::source(&e).map(ToString::to_string),
                        "activation failed: still in standby (SIGUSR2 tries again)"
                    ),
                }
            }
            // Only while the public listener is open: a standby instance waits for its
            // activation however long the rollout takes.
            idle_for = idle_expired(idle.as_ref()), if public.is_open() => {
                return Stop::Idle(idle_for);
            }
        }
    }
}

async fn idle_expired(idle: Option<&IdleExit<'_>>) -> Duration {
    match idle {
        Some(idle) => idle.expired().await,
        None => std::future::pending().await,
    }
}

/// What every connection of a listener is served with: the gateway, the config's
/// timeouts and HTTP limits, the per-address cap the listeners share, and HSTS on a TLS
/// listener only (`tls` is `None` for the check socket, which is plaintext).
pub fn conn_settings(
    config: &Config,
    gateway: &Arc<Gateway>,
    tls: Option<Arc<rustls::ServerConfig>>,
    peer_cap: &Arc<PeerCap>,
) -> ConnSettings {
    let hsts = tls.as_ref().and_then(|_| {
        config
            .tls
            .hsts()
            .and_then(|v| http::HeaderValue::from_str(&v).ok())
    });
    ConnSettings {
        gateway: Arc::clone(gateway),
        tls,
        handshake_timeout: config.server.tls_handshake_timeout(),
        header_read_timeout: config.server.header_read_timeout(),
        idle_timeout: config.server.keepalive_idle_timeout(),
        linger: config.shutdown.linger(),
        park_after: config.server.keepalive_park_after(),
        http: config.http.settings(),
        hsts,
        peer_cap: Arc::clone(peer_cap),
    }
}

fn second_signal(name: &str, check: Option<check_socket::Serving>) -> ! {
    tracing::warn!(signal = name, "second signal: exiting now");
    // The one cleanup worth a moment: no stale socket file left behind.
    drop(check);
    std::process::exit(130);
}

/// Runs one inference per model ([`crate::infer::Infer::warm_up`]) so `/ready` only turns 200 once
/// every model really answers.
pub async fn warm_up(gateway: &Gateway) -> Result<(), InferError> {
    // Versions on demand are not in memory; each was run at the look that listed it.
    let catalog = gateway.serving.infer.catalog();
    for model in catalog.loaded().filter(|m| m.on_demand().is_none()) {
        gateway.serving.infer.warm_up(model).await?;
    }
    Ok(())
}

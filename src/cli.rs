//! The command line: subcommands and the flags for the common knobs.
//!
//! Flags are the top configuration layer; everything else comes from files, environment
//! variables and secrets (see `config`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{FlagOverrides, LoadOptions};
use crate::server::backend::IoBackend;
use crate::telemetry::LogFormat;

/// infergate: an HTTPS inference gateway in one process.
///
/// Configuration layers, later wins: built-in defaults < <config-dir>/default.toml <
/// <config-dir>/<profile>.toml < --config FILE < INFERGATE_* environment variables
/// (`__` nests: INFERGATE_SERVER__MAX_BODY_BYTES) < Docker secrets (<secrets.dir>/tls_cert,
/// tls_key, or INFERGATE_<KEY>_FILE=path) < these flags.
#[derive(Debug, Parser)]
#[command(name = "infergate", version, about, long_about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where configuration comes from, and the common knobs.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve HTTPS predictions (the default).
    Serve,
    /// Validate the configuration: exit 0 when valid, 2 with every error listed.
    CheckConfig,
    /// Print the merged configuration as TOML; secrets show as [redacted].
    PrintConfig {
        /// Add a comment above each key naming the layer that set it.
        #[arg(long)]
        sources: bool,
        /// Print the built-in defaults instead, each key under its documentation (what
        /// config/default.toml holds); no configuration is read.
        #[arg(long, conflicts_with_all = ["sources", "reference"])]
        defaults: bool,
        /// Print the configuration reference instead: a Markdown table per section (key,
        /// default, environment variable, what it does; docs/configuration.md holds it).
        #[arg(long, conflicts_with = "sources")]
        reference: bool,
    },
    /// Apply the embedded database migrations (the prediction log's schema) and exit: 0
    /// when the schema is current, 1 when the database cannot be reached, 2 when no
    /// database.url is configured. Safe to run while gateways serve.
    Migrate,
    /// Probe a running gateway: exit 0 when the URL answers 2xx, 1 otherwise (the status
    /// and the start of the body go to stderr). For a container HEALTHCHECK without curl,
    /// and for deploy scripts: with --socket it speaks plaintext HTTP/1.1 to one instance's
    /// check socket; with --data it POSTs a smoke request. The server certificate is not
    /// verified.
    Healthcheck(HealthcheckArgs),
    /// Hold the network namespace of a container open until SIGTERM or SIGINT, and do
    /// nothing else: gateways join it (Compose `network_mode: service:edge`), so its
    /// published port and sysctls outlive every gateway replaced behind it (deploy.sh).
    HoldNetns,
    /// Make an API key and print the line to add to the key file (auth.keys_path, or the
    /// `api_keys` secret): the line (name, scopes, SHA-256 of the key) on stdout, the key
    /// itself once on stderr. The file never holds the key.
    HashKey(HashKeyArgs),
}

/// What `infergate hash-key` makes.
#[derive(Debug, Clone, Args)]
pub struct HashKeyArgs {
    /// The key's name, shown in logs, spans and log rows (letters, digits, - _ . @).
    #[arg(long)]
    pub name: String,
    /// Comma-separated scopes: predict (POST /predict), admin (everything; implies predict).
    #[arg(long, default_value = "predict")]
    pub scopes: String,
    /// Hash the key read from stdin instead of making one.
    #[arg(long)]
    pub key_stdin: bool,
}

/// What `infergate healthcheck` sends, and where.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// URL to request; with --socket only its path (and Host) is used, e.g.
    /// http://localhost/ready.
    #[arg(long, default_value = "https://127.0.0.1:8443/health")]
    pub url: String,
    /// Speak plaintext HTTP/1.1 over this Unix-domain socket (an instance's
    /// server.check_socket) instead of connecting to the URL's host.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// POST this body instead of a GET (a smoke prediction, e.g. '{"features":[5.1,3.5,1.4,0.2]}').
    #[arg(long, value_name = "BODY")]
    pub data: Option<String>,
    /// Content-Type of the --data body.
    #[arg(long, default_value = "application/json", value_name = "TYPE")]
    pub content_type: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    pub timeout_ms: u64,
}

/// Flags accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// One more TOML file, layered over the config directory's files.
    #[arg(long, global = true, env = "INFERGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding default.toml and <profile>.toml.
    #[arg(
        long,
        global = true,
        env = "INFERGATE_CONFIG_DIR",
        default_value = "config",
        value_name = "DIR"
    )]
    pub config_dir: PathBuf,
    /// Profile: layers <config-dir>/<NAME>.toml over default.toml (e.g. `compose`).
    #[arg(long, global = true, env = "INFERGATE_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Address to listen on [config: server.listen; default 0.0.0.0:8443].
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// I/O threads, one listener each [config: server.io_threads; default 0 = one per core].
    #[arg(long, global = true, value_name = "N")]
    pub io_threads: Option<usize>,
    /// I/O backend: auto (io_uring where allowed, else epoll), uring, epoll [config:
    /// server.io; default auto].
    #[arg(long, global = true, value_enum)]
    pub io: Option<IoBackend>,
    /// Compute threads running models [config: compute.threads; default 0 = half the cores].
    #[arg(long, global = true, value_name = "N")]
    pub compute_threads: Option<usize>,
    /// Log format [config: log.format; default pretty].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Load and warm up, serve the check socket, but open the public listener only on
    /// SIGUSR2 [config: server.standby; default off].
    #[arg(long, global = true)]
    pub standby: bool,
    /// Drain and exit 0 after this many seconds without a request [config:
    /// server.idle_exit_s; default 0 = never].
    #[arg(long = "idle-exit", global = true, value_name = "SECONDS")]
    pub idle_exit: Option<u64>,
    /// Refuse to start (exit 2) when the open-file limit cannot hold
    /// server.max_connections [config: server.strict_fd_limit; default off: a WARN].
    #[arg(long, global = true)]
    pub strict: bool,
}

impl GlobalArgs {
    /// Where to load configuration from, and the flag layer.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            config_dir: self.config_dir.clone(),
            profile: self.profile.clone(),
            config_file: self.config.clone(),
            flags: FlagOverrides {
                listen: self.listen,
                io_threads: self.io_threads,
                io: self.io,
                compute_threads: self.compute_threads,
                log_format: self.log_format,
                standby: self.standby.then_some(true),
                idle_exit_s: self.idle_exit,
                strict_fd_limit: self.strict.then_some(true),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "infergate",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--io-threads",
            "2",
        ])
        .unwrap();
        let opts = cli.global.load_options();
        assert_eq!(
            opts.flags.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 1)))
        );
        assert_eq!(opts.flags.io_threads, Some(2));
        assert_eq!(opts.flags.standby, None);
        assert_eq!(opts.flags.idle_exit_s, None);
    }

    #[test]
    fn standby_and_idle_exit_flags() {
        let cli =
            Cli::try_parse_from(["infergate", "serve", "--standby", "--idle-exit", "300"]).unwrap();
        let opts = cli.global.load_options();
        assert_eq!(opts.flags.standby, Some(true));
        assert_eq!(opts.flags.idle_exit_s, Some(300));
    }

    #[test]
    fn healthcheck_over_a_socket_with_a_body() {
        let cli = Cli::try_parse_from([
            "infergate",
            "healthcheck",
            "--socket",
            "/run/infergate/check.sock",
            "--url",
            "http://localhost/predict",
            "--data",
            "{}",
        ])
        .unwrap();
        let Some(Command::Healthcheck(args)) = &cli.command else {
            panic!("not a healthcheck: {cli:?}");
        };
        assert_eq!(
            args.socket.as_deref(),
            Some(std::path::Path::new("/run/infergate/check.sock"))
        );
        assert_eq!(args.data.as_deref(), Some("{}"));
        assert_eq!(args.content_type, "application/json");
    }
}

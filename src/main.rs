//! The `infergate` binary: parse flags, load config, run a subcommand, pick an exit code.
//!
//! Exit codes: 0 success (also after an idle exit); 1 runtime failure (bind, TLS, model,
//! an unusable socket handed over by socket activation) or failed healthcheck;
//! 2 invalid configuration (reported before anything binds), or `server.io = "uring"` where
//! io_uring is refused; 130 a second signal while draining.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser as _;

use infergate::cli::{Cli, Command, HashKeyArgs, HealthcheckArgs};
use infergate::config::{self, Config};
use infergate::server::fd_limit::{self, FdLimitError};

/// jemalloc, which counts the bytes each thread allocates and frees: how what a load on
/// demand keeps is measured (`repository/footprint.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.clone().unwrap_or(Command::Serve);
    if let Command::Healthcheck(args) = &command {
        return healthcheck(args);
    }
    if let Command::HoldNetns = &command {
        return hold_netns();
    }
    if let Command::HashKey(args) = &command {
        return hash_key(args);
    }
    if let Command::PrintConfig {
        defaults,
        reference,
        ..
    } = command
        && (defaults || reference)
    {
        return print_generated(defaults);
    }
    let loaded = match config::load(&cli.global.load_options()) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("infergate: invalid configuration:\n{errors}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::CheckConfig => check_config(&loaded.config),
        Command::PrintConfig { sources, .. } => {
            // print-config's output is the one thing this program writes to stdout.
            // The access line is a TOML comment, so the output still parses.
            let rendered = config::render_toml(&loaded, sources);
            let (header, rest) = rendered.split_once('\n').unwrap_or((&rendered, ""));
            let access = infergate::app::access::summary(&loaded.config);
            #[allow(clippy::print_stdout)]
            {
                print!("{header}\n# access: {access}\n{rest}");
            }
            ExitCode::SUCCESS
        }
        Command::Migrate => migrate(&loaded.config),
        Command::Serve
        | Command::Healthcheck { .. }
        | Command::HoldNetns
        | Command::HashKey { .. } => match serve(&loaded, cli.global.load_options()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if is_config_refusal(&e) => {
                eprintln!("infergate: {e:#}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("infergate: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `check-config`, once the configuration is valid: says so, who may call what (protected
/// mode's effect included), and what the open-file limit
/// will be once raised at start beside what `server.max_connections` needs; exit 2 when it
/// falls short and `server.strict_fd_limit` would refuse to start.
fn check_config(config: &Config) -> ExitCode {
    eprintln!("configuration is valid");
    eprintln!("access: {}", infergate::app::access::summary(config));
    let server = &config.server;
    let Ok(limit) = fd_limit::current() else {
        eprintln!("open-file limit: cannot be read");
        return ExitCode::SUCCESS;
    };
    let at_start = fd_limit::attainable(&limit).max(limit.soft);
    let needed = limit.needed(server.max_connections);
    let verdict = match (at_start >= needed, server.strict_fd_limit) {
        (true, _) => "enough",
        (false, false) => "too low: a WARN at start, and idle connections closed near it",
        (false, true) => "too low: server.strict_fd_limit refuses to start",
    };
    eprintln!(
        "open-file limit: {at_start} at start (soft {} now, hard {}); server.max_connections \
         {} needs {needed} with the gateway's own: {verdict}",
        limit.soft, limit.hard, server.max_connections
    );
    if at_start < needed && server.strict_fd_limit {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// `print-config --defaults` (config/default.toml) or `--reference` (the Markdown tables
/// of docs/configuration.md), generated from the built-in sections; reads no configuration.
fn print_generated(defaults: bool) -> ExitCode {
    let text = match defaults {
        true => config::reference::defaults_toml(),
        false => config::reference::reference_markdown(),
    };
    // print-config's output is the one thing this program writes to stdout.
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
    ExitCode::SUCCESS
}

/// A failure that a configuration change fixes, found only at start (exit 2, as for an
/// invalid file): `server.io = "uring"` where io_uring is refused, an API key file that
/// cannot be used, or (`server.strict_fd_limit`) an open-file limit too low.
fn is_config_refusal(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<infergate::app::AppError>(),
        Some(
            infergate::app::AppError::UringRefused(_)
                | infergate::app::AppError::Keys(_)
                | infergate::app::AppError::FdLimit(FdLimitError::TooLow { .. })
        )
    )
}

fn migrate(config: &Config) -> ExitCode {
    if let Err(e) = infergate::telemetry::init(&config.log.settings()) {
        eprintln!("infergate migrate: cannot start logging: {e}");
    }
    match infergate::app::migrate(config) {
        Ok(report) => {
            eprintln!(
                "infergate migrate: schema at version {} ({} applied now)",
                report.current,
                report.applied.len()
            );
            ExitCode::SUCCESS
        }
        Err(e @ infergate::app::MigrateError::NoDatabase) => {
            eprintln!("infergate migrate: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("infergate migrate: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

fn serve(loaded: &config::Loaded, options: config::LoadOptions) -> anyhow::Result<()> {
    let config = &loaded.config;
    set_compute_threads(config.compute.intra_op_threads);
    // Before any thread exists: taking a socket handed over by socket activation removes
    // LISTEN_PID and LISTEN_FDS from the environment.
    let handover = infergate::server::activation::take_from_env()?;
    infergate::telemetry::init(&config.log.settings()).context("cannot start logging")?;
    infergate::app::serve(loaded, options, handover)?;
    Ok(())
}

/// Tells candle's CPU kernels (gemm via rayon), and tract's, how many threads one forward
/// pass may use.
/// candle reads only `RAYON_NUM_THREADS`, on every matmul, so it must be set in the
/// environment, and before any thread exists.
#[allow(unsafe_code, clippy::disallowed_methods)]
fn set_compute_threads(threads: usize) {
    // SAFETY: called from `main` before the first thread is spawned (no runtime, no logger
    // thread yet), so nothing can read the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.max(1).to_string()) };
    infergate::infer::onnx::share_intra_op_threads(threads);
}

fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    let probe = infergate::healthcheck::Probe {
        url: args.url.clone(),
        socket: args.socket.clone(),
        body: args.data.as_ref().map(|d| {
            (
                args.content_type.clone(),
                Bytes::from(d.clone().into_bytes()),
            )
        }),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let target = match &args.socket {
        Some(socket) => format!("{} over {}", args.url, socket.display()),
        None => args.url.clone(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("infergate healthcheck: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(infergate::healthcheck::check(&probe)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infergate healthcheck: {target}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sleeps until SIGTERM or SIGINT: the process that keeps a shared network namespace alive.
fn hold_netns() -> ExitCode {
    match infergate::app::hold_netns() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infergate hold-netns: cannot wait for signals: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `infergate hash-key`: the key file line for a new key (or one read from stdin) on
/// stdout, the new key itself on stderr, once.
fn hash_key(args: &HashKeyArgs) -> ExitCode {
    use infergate::auth::keys;
    use std::io::Read as _;
    let scopes = match keys::parse_scopes(&args.scopes) {
        Ok(scopes) => scopes,
        Err(e) => {
            eprintln!("infergate hash-key: {e} (scopes: predict, admin)");
            return ExitCode::from(2);
        }
    };
    let key = if args.key_stdin {
        let mut key = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut key) {
            eprintln!("infergate hash-key: cannot read the key from stdin: {e}");
            return ExitCode::FAILURE;
        }
        key.trim().to_owned()
    } else {
        match keys::generate() {
            Ok(key) => key,
            Err(e) => {
                eprintln!("infergate hash-key: no randomness from the OS: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    if key.is_empty() {
        eprintln!("infergate hash-key: the key is empty");
        return ExitCode::from(2);
    }
    let line = keys::line(&args.name, scopes, &key);
    if let Err(e) = keys::KeySet::parse(&line) {
        eprintln!("infergate hash-key: {}", e.message);
        return ExitCode::from(2);
    }
    if !args.key_stdin {
        eprintln!(
            "API key for {:?} (give it to the client; only its hash is kept): {key}",
            args.name
        );
    }
    // The line is this command's output, for `>> api_keys`.
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

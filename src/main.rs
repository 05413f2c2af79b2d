//! The `hookcast` command: parse arguments (options before or after the subcommand,
//! each settable from a `HOOKCAST_*` variable), load the config (exit 2 if invalid,
//! before any port is bound), set up logging, bind, and serve until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use hookcast::config::{self, Config, LogFormat, Overrides};

/// hookcast: turns webhooks into Server-Sent Events.
#[derive(Debug, Parser)]
#[command(
    name = "hookcast",
    version,
    override_usage = "hookcast [OPTIONS]              run\n       \
                      hookcast check [OPTIONS]        check the configuration and exit\n       \
                      hookcast route [OPTIONS] ...    dry-run one request through the routes",
    after_help = "Options may come before or after the command. The settings below --config \
                  win over the file's, at start and at every reload.\n\
                  Exit codes: 0 ok, 1 runtime failure (e.g. the port is taken), 2 bad usage or configuration."
)]
struct Cli {
    /// The configuration file [default: hookcast.yaml]
    #[arg(
        short,
        long,
        global = true,
        env = "HOOKCAST_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Public listener, instead of the file's `listen`
    #[arg(long, global = true, env = "HOOKCAST_LISTEN", value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Admin listener, instead of the file's `admin.listen`
    #[arg(
        long,
        global = true,
        env = "HOOKCAST_ADMIN_LISTEN",
        value_name = "ADDR"
    )]
    admin_listen: Option<std::net::SocketAddr>,
    /// Log level or filter (`info`, `info,hookcast=debug`), instead of `log.level`
    #[arg(long, global = true, env = "HOOKCAST_LOG_LEVEL", value_name = "LEVEL",
          value_parser = config::parse_log_level)]
    log_level: Option<String>,
    /// Log format, text or json, instead of `log.format`
    #[arg(long, global = true, env = "HOOKCAST_LOG_FORMAT", value_name = "FORMAT",
          value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the configuration and exit, like `nginx -t`: `ok: N routes`, or every error (exit 2)
    Check,
    /// Dry-run one request through the routes: --path P [--method M] [-H 'Name: value']...
    /// [--body TEXT|@FILE] [--verify] (`hookcast route --help` for more); connects to nothing
    #[command(disable_help_flag = true)]
    Route {
        /// Read by `hookcast route` itself (its one parser lives in `dryrun`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("`{s}` is not a log format; use text or json")),
    }
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            admin_listen: self.admin_listen,
            log_level: self.log_level.clone(),
            log_format: self.log_format,
        }
    }
}

/// Where the config file comes from, for the message when it is missing.
fn config_file(cli: &Cli, matches: &ArgMatches) -> (PathBuf, String) {
    match (&cli.config, matches.value_source("config")) {
        (Some(f), Some(ValueSource::EnvVariable)) => (f.clone(), "from $HOOKCAST_CONFIG".into()),
        (Some(f), _) => (f.clone(), "from --config".into()),
        (None, _) => (
            config::path_or_default(None),
            "the default: neither --config nor $HOOKCAST_CONFIG is set".into(),
        ),
    }
}

/// Loads the config, or prints why not.
fn load(file: &std::path::Path, origin: &str, overrides: &Overrides) -> Option<Config> {
    match config::load_with(file, overrides) {
        Ok(c) => Some(c),
        Err(config::Error::Read { file, source })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            eprintln!(
                "hookcast: no configuration file at {file} ({origin}).\n\
                 Give one with --config FILE or $HOOKCAST_CONFIG; to start, copy config.example.yaml \
                 from the hookcast repository, which documents every key."
            );
            None
        }
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let (file, origin) = config_file(&cli, &matches);
    let overrides = cli.overrides();
    match cli.command {
        Some(Command::Check) => match load(&file, &origin, &overrides) {
            Some(c) => {
                let n = c.router.len();
                println!("ok: {n} route{}", if n == 1 { "" } else { "s" });
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        },
        Some(Command::Route { args }) => {
            // A --config given before `route` comes first, so one after it wins.
            let named = match matches.value_source("config") {
                Some(ValueSource::CommandLine) => {
                    vec!["--config".into(), file.display().to_string()]
                }
                _ => Vec::new(),
            };
            hookcast::dryrun::run(named.into_iter().chain(args))
        }
        None => {
            let Some(config) = load(&file, &origin, &overrides) else {
                return ExitCode::from(2);
            };
            // Fingerprinted at once, so that an edit from here on is seen as one.
            let source = hookcast::reload::Source::new(
                file,
                std::sync::Arc::new(tokio::sync::Notify::new()),
                &config,
            )
            .with_overrides(overrides);
            init_tracing(&config);
            serve(config, source)
        }
    }
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in files or container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The effective configuration, without secrets: what an operator checks first.
fn log_summary(c: &Config) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %c.listen,
        admin = %c.admin.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        upstream = %c.upstream.as_ref().map_or_else(|| "none".to_owned(), |u| u.authority.to_string()),
        routes = c.router.len(),
        sse_path = %c.sse.path,
        heartbeat_ms = c.sse.heartbeat.as_millis() as u64,
        history = c.sse.history,
        max_subscribers = c.sse.max_subscribers,
        max_stream_duration_ms = c.sse.max_stream_duration.map(|d| d.as_millis() as u64),
        subscriber_auth = c.subscribers.name(),
        cors = c.cors.is_some(),
        shutdown_grace_ms = c.shutdown_grace.as_millis() as u64,
        secret_files = c.secret_files.len(),
        "effective configuration"
    );
}

/// Binds with a listen backlog larger than std's 128, so that thousands of
/// browsers reconnecting at once are not dropped and retried a second later.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn serve(config: Config, source: hookcast::reload::Source) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookcast: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match bind(config.listen) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(addr = %config.listen, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let admin = match config.admin.map(bind).transpose() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(addr = ?config.admin, error = %e, "cannot listen on admin.listen");
                return ExitCode::FAILURE;
            }
        };
        if let Some(l) = &admin
            && let Ok(addr) = l.local_addr()
        {
            tracing::info!(%addr, "admin listening: /healthz /readyz /metrics");
        }
        log_summary(&config);
        hookcast::shutdown::forward_sighup(source.trigger());
        let options = hookcast::Options {
            admin,
            reload: Some(source),
        };
        match hookcast::serve(listener, config, hookcast::shutdown::signal(), options).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

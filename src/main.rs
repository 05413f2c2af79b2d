//! The `hookcast` command: parse arguments, load the config (exit 2 if invalid,
//! before any port is bound), set up logging, bind, and serve until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use hookcast::config::{self, Config, LogFormat};

const USAGE: &str = "\
hookcast — turns webhooks into Server-Sent Events

Usage:
  hookcast [--config FILE]          run
  hookcast check [--config FILE]    check the configuration and exit
  hookcast route [--config FILE] --path PATH [--method M] [-H 'Name: value']... [--body TEXT|@FILE] [--verify]
                                    which route a request takes and what it publishes (dry run)
  hookcast --version | --help

FILE defaults to $HOOKCAST_CONFIG, then hookcast.yaml.
Exit codes: 0 ok, 1 runtime failure (e.g. the port is taken), 2 bad usage or configuration.";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
}

fn parse_args() -> Result<Command, String> {
    let mut args = std::env::args().skip(1);
    let mut check = false;
    let mut file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--version" | "-V" => {
                println!("hookcast {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "check" if !check && file.is_none() => check = true,
            "--config" | "-c" => file = Some(args.next().ok_or("--config needs a file name")?),
            a if a.starts_with("--config=") => file = Some(a["--config=".len()..].to_owned()),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let file = config::path_or_default(file);
    Ok(if check {
        Command::Check(file)
    } else {
        Command::Run(file)
    })
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("route") {
        return hookcast::dryrun::run(std::env::args().skip(2));
    }
    let command = match parse_args() {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("hookcast: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Check(file) => match config::load(&file) {
            Ok(c) => {
                let n = c.router.len();
                println!("ok: {n} route{}", if n == 1 { "" } else { "s" });
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run(file) => {
            let config = match config::load(&file) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            // Fingerprinted at once, so that an edit from here on is seen as one.
            let source = hookcast::reload::Source::new(
                file,
                std::sync::Arc::new(tokio::sync::Notify::new()),
                &config,
            );
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

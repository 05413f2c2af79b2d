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
    let file = file
        .or_else(|| {
            std::env::var("HOOKCAST_CONFIG")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "hookcast.yaml".into());
    let file = PathBuf::from(file);
    Ok(if check {
        Command::Check(file)
    } else {
        Command::Run(file)
    })
}

fn main() -> ExitCode {
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
            init_tracing(&config);
            serve(config)
        }
    }
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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

fn serve(config: Config) -> ExitCode {
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
        match hookcast::run(listener, config, hookcast::shutdown::signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

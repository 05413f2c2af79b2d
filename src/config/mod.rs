//! Configuration: the YAML file, checked whole before any port is bound.
//!
//! [`load`] reads and deserializes the file ([`raw`]; [`recover`] carries on past
//! unknown keys and wrong types so that all of them are reported), then checks every
//! value and builds a [`Config`]. Every problem is reported as `FILE:LINE:COL: message`.
//!
//! Each section is checked in its own file: `broker/` (one module per shared kind),
//! `cors.rs`, `inspect.rs`, `limits.rs` (`sse`, `dedupe`, `limits`), `log.rs`,
//! `routes.rs`, `secrets.rs`, `streams.rs`, `subscribers.rs`, `upstream.rs`,
//! `verify.rs`; `units.rs` reads durations and sizes; `error.rs` holds what a
//! rejected file reports.

mod broker;
mod cors;
mod error;
mod inspect;
mod limits;
mod log;
mod raw;
mod recover;
mod routes;
mod secrets;
mod streams;
mod subscribers;
mod units;
mod upstream;
mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use crate::auth;
use crate::cors::Cors;
use crate::route::Router;
use crate::streams::Streams;

pub use broker::{
    Broker, NatsBroker, NatsNameError, NatsUrlError, RedisBroker, RedisUrlError, nats_servers,
};
pub use error::{Diagnostic, Error};
pub use inspect::Inspect;
pub use limits::{ClientLimits, Dedupe, Sse};
pub use log::{Log, LogFormat, LogLevelError, parse_log_level};
pub use upstream::Upstream;

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub shutdown_grace: Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; absent: nowhere.
    pub admin: Option<SocketAddr>,
    /// The application behind hookcast; without one, unmatched requests get 404.
    pub upstream: Option<Upstream>,
    pub sse: Sse,
    pub dedupe: Dedupe,
    pub limits: ClientLimits,
    /// Absent: no CORS headers.
    pub cors: Option<Cors>,
    pub subscribers: auth::Mode,
    pub log: Log,
    /// Where events are stored and shared: this process, Redis or NATS JetStream.
    pub broker: Broker,
    pub demo: bool,
    /// The delivery log the admin listener shows.
    pub inspect: Inspect,
    pub router: Router,
    /// `streams`: event streams on the application's own URLs.
    pub streams: Streams,
    /// Every `secret_file` read, watched for changes like the config file.
    pub secret_files: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            shutdown_grace: Duration::from_secs(10),
            admin: None,
            upstream: None,
            sse: Sse {
                path: "/events".into(),
                heartbeat: Duration::from_secs(15),
                retry: Duration::from_secs(3),
                history: 1000,
                history_ttl: Duration::from_secs(3600),
                history_bytes: 16 << 20,
                subscriber_queue: 1024,
                subscriber_queue_bytes: 8 << 20,
                max_subscribers: 100_000,
                max_topics_per_subscriber: 32,
                max_stream_duration: None,
            },
            dedupe: Dedupe {
                window: Duration::from_secs(3600),
                max_keys: 100_000,
            },
            limits: ClientLimits {
                max_body: 1 << 20,
                header_read_timeout: Duration::from_secs(10),
                max_connections: None,
                max_subscribers_per_ip: None,
                trusted_proxies: Vec::new(),
            },
            cors: None,
            subscribers: auth::Mode::None,
            log: Log {
                format: LogFormat::Text,
                level: "info".into(),
            },
            broker: Broker::Memory,
            demo: false,
            inspect: Inspect::default(),
            router: Router::default(),
            streams: Streams::default(),
            secret_files: Vec::new(),
        }
    }
}

/// Settings given on the command line or in the environment (`--listen` or
/// `HOOKCAST_LISTEN`, …): they win over the file, at start and at every reload, so a
/// container image can keep one config file for every environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    /// Checked with [`parse_log_level`].
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl Overrides {
    pub fn apply(&self, c: &mut Config) {
        if let Some(a) = self.listen {
            c.listen = a;
        }
        if let Some(a) = self.admin_listen {
            c.admin = Some(a);
        }
        if let Some(l) = &self.log_level {
            c.log.level.clone_from(l);
        }
        if let Some(f) = self.log_format {
            c.log.format = f;
        }
    }
}

/// [`load`], then `overrides` on top.
pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Config, Error> {
    let mut c = load(path)?;
    overrides.apply(&mut c);
    Ok(c)
}

/// The config file named on the command line, else `$HOOKCAST_CONFIG`, else `hookcast.yaml`.
pub fn path_or_default(named: Option<String>) -> PathBuf {
    let file = named
        .or_else(|| {
            std::env::var("HOOKCAST_CONFIG")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "hookcast.yaml".into());
    PathBuf::from(file)
}

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> Result<Config, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        file: file.clone(),
        source,
    })?;
    from_yaml(&file, &text)
}

/// Checks YAML text; `file` names it in errors, and relative `secret_file`
/// paths are read from its directory. Secrets come from the process environment.
pub fn from_yaml(file: &str, text: &str) -> Result<Config, Error> {
    from_yaml_with_env(file, text, &|name| std::env::var_os(name))
}

/// [`from_yaml`] with `secret_env` names looked up in `env` instead of the
/// process environment.
pub fn from_yaml_with_env(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Config, Error> {
    let invalid = |diagnostics| Error::Invalid {
        file: file.to_owned(),
        diagnostics,
    };
    // Unknown keys and wrong types, all of them; then the values, of what remains.
    let (root, structural) =
        recover::deserialize::<Option<raw::Root>>(text, error::syntax_diagnostic);
    let Some(root) = root else {
        return Err(invalid(structural));
    };
    let root = root.unwrap_or_default();
    let mut check = Checker {
        diagnostics: structural,
        env,
        dir: Path::new(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        secret_files: Vec::new(),
    };
    let config = check.root(root);
    if check.diagnostics.is_empty() {
        Ok(config)
    } else {
        check.diagnostics.sort_by_key(|d| (d.line, d.column));
        Err(invalid(check.diagnostics))
    }
}

/// Checks the deserialized file section by section (an `impl Checker` in each
/// section's file), collecting every problem instead of stopping at the first.
struct Checker<'e> {
    diagnostics: Vec<Diagnostic>,
    env: &'e dyn Fn(&str) -> Option<std::ffi::OsString>,
    /// Where relative `secret_file` paths start.
    dir: PathBuf,
    secret_files: Vec<PathBuf>,
}

impl Checker<'_> {
    fn error(&mut self, at: &Location, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            line: at.line().max(1),
            column: at.column().max(1),
            message: message.into(),
        });
    }

    fn root(&mut self, raw: raw::Root) -> Config {
        let d = Config::default();
        let listen = match raw.listen {
            None => d.listen,
            Some(v) => self.address("listen", &v).unwrap_or(d.listen),
        };
        let admin = raw.admin.and_then(|a| {
            let addr = self.address("admin.listen", &a.listen)?;
            if addr.port() != 0 && addr == listen {
                self.error(
                    &a.listen.referenced,
                    "admin.listen must differ from listen: the admin endpoints are not for the public",
                );
            }
            Some(addr)
        });
        let shutdown_grace = self.duration(
            "shutdown_grace",
            raw.shutdown_grace,
            d.shutdown_grace,
            Duration::ZERO,
        );
        // A forward route needs an upstream; an upstream with a bad url is reported once, there.
        let raw_has_upstream = raw.upstream.is_some();
        let upstream_url = raw.upstream.as_ref().map(|u| u.url.value.clone());
        let upstream = raw.upstream.and_then(|u| self.upstream(u));
        let sse = self.sse(raw.sse.unwrap_or_default(), d.sse);
        let dedupe = self.dedupe(raw.dedupe.unwrap_or_default(), d.dedupe);
        let limits = self.client_limits(raw.limits.unwrap_or_default(), d.limits);
        let subscribers =
            self.subscribers(raw.subscribers.unwrap_or_default(), upstream_url.as_deref());
        let cors = raw.cors.and_then(|c| self.cors(c, &subscribers));
        let log = self.log(raw.log.unwrap_or_default(), d.log);
        let broker = self.broker(raw.broker.unwrap_or_default(), &sse, &dedupe);
        let demo = raw.demo.map_or(d.demo, |v| v.value);
        let inspect = self.inspect(raw.inspect.unwrap_or_default());
        let router = self.routes(raw.routes.unwrap_or_default(), &sse.path, raw_has_upstream);
        let streams = self.streams(raw.streams.unwrap_or_default(), &sse, &subscribers);
        Config {
            listen,
            shutdown_grace,
            admin,
            upstream,
            sse,
            dedupe,
            limits,
            cors,
            subscribers,
            log,
            broker,
            demo,
            inspect,
            router,
            streams,
            secret_files: std::mem::take(&mut self.secret_files),
        }
    }

    fn address(&mut self, key: &str, v: &Spanned<String>) -> Option<SocketAddr> {
        let parsed = v.value.parse().ok();
        if parsed.is_none() {
            self.error(
                &v.referenced,
                format!(
                    "{key}: `{}` is not an address to listen on; write IP:PORT, e.g. 0.0.0.0:8080",
                    v.value
                ),
            );
        }
        parsed
    }
}

/// Whether `path` is under `/_hookcast/`, which hookcast keeps for itself.
fn is_reserved(path: &str) -> bool {
    path == "/_hookcast" || path.starts_with("/_hookcast/")
}

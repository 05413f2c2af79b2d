//! Configuration: the YAML file, checked whole before any port is bound.
//!
//! [`load`] reads and deserializes the file ([`raw`]; [`recover`] carries on past
//! unknown keys and wrong types so that all of them are reported), then checks every
//! value and builds a [`Config`]. Every problem is reported as `FILE:LINE:COL: message`.

mod inspect;
mod raw;
mod recover;
mod security;
mod streams;
mod units;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::header::HeaderName;
use serde_saphyr::{Location, Spanned};

use crate::auth::{self, jwt, upstream};
use crate::cors::{self, Cors};
use crate::data::Data;
use crate::limits::Cidr;
use crate::route::{HeaderMatch, Mode, PathPattern, Publish, Route, Router};
use crate::streams::Streams;
use crate::template::{Part, Template};
use crate::topic;
use crate::verify::{self, Encoding, Scheme, Secret, Verifier};

pub use inspect::Inspect;
pub(crate) use units::{parse_duration, parse_size};

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
    pub limits: Limits,
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

/// `broker:`: the in-memory hub alone, or Redis or NATS JetStream shared by replicas.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Broker {
    #[default]
    Memory,
    Redis(RedisBroker),
    Nats(NatsBroker),
}

/// `broker: { kind: redis, ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisBroker {
    /// `redis://[user:password@]host[:port][/db]` or `unix:///path`; checked, not connected.
    pub url: String,
    /// Put before every key hookcast writes, so several deployments can share a Redis.
    pub prefix: String,
    /// Each command, a publish included, fails after this (then 503).
    pub timeout: Duration,
    /// Entries kept in the stream every replica reads live events from; a replica
    /// cut off for longer than this many events makes its subscribers reconnect and replay.
    pub feed_length: usize,
}

impl RedisBroker {
    pub const DEFAULT_PREFIX: &str = "hookcast:";
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_FEED_LENGTH: usize = 100_000;
}

/// `broker: { kind: nats, ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsBroker {
    /// `nats://[user:password@]host[:port]`, or several, comma-separated (a cluster's
    /// seeds); checked, not connected.
    pub url: String,
    /// The JetStream stream hookcast creates (or finds, with the same settings).
    pub stream: String,
    /// Events are stored under `<subject_prefix>.<first topic>`; the stream takes
    /// `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// Copies of the stream kept by the NATS cluster (1 for a single server).
    pub replicas: usize,
    /// Each request, a publish included, fails after this (then 503).
    pub timeout: Duration,
    /// Events the stream keeps across all topics (oldest dropped first); also
    /// bounds what one replay reads.
    pub max_msgs: usize,
    /// Bytes the stream keeps across all topics (oldest dropped first); none by
    /// default, since JetStream reserves this much storage on its servers up front.
    pub max_bytes: Option<u64>,
}

impl NatsBroker {
    pub const DEFAULT_STREAM: &str = "HOOKCAST";
    pub const DEFAULT_SUBJECT_PREFIX: &str = "hookcast";
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_MAX_MSGS: usize = 100_000;
}

/// Where proxied requests go: plain HTTP to one host.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` (the port defaults to 80).
    pub authority: http::uri::Authority,
    /// A path prefix put before every request's path: empty, or `/app` (no trailing slash).
    pub base_path: String,
    /// Response headers must arrive within this.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept open; 0 turns keep-alive to the upstream off.
    pub pool_max_idle_per_host: usize,
}

impl Upstream {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 256;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub path: String,
    pub heartbeat: Duration,
    pub retry: Duration,
    pub history: usize,
    pub history_ttl: Duration,
    pub history_bytes: u64,
    pub subscriber_queue: usize,
    /// Bytes of queued events per subscriber before it is cut as slow.
    pub subscriber_queue_bytes: u64,
    pub max_subscribers: usize,
    pub max_topics_per_subscriber: usize,
    pub max_stream_duration: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dedupe {
    pub window: Duration,
    pub max_keys: usize,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body: u64,
    pub header_read_timeout: Duration,
    /// Open connections beyond this are closed at once.
    pub max_connections: Option<usize>,
    pub max_subscribers_per_ip: Option<usize>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
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
            limits: Limits {
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

/// One problem in the file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Why a configuration was not accepted.
#[derive(Debug)]
pub enum Error {
    /// The file could not be read.
    Read {
        file: String,
        source: std::io::Error,
    },
    /// The file was read and has these problems, in file order.
    Invalid {
        file: String,
        diagnostics: Vec<Diagnostic>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { file, source } => {
                write!(f, "{file}: cannot read the configuration: {source}")
            }
            Error::Invalid { file, diagnostics } => {
                for (i, d) in diagnostics.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{file}:{}:{}: {}", d.line, d.column, d.message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } => Some(source),
            Error::Invalid { .. } => None,
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

/// A `log.level` value: a level (`info`) or a filter (`info,hookcast=debug`).
pub fn parse_log_level(s: &str) -> Result<String, String> {
    if is_log_filter(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a level or filter; use error, warn, info, debug or trace"
        ))
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
    let (root, structural) = recover::deserialize::<Option<raw::Root>>(text, syntax_diagnostic);
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

fn syntax_diagnostic(e: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) = e
        .location()
        .map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
    let rendered = e.without_snippet().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    // The crate writes the location into the message; ours comes first instead.
    let message = first.strip_prefix("error: ").unwrap_or(first);
    let message = message
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line "))
        .map_or(message, |(_, msg)| msg);
    let message = message
        .strip_suffix(&format!(" at line {line}, column {column}"))
        .unwrap_or(message)
        .to_owned();
    Diagnostic {
        line,
        column,
        message,
    }
}

/// Whether every comma-separated directive names a known level (`info`,
/// `hookcast=debug`); a bare unknown word would silently mean "a target of that name".
fn is_log_filter(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let known = |l: &str| LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l.trim()));
    !s.trim().is_empty()
        && tracing_subscriber::EnvFilter::builder().parse(s).is_ok()
        && s.split(',').all(|d| match d.rsplit_once('=') {
            Some((_, level)) => known(level),
            None => known(d),
        })
}

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

    fn duration(
        &mut self,
        key: &str,
        v: Option<Spanned<String>>,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(&v.value) {
            Ok(d) if d < min => {
                self.error(
                    &v.referenced,
                    format!("{key} must be at least {}ms", min.as_millis()),
                );
                default
            }
            Ok(d) => d,
            Err(msg) => {
                self.error(&v.referenced, format!("{key}: {msg}"));
                default
            }
        }
    }

    fn size(&mut self, key: &str, v: Option<Spanned<String>>, default: u64) -> u64 {
        let Some(v) = v else { return default };
        match parse_size(&v.value) {
            Ok(0) => {
                self.error(&v.referenced, format!("{key} must be at least 1 byte"));
                default
            }
            Ok(n) => n,
            Err(msg) => {
                self.error(&v.referenced, format!("{key}: {msg}"));
                default
            }
        }
    }

    fn count(&mut self, key: &str, v: Option<Spanned<u64>>, default: usize, why: &str) -> usize {
        let Some(v) = v else { return default };
        if v.value == 0 {
            self.error(&v.referenced, format!("{key} must be at least 1{why}"));
            return default;
        }
        usize::try_from(v.value).unwrap_or(usize::MAX)
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
        let dedupe = raw.dedupe.unwrap_or_default();
        let limits = raw.limits.unwrap_or_default();
        let dedupe = Dedupe {
            window: self.duration(
                "dedupe.window",
                dedupe.window,
                d.dedupe.window,
                Duration::from_millis(1),
            ),
            max_keys: self.count("dedupe.max_keys", dedupe.max_keys, d.dedupe.max_keys, ""),
        };
        let limits = Limits {
            max_body: self.size("limits.max_body", limits.max_body, d.limits.max_body),
            header_read_timeout: self.duration(
                "limits.header_read_timeout",
                limits.header_read_timeout,
                d.limits.header_read_timeout,
                Duration::from_millis(1),
            ),
            max_connections: limits
                .max_connections
                .map(|v| self.count("limits.max_connections", Some(v), 0, "")),
            max_subscribers_per_ip: limits
                .max_subscribers_per_ip
                .map(|v| self.count("limits.max_subscribers_per_ip", Some(v), 0, "")),
            trusted_proxies: limits
                .trusted_proxies
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| match Cidr::parse(&v.value) {
                    Ok(c) => Some(c),
                    Err(msg) => {
                        self.error(&v.referenced, format!("limits.trusted_proxies: {msg}"));
                        None
                    }
                })
                .collect(),
        };
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

    /// `broker.url`, or the URL in the variable `broker.url_env` names (a URL with a
    /// password is a secret: in Kubernetes it comes from a Secret).
    fn broker_url(
        &mut self,
        raw: &raw::Broker,
        kind: &str,
        example: &str,
        check: fn(&str) -> Result<(), String>,
    ) -> String {
        // The variable's value is never echoed: it may hold a password.
        let (key, v, secret) = match (&raw.url, &raw.url_env) {
            (Some(_), Some(e)) => {
                self.error(&e.referenced, "broker: give url or url_env, not both");
                return String::new();
            }
            (None, None) => {
                if let Some(k) = &raw.kind {
                    self.error(
                        &k.referenced,
                        format!("broker: kind {kind} needs url, e.g. {example}, or url_env"),
                    );
                }
                return String::new();
            }
            (Some(u), None) => ("broker.url", u.clone(), false),
            (None, Some(e)) => match (self.env)(&e.value).and_then(|v| v.into_string().ok()) {
                Some(url) => (
                    "broker.url_env",
                    Spanned {
                        value: url,
                        referenced: e.referenced,
                        defined: e.defined,
                    },
                    true,
                ),
                None => {
                    self.error(
                        &e.referenced,
                        format!("broker.url_env: the variable {} is not set", e.value),
                    );
                    return String::new();
                }
            },
        };
        if let Err(msg) = check(&v.value) {
            let msg = if secret {
                format!("the variable holds no usable {kind} URL; write one like {example}")
            } else {
                msg
            };
            self.error(&v.referenced, format!("{key}: {msg}"));
        }
        v.value
    }

    fn broker(&mut self, raw: raw::Broker, sse: &Sse, dedupe: &Dedupe) -> Broker {
        let kind = raw.kind.as_ref().map_or("memory", |k| k.value.as_str());
        if !matches!(kind, "memory" | "redis" | "nats") {
            if let Some(k) = &raw.kind {
                self.error(
                    &k.referenced,
                    format!("broker.kind `{kind}` is not known; use memory, redis or nats"),
                );
            }
            return Broker::Memory;
        }
        // Each key belongs to some kinds only; naming it under another is a mistake.
        let keys: [(&str, Option<&Location>, &[&str]); 10] = [
            (
                "url",
                raw.url.as_ref().map(|v| &v.referenced),
                &["redis", "nats"],
            ),
            (
                "url_env",
                raw.url_env.as_ref().map(|v| &v.referenced),
                &["redis", "nats"],
            ),
            (
                "timeout",
                raw.timeout.as_ref().map(|v| &v.referenced),
                &["redis", "nats"],
            ),
            (
                "prefix",
                raw.prefix.as_ref().map(|v| &v.referenced),
                &["redis"],
            ),
            (
                "feed_length",
                raw.feed_length.as_ref().map(|v| &v.referenced),
                &["redis"],
            ),
            (
                "stream",
                raw.stream.as_ref().map(|v| &v.referenced),
                &["nats"],
            ),
            (
                "subject_prefix",
                raw.subject_prefix.as_ref().map(|v| &v.referenced),
                &["nats"],
            ),
            (
                "replicas",
                raw.replicas.as_ref().map(|v| &v.referenced),
                &["nats"],
            ),
            (
                "max_msgs",
                raw.max_msgs.as_ref().map(|v| &v.referenced),
                &["nats"],
            ),
            (
                "max_bytes",
                raw.max_bytes.as_ref().map(|v| &v.referenced),
                &["nats"],
            ),
        ];
        for (key, at, kinds) in keys {
            if let Some(at) = at
                && !kinds.contains(&kind)
            {
                let kinds = kinds.join(" or ");
                self.error(at, format!("broker.{key} is used only with kind: {kinds}"));
            }
        }
        match kind {
            "redis" => {
                let url = self.broker_url(
                    &raw,
                    kind,
                    "redis://127.0.0.1:6379/0",
                    crate::broker::check_redis_url,
                );
                let prefix = match raw.prefix {
                    None => RedisBroker::DEFAULT_PREFIX.to_owned(),
                    Some(v)
                        if v.value.is_empty()
                            || v.value.chars().any(|c| c.is_whitespace() || c.is_control()) =>
                    {
                        self.error(
                            &v.referenced,
                            "broker.prefix must be non-empty, without spaces or control characters",
                        );
                        RedisBroker::DEFAULT_PREFIX.to_owned()
                    }
                    Some(v) => v.value,
                };
                Broker::Redis(RedisBroker {
                    url,
                    prefix,
                    timeout: self.duration(
                        "broker.timeout",
                        raw.timeout,
                        RedisBroker::DEFAULT_TIMEOUT,
                        Duration::from_millis(10),
                    ),
                    feed_length: self.count(
                        "broker.feed_length",
                        raw.feed_length,
                        RedisBroker::DEFAULT_FEED_LENGTH,
                        "",
                    ),
                })
            }
            "nats" => {
                let url = self.broker_url(
                    &raw,
                    kind,
                    "nats://127.0.0.1:4222",
                    crate::broker::check_nats_url,
                );
                let stream = match raw.stream {
                    None => NatsBroker::DEFAULT_STREAM.to_owned(),
                    Some(v) => {
                        if let Err(msg) = crate::broker::check_nats_stream(&v.value) {
                            self.error(&v.referenced, format!("broker.stream: {msg}"));
                        }
                        v.value
                    }
                };
                let subject_prefix = match raw.subject_prefix {
                    None => NatsBroker::DEFAULT_SUBJECT_PREFIX.to_owned(),
                    Some(v) => {
                        if let Err(msg) = crate::broker::check_nats_subject_prefix(&v.value) {
                            self.error(&v.referenced, format!("broker.subject_prefix: {msg}"));
                        }
                        v.value
                    }
                };
                let replicas = match raw.replicas {
                    None => 1,
                    Some(v) if !(1..=5).contains(&v.value) => {
                        self.error(
                            &v.referenced,
                            "broker.replicas must be from 1 to 5 (JetStream keeps at most 5 copies)",
                        );
                        1
                    }
                    Some(v) => v.value as usize,
                };
                // JetStream remembers message ids only inside the stream's max_age.
                if dedupe.window > sse.history_ttl
                    && let Some(k) = &raw.kind
                {
                    self.error(
                        &k.referenced,
                        format!(
                            "with kind: nats, dedupe.window ({}s) must not exceed sse.history_ttl ({}s): JetStream remembers dedupe keys only as long as it keeps events",
                            dedupe.window.as_secs(),
                            sse.history_ttl.as_secs()
                        ),
                    );
                }
                Broker::Nats(NatsBroker {
                    url,
                    stream,
                    subject_prefix,
                    replicas,
                    timeout: self.duration(
                        "broker.timeout",
                        raw.timeout,
                        NatsBroker::DEFAULT_TIMEOUT,
                        Duration::from_millis(10),
                    ),
                    max_msgs: self.count(
                        "broker.max_msgs",
                        raw.max_msgs,
                        NatsBroker::DEFAULT_MAX_MSGS,
                        "",
                    ),
                    max_bytes: raw
                        .max_bytes
                        .map(|v| self.size("broker.max_bytes", Some(v), 0)),
                })
            }
            _ => Broker::Memory,
        }
    }

    fn upstream(&mut self, raw: raw::Upstream) -> Option<Upstream> {
        let ms = Duration::from_millis(1);
        let timeout = self.duration(
            "upstream.timeout",
            raw.timeout,
            Upstream::DEFAULT_TIMEOUT,
            ms,
        );
        let connect_timeout = self.duration(
            "upstream.connect_timeout",
            raw.connect_timeout,
            Upstream::DEFAULT_CONNECT_TIMEOUT,
            ms,
        );
        let pool_idle_timeout = self.duration(
            "upstream.pool_idle_timeout",
            raw.pool_idle_timeout,
            Upstream::DEFAULT_POOL_IDLE_TIMEOUT,
            ms,
        );
        let pool_max_idle_per_host = raw
            .pool_max_idle_per_host
            .map_or(Upstream::DEFAULT_POOL_MAX_IDLE_PER_HOST, |v| {
                usize::try_from(v.value).unwrap_or(usize::MAX)
            });
        let (authority, base_path) = match parse_upstream_url(&raw.url.value) {
            Ok(parsed) => parsed,
            Err(msg) => {
                self.error(&raw.url.referenced, format!("upstream.url: {msg}"));
                return None;
            }
        };
        Some(Upstream {
            authority,
            base_path,
            timeout,
            connect_timeout,
            pool_idle_timeout,
            pool_max_idle_per_host,
        })
    }

    fn sse(&mut self, raw: raw::Sse, d: Sse) -> Sse {
        let ms = Duration::from_millis(1);
        let path = match raw.path {
            None => d.path,
            Some(v) if !v.value.starts_with('/') => {
                self.error(
                    &v.referenced,
                    format!("sse.path `{}` must start with `/`", v.value),
                );
                d.path
            }
            Some(v) if is_reserved(&v.value) => {
                self.error(
                    &v.referenced,
                    "sse.path cannot be under /_hookcast/, which hookcast keeps for itself",
                );
                d.path
            }
            Some(v) => v.value,
        };
        let history_why = ": replay after a reconnect needs history";
        Sse {
            path,
            heartbeat: self.duration("sse.heartbeat", raw.heartbeat, d.heartbeat, ms),
            retry: self.duration("sse.retry", raw.retry, d.retry, ms),
            history: self.count("sse.history", raw.history, d.history, history_why),
            history_ttl: self.duration("sse.history_ttl", raw.history_ttl, d.history_ttl, ms),
            history_bytes: self.size("sse.history_bytes", raw.history_bytes, d.history_bytes),
            subscriber_queue: self.count(
                "sse.subscriber_queue",
                raw.subscriber_queue,
                d.subscriber_queue,
                "",
            ),
            subscriber_queue_bytes: self.size(
                "sse.subscriber_queue_bytes",
                raw.subscriber_queue_bytes,
                d.subscriber_queue_bytes,
            ),
            max_subscribers: self.count(
                "sse.max_subscribers",
                raw.max_subscribers,
                d.max_subscribers,
                "",
            ),
            max_topics_per_subscriber: self.count(
                "sse.max_topics_per_subscriber",
                raw.max_topics_per_subscriber,
                d.max_topics_per_subscriber,
                "",
            ),
            max_stream_duration: raw.max_stream_duration.map(|v| {
                self.duration(
                    "sse.max_stream_duration",
                    Some(v),
                    Duration::ZERO,
                    Duration::from_secs(1),
                )
            }),
        }
    }

    fn log(&mut self, raw: raw::Log, d: Log) -> Log {
        let format = match raw.format {
            None => d.format,
            Some(v) => match v.value.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    self.error(
                        &v.referenced,
                        format!("log.format `{other}` is not known; use text or json"),
                    );
                    d.format
                }
            },
        };
        let level = match raw.level {
            None => d.level,
            Some(v) => {
                if let Err(msg) = parse_log_level(&v.value) {
                    self.error(&v.referenced, format!("log.level {msg}"));
                }
                v.value
            }
        };
        Log { format, level }
    }

    /// Reports `v` when `seen` already holds it: "route name `x` is used twice; {why}".
    fn once(&mut self, seen: &mut HashSet<String>, v: &Spanned<String>, what: &str, why: &str) {
        if !seen.insert(v.value.clone()) {
            self.error(
                &v.referenced,
                format!("{what} `{}` is used twice; {why}", v.value),
            );
        }
    }

    fn routes(&mut self, raw: Vec<raw::Route>, sse_path: &str, has_upstream: bool) -> Router {
        let mut names = HashSet::new();
        let mut routes = Vec::new();
        for r in raw {
            self.once(&mut names, &r.name, "route name", "names must be unique");
            if let Some(route) = self.route(r, sse_path, has_upstream) {
                routes.push(route);
            }
        }
        Router::new(routes)
    }

    fn route(&mut self, r: raw::Route, sse_path: &str, has_upstream: bool) -> Option<Route> {
        let before = self.diagnostics.len();
        let name = r.name.value.trim().to_owned();
        if name.is_empty() {
            self.error(&r.name.referenced, "route name cannot be empty");
        }
        let mode = match &r.mode {
            None => Mode::Publish,
            Some(m) => match m.value.as_str() {
                "publish" => Mode::Publish,
                "forward" if !has_upstream => {
                    self.error(
                        &m.referenced,
                        format!(
                            "route `{name}`: mode forward passes the request to the upstream, but no upstream is configured; set upstream.url"
                        ),
                    );
                    Mode::Forward
                }
                "forward" => Mode::Forward,
                other => {
                    self.error(
                        &m.referenced,
                        format!(
                            "route `{name}`: unknown mode `{other}`; expected publish or forward"
                        ),
                    );
                    Mode::Publish
                }
            },
        };
        let m = r.matcher;
        let path = match PathPattern::parse(&m.path.value) {
            Ok(p) if p.as_str() == sse_path || is_reserved(p.as_str()) => {
                self.error(
                    &m.path.referenced,
                    format!(
                        "route `{name}`: path `{}` is taken by hookcast itself (sse.path or /_hookcast/)",
                        p.as_str()
                    ),
                );
                None
            }
            Ok(p) => Some(p),
            Err(msg) => {
                self.error(&m.path.referenced, format!("route `{name}`: {msg}"));
                None
            }
        };
        let method = match m.method {
            None => Method::POST,
            Some(v) => match Method::from_bytes(v.value.as_bytes()) {
                Ok(method) if v.value.bytes().all(|b| b.is_ascii_uppercase()) => method,
                _ => {
                    self.error(
                        &v.referenced,
                        format!(
                            "route `{name}`: `{}` is not an HTTP method such as POST",
                            v.value
                        ),
                    );
                    Method::POST
                }
            },
        };
        let mut headers = Vec::new();
        for (k, v) in m.headers {
            match HeaderName::from_bytes(k.value.as_bytes()) {
                Ok(h) => headers.push((
                    h,
                    if v.value == "*" {
                        HeaderMatch::Present
                    } else {
                        HeaderMatch::Exact(v.value)
                    },
                )),
                Err(_) => self.error(
                    &k.referenced,
                    format!("route `{name}`: `{}` is not a valid header name", k.value),
                ),
            }
        }
        let mut json = Vec::new();
        for (k, v) in m.json {
            if !k.value.is_empty() && !k.value.starts_with('/') {
                self.error(
                    &k.referenced,
                    format!(
                        "route `{name}`: `{}` is not a JSON Pointer; it must start with `/`",
                        k.value
                    ),
                );
            }
            json.push((k.value, v.value));
        }
        json.sort_by(|a, b| a.0.cmp(&b.0));
        let params: Vec<String> = path
            .iter()
            .flat_map(|p| p.params().map(str::to_owned))
            .collect();
        let ctx = TemplateCtx {
            route: &name,
            params: &params,
            checked_path: path.is_some(),
            mode,
        };

        let p = r.publish;
        let topic_srcs: Vec<String> = match p.topic.value {
            raw::OneOrMany::One(s) => vec![s],
            raw::OneOrMany::Many(v) => v,
        };
        if topic_srcs.is_empty() {
            self.error(
                &p.topic.referenced,
                format!("route `{name}`: publish.topic lists no topic"),
            );
        }
        let mut topics = Vec::new();
        for src in &topic_srcs {
            if let Some(t) = self.template(&ctx, "publish.topic", src, &p.topic.referenced) {
                let what = format!("route `{name}`: publish.topic");
                self.topic_literals(&what, &t, &p.topic.referenced);
                topics.push(t);
            }
        }
        let event = p.event.and_then(|v| {
            let t = self.template(&ctx, "publish.event", &v.value, &v.referenced)?;
            let bad = t
                .parts()
                .iter()
                .any(|part| matches!(part, Part::Literal(s) if s.contains(['\r', '\n', '\0'])));
            if bad {
                self.error(
                    &v.referenced,
                    format!("route `{name}`: publish.event cannot contain line breaks"),
                );
            }
            if let Some(Part::Literal(first)) = t.parts().first()
                && crate::sse::is_reserved_event(first)
            {
                self.error(
                    &v.referenced,
                    format!("route `{name}`: publish.event `{}` is reserved: names starting with `hookcast.` are hookcast's own events", v.value),
                );
            }
            Some(t)
        });
        let data = match p.data {
            None => Some(Data::Text(
                Template::parse("{body}").expect("static template"),
            )),
            Some(v) => match v.value.compile() {
                Ok(data) => {
                    for t in data.templates() {
                        self.template_parts(&ctx, "publish.data", t, &v.referenced);
                    }
                    Some(data)
                }
                Err(e) => {
                    self.error(&v.referenced, format!("route `{name}`: publish.data: {e}"));
                    None
                }
            },
        };
        let dedupe = p
            .dedupe
            .and_then(|v| self.template(&ctx, "publish.dedupe", &v.value, &v.referenced));
        let verify = r.verify.and_then(|v| self.verify(&name, v));
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Route {
            name: Arc::from(name),
            path: path?,
            method,
            headers,
            json,
            mode,
            verify,
            publish: Publish {
                topics,
                event,
                data: data?,
                dedupe,
            },
        })
    }

    fn template(
        &mut self,
        ctx: &TemplateCtx<'_>,
        key: &str,
        src: &str,
        at: &Location,
    ) -> Option<Template> {
        let route = ctx.route;
        let t = match Template::parse(src) {
            Ok(t) => t,
            Err(e) => {
                self.error(at, format!("route `{route}`: {key}: {e}"));
                return None;
            }
        };
        self.template_parts(ctx, key, &t, at);
        Some(t)
    }

    /// The placeholders of a parsed route template that can never resolve.
    fn template_parts(&mut self, ctx: &TemplateCtx<'_>, key: &str, t: &Template, at: &Location) {
        let route = ctx.route;
        for part in t.parts() {
            match part {
                Part::Path(p) if ctx.checked_path && !ctx.params.contains(p) => self.error(
                    at,
                    format!("route `{route}`: {key}: `{{path:{p}}}` can never resolve: the route path has no `{{{p}}}` segment"),
                ),
                Part::Response(_) if ctx.mode == Mode::Publish => self.error(
                    at,
                    format!("route `{route}`: {key}: `{{response:…}}` can never resolve in mode publish: there is no upstream answer"),
                ),
                Part::Claim(_) | Part::Auth(_) => self.error(
                    at,
                    format!("route `{route}`: {key}: `{{claim:…}}` and `{{auth:…}}` name a subscriber, so they are for streams, not webhook routes"),
                ),
                _ => {}
            }
        }
    }

    /// `what` names the key in messages: "route `x`: publish.topic".
    fn topic_literals(&mut self, what: &str, t: &Template, at: &Location) {
        if let Some(lit) = t.literal() {
            if let Err(e) = topic::validate_topic(lit) {
                self.error(at, format!("{what} `{lit}`: {e}"));
            }
            return;
        }
        for part in t.parts() {
            if let Part::Literal(s) = part
                && let Some(c) = s
                    .chars()
                    .find(|&c| !(c.is_ascii() && topic::is_topic_byte(c as u8)))
            {
                self.error(
                    at,
                    format!("{what} contains {c:?}; only A-Z a-z 0-9 . _ - : / are allowed"),
                );
            }
        }
    }
}

struct TemplateCtx<'a> {
    route: &'a str,
    params: &'a [String],
    /// False when the path itself was invalid, so `{path:}` checks would only add noise.
    checked_path: bool,
    mode: Mode,
}

/// Splits `http://host[:port][/prefix]` into its authority and path prefix.
fn parse_upstream_url(url: &str) -> Result<(http::uri::Authority, String), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a URL; write e.g. http://127.0.0.1:3000"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{url}`: hookcast talks plain HTTP to the upstream; TLS to the upstream is left to nginx or the ingress, so use an http:// address (e.g. the application's port on localhost)"
            ));
        }
        Some(other) => {
            return Err(format!(
                "`{url}`: scheme `{other}` is not supported; write http://HOST:PORT"
            ));
        }
        None => {
            return Err(format!("`{url}` has no scheme; write http://HOST:PORT"));
        }
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(format!("`{url}` has no host; write http://HOST:PORT"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{url}` carries credentials; hookcast passes the client's own Authorization instead"
        ));
    }
    if authority.host().is_empty() {
        return Err(format!("`{url}` has no host; write http://HOST:PORT"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(format!(
            "`{url}` has a query or fragment; requests are passed with their own query"
        ));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok((authority, base_path))
}

fn is_reserved(path: &str) -> bool {
    path == "/_hookcast" || path.starts_with("/_hookcast/")
}

#[cfg(test)]
mod tests;

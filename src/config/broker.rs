//! `broker:`: where events are stored and shared — this process alone, Redis
//! Streams, or NATS JetStream — with the URL and name checks each kind needs, made
//! here without connecting.

use std::fmt;
use std::time::Duration;

use async_nats::ServerAddr;
use redis::IntoConnectionInfo;
use serde_saphyr::{Location, Spanned};

use super::limits::{Dedupe, Sse};
use super::{Checker, raw};

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

/// Why a `broker.url` (or the URL `broker.url_env` names) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// `rediss://` or `valkeys://`.
    RedisTls,
    /// The redis crate could not read it.
    NotRedis { url: String, reason: String },
    /// `nats://a,,b`: a comma with no server after it.
    EmptyServer { url: String },
    /// `tls://`.
    NatsTls,
    /// A scheme other than `nats`.
    NotNats { server: String, scheme: String },
    /// The NATS client could not read one server's address.
    BadNatsServer { server: String, reason: String },
}

const NATS_HINT: &str = "write nats://[user:password@]host[:port], several separated by commas";

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::RedisTls => f.write_str(
                "TLS (rediss://) is not built into hookcast; reach Redis on a private network or through a TLS tunnel",
            ),
            UrlError::NotRedis { url, reason } => write!(
                f,
                "`{url}` is not a Redis URL ({reason}); write redis://[user:password@]host[:port][/db]"
            ),
            UrlError::EmptyServer { url } => {
                write!(f, "`{url}` has an empty server address; {NATS_HINT}")
            }
            UrlError::NatsTls => f.write_str(
                "TLS (tls://) is not built into hookcast; reach NATS on a private network or through a TLS tunnel",
            ),
            UrlError::NotNats { server, scheme } => write!(
                f,
                "`{server}` has scheme `{scheme}`, which is not NATS; {NATS_HINT}"
            ),
            UrlError::BadNatsServer { server, reason } => {
                write!(f, "`{server}` is not a NATS URL ({reason}); {NATS_HINT}")
            }
        }
    }
}

impl std::error::Error for UrlError {}

/// A `broker.stream` or `broker.subject_prefix` that JetStream would not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Stream(String),
    SubjectPrefix(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Stream(name) => write!(
                f,
                "`{name}` is not a stream name: use 1 to 255 of A-Z a-z 0-9 _ -"
            ),
            NameError::SubjectPrefix(prefix) => write!(
                f,
                "`{prefix}` is not a subject prefix: use dot-separated tokens without spaces, `*` or `>`, e.g. hookcast"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a Redis `broker.url` without connecting.
fn check_redis_url(url: &str) -> Result<(), UrlError> {
    if url.starts_with("rediss://") || url.starts_with("valkeys://") {
        return Err(UrlError::RedisTls);
    }
    match url.into_connection_info() {
        Ok(_) => Ok(()),
        Err(e) => Err(UrlError::NotRedis {
            url: url.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Checks a NATS `broker.url` (one URL, or several comma-separated) without connecting.
fn check_nats_url(url: &str) -> Result<(), UrlError> {
    nats_servers(url).map(|_| ())
}

/// The servers of a NATS `broker.url`, one URL or several comma-separated (a
/// cluster's seeds).
pub fn nats_servers(url: &str) -> Result<Vec<ServerAddr>, UrlError> {
    let mut out = Vec::new();
    for one in url.split(',').map(str::trim) {
        if one.is_empty() {
            return Err(UrlError::EmptyServer {
                url: url.to_owned(),
            });
        }
        let scheme = one.split_once("://").map_or("nats", |(s, _)| s);
        match scheme {
            "nats" => {}
            "tls" => return Err(UrlError::NatsTls),
            other => {
                return Err(UrlError::NotNats {
                    server: one.to_owned(),
                    scheme: other.to_owned(),
                });
            }
        }
        match one.parse::<ServerAddr>() {
            Ok(a) => out.push(a),
            Err(e) => {
                return Err(UrlError::BadNatsServer {
                    server: one.to_owned(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Checks a `broker.stream` name as JetStream takes it.
fn check_nats_stream(name: &str) -> Result<(), NameError> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NameError::Stream(name.to_owned()));
    }
    Ok(())
}

/// Checks a `broker.subject_prefix`: dot-separated tokens without wildcards.
fn check_nats_subject_prefix(prefix: &str) -> Result<(), NameError> {
    let ok = !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t != "*"
                && t != ">"
                && t.chars().all(|c| !c.is_whitespace() && !c.is_control())
        });
    if ok {
        Ok(())
    } else {
        Err(NameError::SubjectPrefix(prefix.to_owned()))
    }
}

impl Checker<'_> {
    /// `broker.url`, or the URL in the variable `broker.url_env` names (a URL with a
    /// password is a secret: in Kubernetes it comes from a Secret).
    fn broker_url(
        &mut self,
        raw: &raw::Broker,
        kind: &str,
        example: &str,
        check: fn(&str) -> Result<(), UrlError>,
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
        if let Err(e) = check(&v.value) {
            let msg = if secret {
                format!("the variable holds no usable {kind} URL; write one like {example}")
            } else {
                e.to_string()
            };
            self.error(&v.referenced, format!("{key}: {msg}"));
        }
        v.value
    }

    pub(super) fn broker(&mut self, raw: raw::Broker, sse: &Sse, dedupe: &Dedupe) -> Broker {
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
        self.broker_keys(&raw, kind);
        match kind {
            "redis" => Broker::Redis(self.redis_broker(raw)),
            "nats" => Broker::Nats(self.nats_broker(raw, sse, dedupe)),
            _ => Broker::Memory,
        }
    }

    /// Each key belongs to some kinds only; naming it under another is a mistake.
    fn broker_keys(&mut self, raw: &raw::Broker, kind: &str) {
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
    }

    fn redis_broker(&mut self, raw: raw::Broker) -> RedisBroker {
        let kind = "redis";
        let url = self.broker_url(&raw, kind, "redis://127.0.0.1:6379/0", check_redis_url);
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
        RedisBroker {
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
        }
    }

    fn nats_broker(&mut self, raw: raw::Broker, sse: &Sse, dedupe: &Dedupe) -> NatsBroker {
        let kind = "nats";
        let url = self.broker_url(&raw, kind, "nats://127.0.0.1:4222", check_nats_url);
        let stream = match raw.stream {
            None => NatsBroker::DEFAULT_STREAM.to_owned(),
            Some(v) => {
                if let Err(msg) = check_nats_stream(&v.value) {
                    self.error(&v.referenced, format!("broker.stream: {msg}"));
                }
                v.value
            }
        };
        let subject_prefix = match raw.subject_prefix {
            None => NatsBroker::DEFAULT_SUBJECT_PREFIX.to_owned(),
            Some(v) => {
                if let Err(msg) = check_nats_subject_prefix(&v.value) {
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
        NatsBroker {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls() {
        check_nats_url("nats://127.0.0.1:4222").unwrap();
        check_nats_url("nats://a:4222, nats://b:4222,c").unwrap();
        check_nats_url("nats://u:p@h:4222").unwrap();
        assert_eq!(check_nats_url("tls://h:4222"), Err(UrlError::NatsTls));
        assert!(matches!(
            check_nats_url("http://h"),
            Err(UrlError::NotNats { scheme, .. }) if scheme == "http"
        ));
        assert!(
            check_nats_url("http://h")
                .unwrap_err()
                .to_string()
                .contains("not NATS")
        );
        assert!(matches!(
            check_nats_url("nats://a,,b"),
            Err(UrlError::EmptyServer { .. })
        ));
        assert!(
            check_nats_url("nats://h:notaport")
                .unwrap_err()
                .to_string()
                .contains("not a NATS URL")
        );
    }

    #[test]
    fn redis_urls() {
        check_redis_url("redis://127.0.0.1:6379/0").unwrap();
        check_redis_url("unix:///run/redis.sock").unwrap();
        assert_eq!(check_redis_url("rediss://h:6379"), Err(UrlError::RedisTls));
        assert!(matches!(
            check_redis_url("http://h"),
            Err(UrlError::NotRedis { .. })
        ));
    }

    #[test]
    fn nats_names() {
        check_nats_stream("HOOKCAST_2-a").unwrap();
        for bad in ["", "a.b", "a b", "a*", "a>"] {
            assert!(check_nats_stream(bad).is_err(), "{bad}");
        }
        check_nats_subject_prefix("hookcast").unwrap();
        check_nats_subject_prefix("app.events").unwrap();
        for bad in ["", ".a", "a.", "a..b", "a.*", "a.>", "a b"] {
            assert!(check_nats_subject_prefix(bad).is_err(), "{bad}");
        }
    }
}

//! `broker: { kind: nats, ... }`: NATS JetStream shared by replicas.

use std::fmt;
use std::time::Duration;

use async_nats::ServerAddr;

use super::super::limits::{Dedupe, Sse};
use super::super::{Checker, raw};

/// The keys `kind: nats` takes.
pub(super) const KEYS: &[&str] = &[
    "url",
    "url_env",
    "timeout",
    "stream",
    "subject_prefix",
    "replicas",
    "max_msgs",
    "max_bytes",
];

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

/// Why a NATS `broker.url` (or the URL `broker.url_env` names) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsUrlError {
    /// `nats://a,,b`: a comma with no server after it.
    EmptyServer { url: String },
    /// `tls://`.
    Tls,
    /// A scheme other than `nats`.
    NotNats { server: String, scheme: String },
    /// The NATS client could not read one server's address.
    BadServer { server: String, reason: String },
}

const HINT: &str = "write nats://[user:password@]host[:port], several separated by commas";

impl fmt::Display for NatsUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsUrlError::EmptyServer { url } => {
                write!(f, "`{url}` has an empty server address; {HINT}")
            }
            NatsUrlError::Tls => f.write_str(
                "TLS (tls://) is not built into hookcast; reach NATS on a private network or through a TLS tunnel",
            ),
            NatsUrlError::NotNats { server, scheme } => write!(
                f,
                "`{server}` has scheme `{scheme}`, which is not NATS; {HINT}"
            ),
            NatsUrlError::BadServer { server, reason } => {
                write!(f, "`{server}` is not a NATS URL ({reason}); {HINT}")
            }
        }
    }
}

impl std::error::Error for NatsUrlError {}

/// A `broker.stream` or `broker.subject_prefix` that JetStream would not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsNameError {
    Stream(String),
    SubjectPrefix(String),
}

impl fmt::Display for NatsNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsNameError::Stream(name) => write!(
                f,
                "`{name}` is not a stream name: use 1 to 255 of A-Z a-z 0-9 _ -"
            ),
            NatsNameError::SubjectPrefix(prefix) => write!(
                f,
                "`{prefix}` is not a subject prefix: use dot-separated tokens without spaces, `*` or `>`, e.g. hookcast"
            ),
        }
    }
}

impl std::error::Error for NatsNameError {}

/// Checks a NATS `broker.url` (one URL, or several comma-separated) without connecting.
fn check_url(url: &str) -> Result<(), NatsUrlError> {
    nats_servers(url).map(|_| ())
}

/// The servers of a NATS `broker.url`, one URL or several comma-separated (a
/// cluster's seeds).
pub fn nats_servers(url: &str) -> Result<Vec<ServerAddr>, NatsUrlError> {
    let mut out = Vec::new();
    for one in url.split(',').map(str::trim) {
        if one.is_empty() {
            return Err(NatsUrlError::EmptyServer {
                url: url.to_owned(),
            });
        }
        let scheme = one.split_once("://").map_or("nats", |(s, _)| s);
        match scheme {
            "nats" => {}
            "tls" => return Err(NatsUrlError::Tls),
            other => {
                return Err(NatsUrlError::NotNats {
                    server: one.to_owned(),
                    scheme: other.to_owned(),
                });
            }
        }
        match one.parse::<ServerAddr>() {
            Ok(a) => out.push(a),
            Err(e) => {
                return Err(NatsUrlError::BadServer {
                    server: one.to_owned(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Checks a `broker.stream` name as JetStream takes it.
fn check_stream(name: &str) -> Result<(), NatsNameError> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NatsNameError::Stream(name.to_owned()));
    }
    Ok(())
}

/// Checks a `broker.subject_prefix`: dot-separated tokens without wildcards.
fn check_subject_prefix(prefix: &str) -> Result<(), NatsNameError> {
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
        Err(NatsNameError::SubjectPrefix(prefix.to_owned()))
    }
}

impl Checker<'_> {
    pub(super) fn nats_broker(
        &mut self,
        raw: raw::Broker,
        sse: &Sse,
        dedupe: &Dedupe,
    ) -> NatsBroker {
        let kind = "nats";
        let url = self.broker_url(&raw, kind, "nats://127.0.0.1:4222", check_url);
        let stream = match raw.stream {
            None => NatsBroker::DEFAULT_STREAM.to_owned(),
            Some(v) => {
                if let Err(msg) = check_stream(&v.value) {
                    self.error(&v.referenced, format!("broker.stream: {msg}"));
                }
                v.value
            }
        };
        let subject_prefix = match raw.subject_prefix {
            None => NatsBroker::DEFAULT_SUBJECT_PREFIX.to_owned(),
            Some(v) => {
                if let Err(msg) = check_subject_prefix(&v.value) {
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
    fn urls() {
        check_url("nats://127.0.0.1:4222").unwrap();
        check_url("nats://a:4222, nats://b:4222,c").unwrap();
        check_url("nats://u:p@h:4222").unwrap();
        assert_eq!(check_url("tls://h:4222"), Err(NatsUrlError::Tls));
        assert!(matches!(
            check_url("http://h"),
            Err(NatsUrlError::NotNats { scheme, .. }) if scheme == "http"
        ));
        assert!(
            check_url("http://h")
                .unwrap_err()
                .to_string()
                .contains("not NATS")
        );
        assert!(matches!(
            check_url("nats://a,,b"),
            Err(NatsUrlError::EmptyServer { .. })
        ));
        assert!(
            check_url("nats://h:notaport")
                .unwrap_err()
                .to_string()
                .contains("not a NATS URL")
        );
    }

    #[test]
    fn names() {
        check_stream("HOOKCAST_2-a").unwrap();
        for bad in ["", "a.b", "a b", "a*", "a>"] {
            assert!(check_stream(bad).is_err(), "{bad}");
        }
        check_subject_prefix("hookcast").unwrap();
        check_subject_prefix("app.events").unwrap();
        for bad in ["", ".a", "a.", "a..b", "a.*", "a.>", "a b"] {
            assert!(check_subject_prefix(bad).is_err(), "{bad}");
        }
    }
}

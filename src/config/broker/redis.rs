//! `broker: { kind: redis, ... }`: Redis Streams shared by replicas.

use std::fmt;
use std::time::Duration;

use redis::IntoConnectionInfo;

use super::super::{Checker, raw};

/// The keys `kind: redis` takes.
pub(super) const KEYS: &[&str] = &["url", "url_env", "timeout", "prefix", "feed_length"];

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

/// Why a Redis `broker.url` (or the URL `broker.url_env` names) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisUrlError {
    /// `rediss://` or `valkeys://`.
    Tls,
    /// The redis crate could not read it.
    NotRedis { url: String, reason: String },
}

impl fmt::Display for RedisUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisUrlError::Tls => f.write_str(
                "TLS (rediss://) is not built into hookcast; reach Redis on a private network or through a TLS tunnel",
            ),
            RedisUrlError::NotRedis { url, reason } => write!(
                f,
                "`{url}` is not a Redis URL ({reason}); write redis://[user:password@]host[:port][/db]"
            ),
        }
    }
}

impl std::error::Error for RedisUrlError {}

/// Checks a `broker.url` without connecting.
fn check_url(url: &str) -> Result<(), RedisUrlError> {
    if url.starts_with("rediss://") || url.starts_with("valkeys://") {
        return Err(RedisUrlError::Tls);
    }
    match url.into_connection_info() {
        Ok(_) => Ok(()),
        Err(e) => Err(RedisUrlError::NotRedis {
            url: url.to_owned(),
            reason: e.to_string(),
        }),
    }
}

impl Checker<'_> {
    pub(super) fn redis_broker(&mut self, raw: raw::Broker) -> RedisBroker {
        let kind = "redis";
        let url = self.broker_url(&raw, kind, "redis://127.0.0.1:6379/0", check_url);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        check_url("redis://127.0.0.1:6379/0").unwrap();
        check_url("unix:///run/redis.sock").unwrap();
        assert_eq!(check_url("rediss://h:6379"), Err(RedisUrlError::Tls));
        assert!(matches!(
            check_url("http://h"),
            Err(RedisUrlError::NotRedis { .. })
        ));
    }
}

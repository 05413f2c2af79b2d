//! `sse:`, `dedupe:` and `limits:`: the bounds of streams, of the dedupe memory, and
//! of what one client may hold or send.

use std::time::Duration;

use super::{Checker, is_reserved, raw};
use crate::limits::Cidr;

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

/// `limits:`: what one client may send or hold, and whose word is taken for its address.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    pub max_body: u64,
    pub header_read_timeout: Duration,
    /// Open connections beyond this are closed at once.
    pub max_connections: Option<usize>,
    pub max_subscribers_per_ip: Option<usize>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
}

impl Checker<'_> {
    pub(super) fn sse(&mut self, raw: raw::Sse, d: Sse) -> Sse {
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

    pub(super) fn dedupe(&mut self, raw: raw::Dedupe, d: Dedupe) -> Dedupe {
        Dedupe {
            window: self.duration(
                "dedupe.window",
                raw.window,
                d.window,
                Duration::from_millis(1),
            ),
            max_keys: self.count("dedupe.max_keys", raw.max_keys, d.max_keys, ""),
        }
    }

    pub(super) fn client_limits(
        &mut self,
        raw: raw::ClientLimits,
        d: ClientLimits,
    ) -> ClientLimits {
        ClientLimits {
            max_body: self.size("limits.max_body", raw.max_body, d.max_body),
            header_read_timeout: self.duration(
                "limits.header_read_timeout",
                raw.header_read_timeout,
                d.header_read_timeout,
                Duration::from_millis(1),
            ),
            max_connections: raw
                .max_connections
                .map(|v| self.count("limits.max_connections", Some(v), 0, "")),
            max_subscribers_per_ip: raw
                .max_subscribers_per_ip
                .map(|v| self.count("limits.max_subscribers_per_ip", Some(v), 0, "")),
            trusted_proxies: raw
                .trusted_proxies
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| match Cidr::parse(&v.value) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        self.error(&v.referenced, format!("limits.trusted_proxies: {e}"));
                        None
                    }
                })
                .collect(),
        }
    }
}

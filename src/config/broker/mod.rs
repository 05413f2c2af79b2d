//! `broker:`: where events are stored and shared — this process alone, or a
//! broker shared by replicas. Each shared kind is one module here (its settings,
//! its checks, made without connecting) and one line in [`KINDS`].

mod nats;
mod redis;

use std::fmt;

use serde_saphyr::{Location, Spanned};

use super::limits::{Dedupe, Sse};
use super::{Checker, raw};

pub use nats::{NatsBroker, NatsNameError, NatsUrlError, nats_servers};
pub use redis::{RedisBroker, RedisUrlError};

/// `broker:`: the in-memory hub alone, or Redis or NATS JetStream shared by replicas.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Broker {
    #[default]
    Memory,
    Redis(RedisBroker),
    Nats(NatsBroker),
}

/// The shared kinds and the keys each takes besides `kind`; `memory` takes none.
const KINDS: [(&str, &[&str]); 2] = [("redis", redis::KEYS), ("nats", nats::KEYS)];

impl Checker<'_> {
    pub(super) fn broker(&mut self, raw: raw::Broker, sse: &Sse, dedupe: &Dedupe) -> Broker {
        let kind = raw.kind.as_ref().map_or("memory", |k| k.value.as_str());
        if kind != "memory" && !KINDS.iter().any(|(k, _)| *k == kind) {
            if let Some(k) = &raw.kind {
                let names: Vec<&str> = std::iter::once("memory")
                    .chain(KINDS.iter().map(|(k, _)| *k))
                    .collect();
                self.error(
                    &k.referenced,
                    format!("broker.kind `{kind}` is not known; use {}", one_of(&names)),
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
        let at = |v: Option<&Location>| v.copied();
        let present: [(&str, Option<Location>); 10] = [
            ("url", at(raw.url.as_ref().map(|v| &v.referenced))),
            ("url_env", at(raw.url_env.as_ref().map(|v| &v.referenced))),
            ("timeout", at(raw.timeout.as_ref().map(|v| &v.referenced))),
            ("prefix", at(raw.prefix.as_ref().map(|v| &v.referenced))),
            (
                "feed_length",
                at(raw.feed_length.as_ref().map(|v| &v.referenced)),
            ),
            ("stream", at(raw.stream.as_ref().map(|v| &v.referenced))),
            (
                "subject_prefix",
                at(raw.subject_prefix.as_ref().map(|v| &v.referenced)),
            ),
            ("replicas", at(raw.replicas.as_ref().map(|v| &v.referenced))),
            ("max_msgs", at(raw.max_msgs.as_ref().map(|v| &v.referenced))),
            (
                "max_bytes",
                at(raw.max_bytes.as_ref().map(|v| &v.referenced)),
            ),
        ];
        for (key, at) in present {
            let Some(at) = at else { continue };
            let kinds: Vec<&str> = KINDS
                .iter()
                .filter(|(_, keys)| keys.contains(&key))
                .map(|(k, _)| *k)
                .collect();
            if !kinds.contains(&kind) {
                let kinds = kinds.join(" or ");
                self.error(&at, format!("broker.{key} is used only with kind: {kinds}"));
            }
        }
    }

    /// `broker.url`, or the URL in the variable `broker.url_env` names (a URL with a
    /// password is a secret: in Kubernetes it comes from a Secret).
    fn broker_url<E: fmt::Display>(
        &mut self,
        raw: &raw::Broker,
        kind: &str,
        example: &str,
        check: fn(&str) -> Result<(), E>,
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
}

/// `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

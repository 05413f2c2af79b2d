//! The YAML as written: a serde mirror of the file, every leaf kept with its location.
//!
//! Values that need checking are `Spanned` so that the checks in `super` can point
//! at them; unknown keys fail here, at the key.

use std::collections::HashMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub(super) type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Root {
    pub(super) listen: Option<S<String>>,
    pub(super) shutdown_grace: Option<S<String>>,
    pub(super) admin: Option<Admin>,
    pub(super) upstream: Option<Upstream>,
    pub(super) sse: Option<Sse>,
    pub(super) dedupe: Option<Dedupe>,
    pub(super) limits: Option<ClientLimits>,
    pub(super) cors: Option<Cors>,
    pub(super) subscribers: Option<Subscribers>,
    pub(super) log: Option<Log>,
    pub(super) broker: Option<Broker>,
    pub(super) demo: Option<S<bool>>,
    pub(super) inspect: Option<super::inspect::Raw>,
    pub(super) routes: Option<Vec<Route>>,
    pub(super) streams: Option<Vec<super::streams::RawStream>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Admin {
    pub(super) listen: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Upstream {
    pub(super) url: S<String>,
    pub(super) timeout: Option<S<String>>,
    pub(super) connect_timeout: Option<S<String>>,
    pub(super) pool_idle_timeout: Option<S<String>>,
    pub(super) pool_max_idle_per_host: Option<S<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Sse {
    pub(super) path: Option<S<String>>,
    pub(super) heartbeat: Option<S<String>>,
    pub(super) retry: Option<S<String>>,
    pub(super) history: Option<S<u64>>,
    pub(super) history_ttl: Option<S<String>>,
    pub(super) history_bytes: Option<S<String>>,
    pub(super) subscriber_queue: Option<S<u64>>,
    pub(super) subscriber_queue_bytes: Option<S<String>>,
    pub(super) max_subscribers: Option<S<u64>>,
    pub(super) max_topics_per_subscriber: Option<S<u64>>,
    pub(super) max_stream_duration: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Dedupe {
    pub(super) window: Option<S<String>>,
    pub(super) max_keys: Option<S<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientLimits {
    pub(super) max_body: Option<S<String>>,
    pub(super) header_read_timeout: Option<S<String>>,
    pub(super) max_connections: Option<S<u64>>,
    pub(super) max_subscribers_per_ip: Option<S<u64>>,
    pub(super) trusted_proxies: Option<Vec<S<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Cors {
    pub(super) allow_origins: Option<S<Vec<S<String>>>>,
    pub(super) allow_credentials: Option<S<bool>>,
    pub(super) allow_headers: Option<Vec<S<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Subscribers {
    pub(super) auth: Option<S<String>>,
    pub(super) jwt: Option<S<Jwt>>,
    pub(super) upstream: Option<S<AuthUpstream>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Jwt {
    pub(super) algorithms: Option<Vec<S<String>>>,
    pub(super) secret_env: Option<S<Names>>,
    pub(super) secret_file: Option<S<Names>>,
    pub(super) public_key_env: Option<S<Names>>,
    pub(super) public_key_file: Option<S<Names>>,
    pub(super) topics_claim: Option<S<String>>,
    pub(super) cookie: Option<S<String>>,
    pub(super) leeway: Option<S<String>>,
    pub(super) issuer: Option<S<String>>,
    pub(super) audience: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthUpstream {
    pub(super) url: Option<S<String>>,
    pub(super) path: Option<S<String>>,
    pub(super) cache: Option<S<String>>,
    pub(super) pass_headers: Option<Vec<S<String>>>,
    pub(super) timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Verify {
    pub(super) scheme: S<String>,
    pub(super) secret_env: Option<S<Names>>,
    pub(super) secret_file: Option<S<Names>>,
    pub(super) header: Option<S<String>>,
    pub(super) prefix: Option<S<String>>,
    pub(super) encoding: Option<S<String>>,
    pub(super) tolerance: Option<S<String>>,
    pub(super) public_url: Option<S<String>>,
}

/// One name (of a variable or file) or a list of them, each list item with its own
/// location so that an error about one points at it.
#[derive(Debug)]
pub(super) enum Names {
    One(String),
    Many(Vec<S<String>>),
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a name or a list of names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<S<String>>()? {
                    names.push(n);
                }
                Ok(Names::Many(names))
            }
        }
        d.deserialize_any(V)
    }
}

impl Names {
    /// Each name with where it stands; a single name stands at `at`.
    pub(super) fn located(
        self,
        at: serde_saphyr::Location,
    ) -> Vec<(String, serde_saphyr::Location)> {
        match self {
            Names::One(s) => vec![(s, at)],
            Names::Many(v) => v.into_iter().map(|n| (n.value, n.referenced)).collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Broker {
    pub(super) kind: Option<S<String>>,
    pub(super) url: Option<S<String>>,
    pub(super) url_env: Option<S<String>>,
    pub(super) prefix: Option<S<String>>,
    pub(super) timeout: Option<S<String>>,
    pub(super) feed_length: Option<S<u64>>,
    pub(super) stream: Option<S<String>>,
    pub(super) subject_prefix: Option<S<String>>,
    pub(super) replicas: Option<S<u64>>,
    pub(super) max_msgs: Option<S<u64>>,
    pub(super) max_bytes: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Log {
    pub(super) format: Option<S<String>>,
    pub(super) level: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Route {
    pub(super) name: S<String>,
    #[serde(rename = "match")]
    pub(super) matcher: Match,
    pub(super) publish: Publish,
    pub(super) verify: Option<S<Verify>>,
    pub(super) mode: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Match {
    pub(super) path: S<String>,
    pub(super) method: Option<S<String>>,
    #[serde(default)]
    pub(super) headers: HashMap<S<String>, S<String>>,
    #[serde(default)]
    pub(super) json: HashMap<S<String>, S<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Publish {
    pub(super) topic: S<OneOrMany>,
    pub(super) event: Option<S<String>>,
    pub(super) data: Option<S<crate::data::RawData>>,
    pub(super) dedupe: Option<S<String>>,
}

/// One topic template or a list of them. Written by hand because serde's untagged
/// enums see `42` or `2024` as numbers, which are valid topics.
#[derive(Debug)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a topic template or a list of them")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }

            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<OneOrMany, E> {
                Err(E::custom(
                    "YAML reads this topic as a boolean; put it in quotes",
                ))
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<OneOrMany, E> {
                Err(E::custom(
                    "YAML reads this topic as a number with a fraction; put it in quotes",
                ))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(OneOrMany::Many(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

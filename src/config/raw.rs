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
    #[serde(default)]
    pub(super) sse: Sse,
    #[serde(default)]
    pub(super) dedupe: Dedupe,
    #[serde(default)]
    pub(super) limits: Limits,
    #[serde(default)]
    pub(super) log: Log,
    pub(super) demo: Option<S<bool>>,
    #[serde(default)]
    pub(super) routes: Vec<Route>,
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
pub(super) struct Limits {
    pub(super) max_body: Option<S<String>>,
    pub(super) header_read_timeout: Option<S<String>>,
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
    pub(super) data: Option<S<String>>,
    pub(super) dedupe: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

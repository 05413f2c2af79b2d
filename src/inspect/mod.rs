//! The delivery log: what happened to each of the last webhooks (route or why none
//! matched, signature result, status, event), for the admin listener only — as a
//! list, a live tail over hookcast's own event-stream machinery, and redelivery.
//!
//! A webhook's [`Outcome`] is filled in as `ingest` handles it and recorded once, where
//! the answer is known. The log is a ring of at most `inspect.deliveries` records,
//! each of bounded size (headers capped, bodies cut at `inspect.body_bytes`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{Value, json};

use crate::config::{Config, Inspect};
use crate::hub::{self, Hub, NewEvent, Published};
use crate::route::Unmet;
use crate::verify::Scheme;

/// What became of one webhook, filled in while it is handled; the delivery log
/// records it, and a per-webhook log line can read it too.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The route that took the request.
    pub route: Option<Arc<str>>,
    /// When no route took it: each route with the first condition it failed.
    pub unmatched: Vec<(Arc<str>, Unmet)>,
    /// The route's signature scheme and the result: `ok` or the refusal code.
    pub verify: Option<(&'static str, &'static str)>,
    /// The API code and sentence of an error answered by hookcast.
    pub error: Option<(&'static str, String)>,
    /// The event published (or found to be a duplicate).
    pub published: Option<Published>,
    /// Why a forward-mode route published nothing although the upstream said 2xx.
    pub publish_failed: Option<&'static str>,
    /// The request went to the upstream without a route taking it.
    pub passed: bool,
    /// The request body, when it was read.
    pub body: Option<Bytes>,
}

/// The request as the log needs it, taken before the body is read.
#[derive(Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    /// Kept for redelivery only, never shown: it may hold tokens.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub declared_len: Option<u64>,
    pub received: SystemTime,
    /// The delivery this one replays.
    pub redelivery_of: Option<u64>,
}

impl Seen {
    pub fn of<B>(req: &http::Request<B>) -> Seen {
        Seen {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().map(str::to_owned),
            headers: req.headers().clone(),
            declared_len: req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok()),
            received: SystemTime::now(),
            redelivery_of: None,
        }
    }
}

/// Header bytes (names and values) kept per delivery; the rest are dropped, and
/// such a delivery cannot be redelivered.
const MAX_HEADER_BYTES: usize = 8 << 10;

/// What the log shows instead of a signature or credential.
pub const REDACTED: &str = "[redacted]";

/// Headers that carry signatures, tokens or credentials in some scheme; a route's
/// own `header:` is added to these.
const SENSITIVE: [&str; 15] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "webhook-signature",
    "svix-signature",
    "x-slack-signature",
    "x-shopify-hmac-sha256",
    "x-twilio-signature",
    "x-gitlab-token",
    "x-signature",
    "x-webhook-signature",
    "x-api-key",
];

/// One delivery as kept. Never holds a secret; signature headers are redacted.
#[derive(Debug)]
pub struct Delivery {
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    /// Redacted, in received order.
    pub headers: Vec<(String, String)>,
    pub headers_cut: bool,
    pub route: Option<Arc<str>>,
    pub unmatched: Vec<(Arc<str>, Unmet)>,
    pub verify: Option<(&'static str, &'static str)>,
    pub status: u16,
    pub error: Option<(&'static str, String)>,
    pub published: Option<Published>,
    pub publish_failed: Option<&'static str>,
    pub passed: bool,
    pub body_size: Option<u64>,
    /// Only with `inspect.bodies`, at most `inspect.body_bytes`.
    pub body: Option<Bytes>,
    pub body_cut: bool,
    pub elapsed: Duration,
    pub redelivery_of: Option<u64>,
    /// Everything redelivery needs, when bodies are kept and nothing was cut.
    pub replay: Option<Replay>,
}

/// The request as received, for redelivery; not shown.
#[derive(Debug)]
pub struct Replay {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Seconds since the Unix epoch when it was received: the time a signature is checked at.
    pub received: i64,
}

impl Delivery {
    /// The JSON shown by `/deliveries` and the live tail.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id.to_string(),
            "at": self.at_ms,
            "method": self.method,
            "path": self.path,
            "headers": self.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "route": self.route.as_deref(),
            "status": self.status,
            "body_size": self.body_size,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1000.0,
            "redeliverable": self.replay.is_some(),
        });
        let o = v.as_object_mut().expect("an object");
        if self.headers_cut {
            o.insert("headers_cut".into(), true.into());
        }
        if self.route.is_none() && !self.unmatched.is_empty() {
            let why = self
                .unmatched
                .iter()
                .map(|(route, unmet)| {
                    json!({"route": &**route, "kind": unmet.kind(), "reason": unmet.to_string()})
                })
                .collect::<Vec<_>>();
            o.insert("unmatched".into(), why.into());
        }
        if let Some((scheme, result)) = self.verify {
            o.insert("verify".into(), json!({"scheme": scheme, "result": result}));
        }
        if let Some((code, message)) = &self.error {
            o.insert("code".into(), (*code).into());
            o.insert("message".into(), message.as_str().into());
        }
        if let Some(p) = &self.published {
            o.insert("event_id".into(), (&*p.id).into());
            o.insert("topics".into(), p.topics.clone().into());
            if p.duplicate {
                o.insert("duplicate".into(), true.into());
            }
        }
        if let Some(why) = self.publish_failed {
            o.insert("publish_failed".into(), why.into());
        }
        if self.passed {
            o.insert("passed_to_upstream".into(), true.into());
        }
        if let Some(body) = &self.body {
            match std::str::from_utf8(body) {
                Ok(text) => o.insert("body".into(), text.into()),
                Err(_) => {
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(body);
                    o.insert("body_base64".into(), b64.into())
                }
            };
            if self.body_cut {
                o.insert("body_cut".into(), true.into());
            }
        }
        if let Some(of) = self.redelivery_of {
            o.insert("redelivery_of".into(), of.to_string().into());
        }
        v
    }

    /// Bytes this record holds beyond its fixed size, roughly: what the bound is about.
    pub fn heap_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        let replay = self.replay.as_ref().map_or(0, |r| {
            r.path_and_query.len()
                + r.headers
                    .iter()
                    .map(|(k, v)| k.as_str().len() + v.len())
                    .sum::<usize>()
        });
        let unmatched: usize = self
            .unmatched
            .iter()
            .map(|(r, u)| r.len() + u.to_string().len())
            .sum();
        self.path.len()
            + headers
            + replay
            + unmatched
            + self.body.as_ref().map_or(0, Bytes::len)
            + self.error.as_ref().map_or(0, |(_, m)| m.len())
    }
}

/// The topic of the live tail in the log's own hub.
const TAIL_TOPIC: &str = "deliveries";

/// The delivery log: a bounded ring of records, and a private hub that streams
/// each new one to `/deliveries/stream`.
#[derive(Debug)]
pub struct Deliveries {
    capacity: usize,
    ring: Mutex<Ring>,
    tail: Arc<Hub>,
}

#[derive(Debug)]
struct Ring {
    next_id: u64,
    records: VecDeque<Arc<Delivery>>,
}

/// Live-tail streams open at once; more get "try later".
const MAX_TAIL_SUBSCRIBERS: usize = 64;

impl Deliveries {
    /// A log of at most `capacity` deliveries.
    pub fn new(capacity: usize) -> Arc<Self> {
        let tail = Hub::new(hub::Limits {
            // The ring is the history; the hub only fans out.
            history: 0,
            history_ttl: Duration::from_secs(1),
            history_bytes: 0,
            subscriber_queue: 1024,
            subscriber_queue_bytes: 8 << 20,
            max_subscribers: MAX_TAIL_SUBSCRIBERS,
            dedupe_window: Duration::from_millis(1),
            dedupe_max_keys: 1,
        });
        Arc::new(Deliveries {
            capacity,
            ring: Mutex::new(Ring {
                next_id: 1,
                records: VecDeque::with_capacity(capacity.min(1024)),
            }),
            tail,
        })
    }

    /// The log for `config`: none without an admin listener or with `deliveries: 0`.
    pub fn for_config(config: &Config) -> Option<Arc<Self>> {
        (config.admin.is_some() && config.inspect.deliveries > 0)
            .then(|| Deliveries::new(config.inspect.deliveries))
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The hub the live tail subscribes to.
    pub fn tail(&self) -> &Arc<Hub> {
        &self.tail
    }

    pub fn tail_filter() -> crate::topic::Filter {
        crate::topic::Filter::parse(TAIL_TOPIC).expect("a valid topic")
    }

    /// Records one webhook; returns its id.
    pub fn record(
        &self,
        config: &Config,
        seen: Seen,
        outcome: Outcome,
        status: u16,
        elapsed: Duration,
    ) -> u64 {
        let record = build(config, seen, outcome, status, elapsed);
        let mut ring = hub::lock(&self.ring);
        let id = ring.next_id;
        ring.next_id += 1;
        let record = Arc::new(Delivery { id, ..record });
        if ring.records.len() >= self.capacity {
            ring.records.pop_front();
        }
        ring.records.push_back(record.clone());
        drop(ring);
        // Encoded only for a tail that listens; the hub encodes it once for all of them.
        if self.tail.subscriber_count() > 0 {
            self.tail.publish(NewEvent {
                topics: vec![TAIL_TOPIC.to_owned()],
                event: Some("delivery".to_owned()),
                data: record.to_json().to_string(),
                dedupe: None,
            });
        }
        id
    }

    /// Newest first, those that `keep` selects, at most `limit`.
    pub fn list(&self, keep: impl Fn(&Delivery) -> bool, limit: usize) -> Vec<Arc<Delivery>> {
        let ring = hub::lock(&self.ring);
        ring.records
            .iter()
            .rev()
            .filter(|d| keep(d))
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<Delivery>> {
        let ring = hub::lock(&self.ring);
        let first = ring.records.front()?.id;
        let i = usize::try_from(id.checked_sub(first)?).ok()?;
        ring.records.get(i).cloned()
    }

    pub fn len(&self) -> usize {
        hub::lock(&self.ring).records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn build(
    config: &Config,
    seen: Seen,
    outcome: Outcome,
    status: u16,
    elapsed: Duration,
) -> Delivery {
    let Inspect {
        bodies, body_bytes, ..
    } = config.inspect;
    let mut headers = Vec::new();
    let mut header_bytes = 0;
    let mut headers_cut = false;
    for (name, value) in &seen.headers {
        let shown = if is_sensitive(config, name.as_str()) {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        header_bytes += name.as_str().len() + shown.len();
        if header_bytes > MAX_HEADER_BYTES {
            headers_cut = true;
            break;
        }
        headers.push((name.as_str().to_owned(), shown));
    }
    let body_size = outcome
        .body
        .as_ref()
        .map(|b| b.len() as u64)
        .or(seen.declared_len);
    let (body, body_cut) = match (&outcome.body, bodies) {
        (Some(b), true) if b.len() > body_bytes => {
            (Some(Bytes::copy_from_slice(&b[..body_bytes])), true)
        }
        // A copy: a slice would keep the whole request buffer alive.
        (Some(b), true) => (Some(Bytes::copy_from_slice(b)), false),
        _ => (None, false),
    };
    let received = seen.received.duration_since(UNIX_EPOCH).unwrap_or_default();
    let replay = match &body {
        Some(b) if !body_cut && !headers_cut => Some(Replay {
            method: seen.method.clone(),
            path_and_query: match &seen.query {
                Some(q) => format!("{}?{q}", seen.path),
                None => seen.path.clone(),
            },
            headers: seen.headers,
            body: b.clone(),
            received: i64::try_from(received.as_secs()).unwrap_or(i64::MAX),
        }),
        _ => None,
    };
    Delivery {
        id: 0,
        at_ms: u64::try_from(received.as_millis()).unwrap_or(u64::MAX),
        method: seen.method.to_string(),
        path: seen.path,
        headers,
        headers_cut,
        route: outcome.route,
        unmatched: outcome.unmatched,
        verify: outcome.verify,
        status,
        error: outcome.error,
        published: outcome.published,
        publish_failed: outcome.publish_failed,
        passed: outcome.passed,
        body_size,
        body,
        body_cut,
        elapsed,
        redelivery_of: seen.redelivery_of,
        replay,
    }
}

/// Whether a header is in the fixed list or is one a configured scheme reads a secret from.
fn is_sensitive(config: &Config, name: &str) -> bool {
    SENSITIVE.contains(&name)
        || config.router.routes().iter().any(|route| {
            route.verify.as_ref().is_some_and(|v| {
                matches!(v.scheme(), Scheme::HmacSha256 { header, .. } | Scheme::Token { header } if header == name)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(body_len: usize) -> (Seen, Outcome) {
        let mut headers = HeaderMap::new();
        headers.insert("x-hub-signature-256", "sha256=abc".parse().unwrap());
        headers.insert("x-event", "push".parse().unwrap());
        let seen = Seen {
            method: Method::POST,
            path: "/hooks/a".into(),
            query: Some("token=t".into()),
            headers,
            declared_len: None,
            received: SystemTime::now(),
            redelivery_of: None,
        };
        let outcome = Outcome {
            body: Some(Bytes::from(vec![b'x'; body_len])),
            ..Outcome::default()
        };
        (seen, outcome)
    }

    #[test]
    fn the_ring_keeps_the_newest_and_each_record_is_bounded() {
        let mut config = Config::default();
        config.inspect.bodies = true;
        config.inspect.body_bytes = 100;
        let log = Deliveries::new(3);
        for _ in 0..10 {
            let (s, o) = seen(10_000);
            log.record(&config, s, o, 202, Duration::ZERO);
        }
        assert_eq!(log.len(), 3);
        let ids: Vec<u64> = log.list(|_| true, 10).iter().map(|d| d.id).collect();
        assert_eq!(ids, [10, 9, 8]);
        assert!(log.get(7).is_none());
        let d = log.get(9).unwrap();
        assert_eq!(d.body.as_ref().unwrap().len(), 100);
        assert!(d.body_cut && d.replay.is_none());
        assert_eq!(d.body_size, Some(10_000));
        // Cut bodies and capped headers: a record stays under body_bytes plus the header cap.
        assert!(
            d.heap_bytes() <= 100 + 2 * MAX_HEADER_BYTES,
            "{}",
            d.heap_bytes()
        );
        let j = d.to_json();
        assert_eq!(j["headers"][0], json!(["x-hub-signature-256", REDACTED]));
        assert!(!j.to_string().contains("token=t"), "{j}");
    }
}

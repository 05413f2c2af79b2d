//! Forward-auth: one `GET {url}?topic=A&topic=B` per subscription, carrying only
//! the subscriber's `pass_headers`. 2xx allows, 401/403 refuse, anything else (or
//! no answer within `timeout`) is "try later". Allow and refuse answers are cached
//! for `cache`, keyed by a hash of the topics and the passed headers' values; an
//! allowing answer's JSON body (an existing `/api/me`) is kept with it for stream
//! routes' `{auth:}` topics.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::topic::Filter;

/// Most answers kept; the oldest go first.
const CACHE_ENTRIES: usize = 10_000;

/// `subscribers.upstream`, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `url` followed by `path`: where the check goes, `http://` only.
    pub endpoint: String,
    pub pass_headers: Vec<HeaderName>,
    /// Zero turns caching off.
    pub cache: Duration,
    pub timeout: Duration,
}

/// The endpoint's answer for one subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// With the answer's body when it is JSON.
    Allow(Option<Arc<Value>>),
    /// 401 or 403, passed on to the subscriber.
    Refuse(StatusCode),
    /// Unreachable, too slow, or any other status: not cached.
    Unavailable,
}

type Key = [u8; 32];

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<Key, (Outcome, Instant)>,
    /// Insertion order; with one TTL for all, also expiry order.
    order: VecDeque<(Key, Instant)>,
}

impl Cache {
    fn get(&mut self, key: &Key, now: Instant) -> Option<Outcome> {
        self.evict(now);
        self.entries.get(key).map(|(o, _)| o.clone())
    }

    fn put(&mut self, key: Key, outcome: Outcome, expires: Instant) {
        self.entries.insert(key, (outcome, expires));
        self.order.push_back((key, expires));
        while self.order.len() > CACHE_ENTRIES {
            self.pop_oldest();
        }
    }

    fn evict(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(_, exp)| *exp <= now) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((key, exp)) = self.order.pop_front()
            // A key put again later has a newer entry that must stay.
            && self.entries.get(&key).is_some_and(|(_, e)| *e == exp)
        {
            self.entries.remove(&key);
        }
    }
}

/// The forward-auth client, with its cache.
#[derive(Debug)]
pub struct Forward {
    settings: Settings,
    client: Client<HttpConnector, Empty<Bytes>>,
    cache: Mutex<Cache>,
}

impl Forward {
    pub fn new(settings: Settings) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        Forward {
            settings,
            client,
            cache: Mutex::new(Cache::default()),
        }
    }

    pub async fn check(&self, headers: &HeaderMap, filters: &[Filter]) -> Outcome {
        let key = self.key(headers, filters);
        let caching = !self.settings.cache.is_zero();
        if caching && let Some(hit) = self.lock().get(&key, Instant::now()) {
            return hit;
        }
        let outcome = self.ask(headers, filters).await;
        if caching && outcome != Outcome::Unavailable {
            self.lock()
                .put(key, outcome.clone(), Instant::now() + self.settings.cache);
        }
        outcome
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A hash, so that the cache holds no cookie or token.
    fn key(&self, headers: &HeaderMap, filters: &[Filter]) -> Key {
        let mut h = Sha256::new();
        for f in filters {
            h.update(f.as_str().as_bytes());
            h.update([0]);
        }
        for name in &self.settings.pass_headers {
            h.update([1]);
            for v in headers.get_all(name) {
                h.update(v.as_bytes());
                h.update([0]);
            }
        }
        h.finalize().into()
    }

    fn uri(&self, filters: &[Filter]) -> String {
        let mut uri = self.settings.endpoint.clone();
        let mut query = form_urlencoded::Serializer::new(String::new());
        for f in filters {
            query.append_pair("topic", f.as_str());
        }
        let query = query.finish();
        if !query.is_empty() {
            uri.push(if uri.contains('?') { '&' } else { '?' });
            uri.push_str(&query);
        }
        uri
    }

    async fn ask(&self, headers: &HeaderMap, filters: &[Filter]) -> Outcome {
        let mut req = Request::get(self.uri(filters));
        for name in &self.settings.pass_headers {
            for v in headers.get_all(name) {
                req = req.header(name, v);
            }
        }
        let req = match req.body(Empty::new()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the auth request");
                return Outcome::Unavailable;
            }
        };
        // The timeout covers the answer's body too: a stalled body is no answer.
        let asked = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let answer = if status.is_success() {
                read_answer(resp.into_body()).await
            } else {
                None
            };
            Ok::<_, hyper_util::client::legacy::Error>((status, answer))
        };
        match tokio::time::timeout(self.settings.timeout, asked).await {
            Ok(Ok((status, answer))) => match status {
                s if s.is_success() => Outcome::Allow(answer),
                s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Outcome::Refuse(s),
                s => {
                    tracing::warn!(
                        status = s.as_u16(),
                        "auth endpoint answered neither 2xx, 401 nor 403"
                    );
                    Outcome::Unavailable
                }
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "auth endpoint unreachable");
                Outcome::Unavailable
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.settings.timeout.as_millis() as u64,
                    "auth endpoint did not answer in time"
                );
                Outcome::Unavailable
            }
        }
    }
}

/// Largest auth answer read for `{auth:}` topics; a longer one counts as not JSON.
const MAX_ANSWER: usize = 64 * 1024;

/// The body of an allowing answer, when it is JSON of at most [`MAX_ANSWER`] bytes.
async fn read_answer(body: hyper::body::Incoming) -> Option<Arc<Value>> {
    let bytes = http_body_util::Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .ok()?
        .to_bytes();
    serde_json::from_slice(&bytes).ok().map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires_and_stays_bounded() {
        let mut c = Cache::default();
        let t0 = Instant::now();
        c.put([1; 32], Outcome::Allow(None), t0 + Duration::from_secs(1));
        assert_eq!(c.get(&[1; 32], t0), Some(Outcome::Allow(None)));
        assert_eq!(c.get(&[1; 32], t0 + Duration::from_secs(1)), None);
        for i in 0..CACHE_ENTRIES + 10 {
            let mut k = [0; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            c.put(
                k,
                Outcome::Refuse(StatusCode::FORBIDDEN),
                t0 + Duration::from_secs(60),
            );
        }
        assert_eq!(c.entries.len(), CACHE_ENTRIES);
        assert_eq!(c.order.len(), CACHE_ENTRIES);
    }
}

//! Idempotency keys: a webhook retried with the same key within the window gets the
//! first event's id back instead of publishing again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the first request with a key published.
#[derive(Debug, Clone)]
pub(crate) struct Remembered {
    pub(crate) id: Arc<str>,
    pub(crate) topics: Arc<[Arc<str>]>,
    at: Instant,
}

/// Keys per route, forgotten after `window` or, past `max_keys`, oldest first.
#[derive(Debug)]
pub(crate) struct Dedupe {
    window: Duration,
    max_keys: usize,
    keys: HashMap<(Arc<str>, Box<str>), Remembered>,
    /// Insertion order, for eviction; an entry is stale if the map holds a newer one.
    order: VecDeque<(Instant, Arc<str>, Box<str>)>,
}

impl Dedupe {
    pub(crate) fn new(window: Duration, max_keys: usize) -> Self {
        Dedupe {
            window,
            max_keys,
            keys: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn get(&self, route: &Arc<str>, key: &str, now: Instant) -> Option<&Remembered> {
        // A tuple key cannot be borrowed as (&str, &str); the clone is one refcount.
        let r = self.keys.get(&(route.clone(), Box::from(key)))?;
        (now.duration_since(r.at) < self.window).then_some(r)
    }

    pub(crate) fn insert(
        &mut self,
        route: Arc<str>,
        key: &str,
        id: Arc<str>,
        topics: Arc<[Arc<str>]>,
        now: Instant,
    ) {
        let key: Box<str> = key.into();
        self.keys.insert(
            (route.clone(), key.clone()),
            Remembered {
                id,
                topics,
                at: now,
            },
        );
        self.order.push_back((now, route, key));
        while self.keys.len() > self.max_keys {
            if !self.pop_oldest() {
                break;
            }
        }
    }

    /// Forgets keys older than the window.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((at, route, key)) = self.order.pop_front() else {
            return false;
        };
        let k = (route, key);
        if self.keys.get(&k).is_some_and(|r| r.at == at) {
            self.keys.remove(&k);
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_capacity() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(Duration::from_secs(10), 2);
        let r: Arc<str> = "r".into();
        let topics: Arc<[Arc<str>]> = Arc::from(vec![Arc::from("t")]);
        d.insert(r.clone(), "a", "1".into(), topics.clone(), t0);
        assert_eq!(&*d.get(&r, "a", t0).unwrap().id, "1");
        assert!(
            d.get(&"other".into(), "a", t0).is_none(),
            "keys are per route"
        );
        assert!(
            d.get(&r, "a", t0 + Duration::from_secs(10)).is_none(),
            "window passed"
        );
        d.insert(r.clone(), "b", "2".into(), topics.clone(), t0);
        d.insert(r.clone(), "c", "3".into(), topics, t0);
        assert_eq!(d.len(), 2);
        assert!(d.get(&r, "a", t0).is_none(), "oldest forgotten first");
        d.expire(t0 + Duration::from_secs(11));
        assert_eq!(d.len(), 0);
    }
}

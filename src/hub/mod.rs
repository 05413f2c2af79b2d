//! The hub: topics with bounded history, fan-out to subscribers, and replay.
//!
//! All hub state sits under one short std `Mutex`, never held across `.await`. One
//! lock gives one order: ids increase in publish order across topics, an event with
//! several topics reaches a subscriber once, and replay-then-subscribe is atomic,
//! so a reconnecting client misses nothing and receives nothing twice.

mod dedupe;
mod event;
mod id;
mod inbox;
mod patterns;
mod state;
mod subscription;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::sse::encode;
use crate::topic::Filter;

pub use event::{
    Event, Limits, NewEvent, Published, RESYNC_TRIMMED, RESYNC_UNKNOWN_ID, Refusal, Resync,
    TopicInfo,
};
pub use id::{MAX_ID_LEN, is_valid_id};
pub use inbox::{Close, Recv};
pub use subscription::Subscription;

use dedupe::Dedupe;
use id::Epoch;
use inbox::{Inbox, Pushed};
use patterns::Patterns;
use state::{State, Topic};

#[derive(Debug)]
pub struct Hub {
    epoch: Epoch,
    limits: Limits,
    /// Kept here because every part that counts (publish, replay, streams) reaches the hub.
    metrics: crate::metrics::Metrics,
    next_subscriber: AtomicU64,
    state: Mutex<State>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take every publisher and subscriber down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    pub fn new(limits: Limits) -> Arc<Self> {
        let dedupe = Dedupe::new(limits.dedupe_window, limits.dedupe_max_keys);
        Arc::new(Hub {
            epoch: Epoch::random(),
            limits,
            metrics: crate::metrics::Metrics::new(),
            next_subscriber: AtomicU64::new(1),
            state: Mutex::new(State {
                next_seq: 1,
                topics: HashMap::new(),
                patterns: Patterns::default(),
                subscribers: 0,
                collected_through: 0,
                closing: false,
                dedupe,
                position: None,
            }),
        })
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Appends the event to each topic's history and queues it for every subscriber,
    /// unless its dedupe key was seen within the window.
    pub fn publish(&self, new: NewEvent) -> Published {
        let tail = encode::event_tail(new.event.as_deref(), &new.data);
        let topics: Arc<[Arc<str>]> = new.topics.iter().map(|t| Arc::from(t.as_str())).collect();
        let now = Instant::now();

        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if let Some((route, key)) = &new.dedupe
            && let Some(seen) = st.dedupe.get(route, key, now)
        {
            return Published {
                id: seen.id.clone(),
                topics: seen.topics.iter().map(|t| t.to_string()).collect(),
                duplicate: true,
            };
        }
        let id: Arc<str> = Arc::from(self.epoch.format(st.next_seq));
        self.insert(st, id.clone(), topics.clone(), &tail, new.data.len(), now);
        if let Some((route, key)) = new.dedupe {
            st.dedupe.insert(route, &key, id.clone(), topics, now);
        }
        drop(guard);
        Published {
            id,
            topics: new.topics,
            duplicate: false,
        }
    }

    /// Fans out an event that a shared broker stored under `id` (read back from
    /// it, in id order), and records `id` as the position local subscribers are at.
    /// The event is encoded here, once for this process.
    pub fn deliver(&self, id: Arc<str>, topics: Arc<[Arc<str>]>, event: Option<&str>, data: &str) {
        let tail = encode::event_tail(event, data);
        let now = Instant::now();
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.position = Some(id.clone());
        self.insert(st, id, topics, &tail, data.len(), now);
    }

    /// Sets the broker position (the id of the last event delivered, or of the
    /// newest one stored when delivery starts) without delivering anything.
    pub fn set_position(&self, id: Arc<str>) {
        lock(&self.state).position = Some(id);
    }

    fn insert(
        &self,
        st: &mut State,
        id: Arc<str>,
        topics: Arc<[Arc<str>]>,
        tail: &[u8],
        data_len: usize,
        now: Instant,
    ) {
        let seq = st.next_seq;
        st.next_seq += 1;
        let chunk = encode::event_chunk(&id, tail);
        let event = Arc::new(Event {
            seq,
            id,
            topics: topics.clone(),
            chunk,
            data_len,
            at: now,
        });

        // Counted here, once per publish, so that delivery touches no shared counter.
        // A cut is counted here too, where it happens, whichever HTTP path serves
        // the stream and whether or not its writer ever polls again.
        let mut queued = 0;
        let mut cut = 0;
        let mut push = |inbox: &Inbox| match inbox.push(&event) {
            Pushed::Queued => queued += 1,
            Pushed::Cut => cut += 1,
            Pushed::Skipped => {}
        };
        for name in topics.iter() {
            let collected = st.collected_through;
            let topic = st
                .topics
                .entry(name.clone())
                .or_insert_with(|| Topic::new(collected));
            topic.history.push_back(event.clone());
            topic.history_bytes += data_len as u64;
            topic.trim(&self.limits, now);
            topic.subscribers.values().for_each(|i| push(i));
        }
        // A pattern matching several of the topics finds the event already queued.
        for name in topics.iter() {
            st.patterns
                .matching(name, |subs| subs.inboxes.values().for_each(|i| push(i)));
        }
        self.metrics.delivered(queued);
        for _ in 0..cut {
            self.metrics.dropped(crate::metrics::Dropped::Slow);
        }
    }

    /// Registers a subscriber without replay, and returns the broker position at
    /// that instant: every event after it reaches the subscriber's queue, so a
    /// replay read elsewhere up to that position joins live delivery with no gap
    /// and no duplicate.
    pub fn subscribe_at_position(
        self: &Arc<Self>,
        filters: Vec<Filter>,
        on_overflow: Option<Arc<tokio::sync::Notify>>,
    ) -> Result<(Subscription, Option<Arc<str>>), Refusal> {
        let sub = self.subscribe_inner(filters, None, on_overflow, |st| st.position.clone())?;
        Ok(sub)
    }

    /// Ends every open subscription with a reconnect hint, without refusing new
    /// ones: used when events may have been missed, so clients replay them.
    pub fn disconnect_all(&self) -> usize {
        let guard = lock(&self.state);
        guard.close_every(Close::Shutdown);
        guard.subscribers
    }

    /// Registers a subscriber for `filters` and, with `last_event_id`, takes every
    /// retained event after it, in the same step. `on_overflow` is notified if the
    /// subscriber falls `subscriber_queue` events (or `subscriber_queue_bytes`) behind.
    pub fn subscribe(
        self: &Arc<Self>,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<tokio::sync::Notify>>,
    ) -> Result<Subscription, Refusal> {
        self.subscribe_inner(filters, last_event_id, on_overflow, |_| ())
            .map(|(sub, ())| sub)
    }

    fn subscribe_inner<T>(
        self: &Arc<Self>,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<tokio::sync::Notify>>,
        also: impl FnOnce(&State) -> T,
    ) -> Result<(Subscription, T), Refusal> {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let inbox = Arc::new(Inbox::new(
            self.limits.subscriber_queue,
            self.limits.subscriber_queue_bytes,
            on_overflow,
        ));
        let now = Instant::now();

        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.closing {
            return Err(Refusal::ShuttingDown);
        }
        if st.subscribers >= self.limits.max_subscribers {
            return Err(Refusal::Capacity);
        }
        st.subscribers += 1;
        for f in &filters {
            match f {
                Filter::Topic(t) => {
                    let collected = st.collected_through;
                    let topic = st
                        .topics
                        .entry(t.clone())
                        .or_insert_with(|| Topic::new(collected));
                    topic.subscribers.insert(id, inbox.clone());
                }
                Filter::Pattern(p) => st.patterns.insert(p, id, inbox.clone()),
            }
        }
        let (replay, resync) = match last_event_id {
            Some(last) if !last.is_empty() => self.replay(st, &filters, last, now),
            _ => (VecDeque::new(), None),
        };
        let extra = also(st);
        drop(guard);
        self.metrics.replayed(replay.len());
        let sub = Subscription {
            hub: self.clone(),
            id,
            inbox,
            filters: filters.into_boxed_slice(),
            replay,
            resync: resync.map(Box::new),
            already_sent: None,
        };
        Ok((sub, extra))
    }

    fn replay(
        &self,
        st: &mut State,
        filters: &[Filter],
        last: &str,
        now: Instant,
    ) -> (VecDeque<Arc<Event>>, Option<Resync>) {
        let resync = |reason, filters: Vec<String>| Resync {
            reason,
            last_event_id: last.to_owned(),
            filters,
        };
        let seq = match self.epoch.parse(last) {
            Some(seq) if seq < st.next_seq => seq,
            _ => {
                let all = filters.iter().map(|f| f.as_str().to_owned()).collect();
                return (VecDeque::new(), Some(resync(RESYNC_UNKNOWN_ID, all)));
            }
        };
        let mut events: Vec<Arc<Event>> = Vec::new();
        let mut lost = Vec::new();
        for f in filters {
            let mut complete = true;
            let mut found = Vec::new();
            match f {
                Filter::Topic(t) => {
                    if let Some(topic) = st.topics.get_mut(t) {
                        topic.trim(&self.limits, now);
                        complete = topic.trimmed_through <= seq;
                        found.extend(topic.after(seq).cloned());
                    }
                }
                Filter::Pattern(p) => {
                    complete = st.collected_through <= seq;
                    for (name, topic) in st.topics.iter_mut() {
                        if p.matches(name) {
                            topic.trim(&self.limits, now);
                            complete &= topic.trimmed_through <= seq;
                            found.extend(topic.after(seq).cloned());
                        }
                    }
                }
            }
            if complete {
                events.extend(found);
            } else {
                lost.push(f.as_str().to_owned());
            }
        }
        events.sort_unstable_by_key(|e| e.seq);
        events.dedup_by_key(|e| e.seq);
        let resync = (!lost.is_empty()).then(|| resync(RESYNC_TRIMMED, lost));
        (events.into(), resync)
    }

    fn unsubscribe(&self, id: u64, filters: &[Filter]) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.subscribers -= 1;
        for f in filters {
            match f {
                Filter::Topic(t) => {
                    if let Some(topic) = st.topics.get_mut(t) {
                        topic.subscribers.remove(&id);
                        if topic.is_idle() {
                            st.collected_through = st.collected_through.max(topic.trimmed_through);
                            st.topics.remove(t);
                        }
                    }
                }
                Filter::Pattern(p) => st.patterns.remove(p, id),
            }
        }
    }

    /// Drops expired history and dedupe keys, and topics left with neither history
    /// nor subscribers. Called periodically.
    pub fn collect(&self, now: Instant) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let mut collected = st.collected_through;
        st.topics.retain(|_, topic| {
            topic.trim(&self.limits, now);
            let idle = topic.is_idle();
            if idle {
                collected = collected.max(topic.trimmed_through);
            }
            !idle
        });
        st.collected_through = collected;
        st.dedupe.expire(now);
    }

    /// Ends every subscription (they send a reconnect hint and close) and refuses new ones.
    /// Returns how many were open.
    pub fn close_all(&self) -> usize {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.closing = true;
        st.close_every(Close::Shutdown);
        st.subscribers
    }

    pub fn subscriber_count(&self) -> usize {
        lock(&self.state).subscribers
    }

    pub fn topic_count(&self) -> usize {
        lock(&self.state).topics.len()
    }

    /// Up to `limit` topics and patterns with the most subscribers, for the operator page.
    pub fn topics(&self, limit: usize) -> Vec<TopicInfo> {
        let guard = lock(&self.state);
        let topics = guard.topics.iter().map(|(name, t)| TopicInfo {
            name: name.to_string(),
            pattern: false,
            subscribers: t.subscribers.len(),
            history: t.history.len(),
            history_bytes: t.history_bytes,
        });
        let mut all: Vec<TopicInfo> = topics.collect();
        guard.patterns.all(|subs| {
            all.push(TopicInfo {
                name: subs.pattern.as_str().to_owned(),
                pattern: true,
                subscribers: subs.inboxes.len(),
                history: 0,
                history_bytes: 0,
            });
        });
        drop(guard);
        all.sort_unstable_by(|a, b| b.subscribers.cmp(&a.subscribers).then(a.name.cmp(&b.name)));
        all.truncate(limit);
        all
    }
}

#[cfg(test)]
mod tests;

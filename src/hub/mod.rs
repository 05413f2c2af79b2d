//! The hub: topics with bounded history, fan-out to subscribers, and replay.
//!
//! All hub state sits under one short std `Mutex`, never held across `.await`. One
//! lock gives one order: ids increase in publish order across topics, an event with
//! several topics reaches a subscriber once, and replay-then-subscribe is atomic,
//! so a reconnecting client misses nothing and receives nothing twice.

mod dedupe;
mod id;
mod inbox;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::sse;
use crate::topic::{Filter, Pattern};

pub use id::{MAX_ID_LEN, is_valid_id, parse_stream_id};
pub use inbox::{Close, Recv};

use dedupe::Dedupe;
use id::Epoch;
use inbox::{Inbox, Pushed};

/// Bounds the hub keeps; taken from the `sse` and `dedupe` config sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub history: usize,
    pub history_ttl: Duration,
    pub history_bytes: u64,
    pub subscriber_queue: usize,
    pub subscriber_queue_bytes: u64,
    pub max_subscribers: usize,
    pub dedupe_window: Duration,
    pub dedupe_max_keys: usize,
}

impl Limits {
    pub fn from_config(c: &Config) -> Self {
        Limits {
            history: c.sse.history,
            history_ttl: c.sse.history_ttl,
            history_bytes: c.sse.history_bytes,
            subscriber_queue: c.sse.subscriber_queue,
            subscriber_queue_bytes: c.sse.subscriber_queue_bytes,
            max_subscribers: c.sse.max_subscribers,
            dedupe_window: c.dedupe.window,
            dedupe_max_keys: c.dedupe.max_keys,
        }
    }
}

/// One published event, encoded once; every subscriber and history slot shares it.
#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    pub id: Arc<str>,
    pub topics: Arc<[Arc<str>]>,
    /// The complete SSE frame (`id:`, `event:`, `data:` lines and the blank line),
    /// already framed as an HTTP/1.1 chunk.
    pub chunk: sse::Chunk,
    /// Bytes of data, counted against `history_bytes`.
    pub data_len: usize,
    pub at: Instant,
}

impl Event {
    /// An event read back from a shared broker for one subscriber's replay.
    pub fn replayed(
        id: Arc<str>,
        topics: Arc<[Arc<str>]>,
        event: Option<&str>,
        data: &str,
    ) -> Event {
        let tail = encode_tail(event, data);
        Event {
            seq: 0,
            chunk: sse::Chunk::from_parts(&[b"id: ", id.as_bytes(), b"\n", &tail]),
            id,
            topics,
            data_len: data.len(),
            at: Instant::now(),
        }
    }

    /// The SSE frame alone, without the chunk framing.
    pub fn frame(&self) -> Bytes {
        self.chunk.frame()
    }
}

/// An event to publish, already rendered and checked.
#[derive(Debug)]
pub struct NewEvent {
    /// Valid topic names, without duplicates.
    pub topics: Vec<String>,
    pub event: Option<String>,
    pub data: String,
    /// Route name and idempotency key.
    pub dedupe: Option<(Arc<str>, String)>,
}

/// The result of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: Arc<str>,
    pub topics: Vec<String>,
    /// True when the dedupe key was seen before: nothing was published.
    pub duplicate: bool,
}

/// Why a subscription was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_subscribers` are connected.
    Capacity,
    /// The hub is shutting down.
    ShuttingDown,
    /// The shared broker could not be read to replay what the client missed.
    BrokerUnavailable,
}

/// Filters that could not be resumed from the client's last event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    pub reason: &'static str,
    pub last_event_id: String,
    pub filters: Vec<String>,
}

/// Resync reason: the id was not minted by this process, or is malformed.
pub const RESYNC_UNKNOWN_ID: &str = "unknown_id";
/// Resync reason: events after the id were dropped from history.
pub const RESYNC_TRIMMED: &str = "history_trimmed";

#[derive(Debug)]
pub struct Hub {
    epoch: Epoch,
    limits: Limits,
    /// Kept here because every part that counts (publish, replay, streams) reaches the hub.
    metrics: crate::metrics::Metrics,
    next_subscriber: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    topics: HashMap<Arc<str>, Topic>,
    patterns: HashMap<Pattern, HashMap<u64, Arc<Inbox>>>,
    subscribers: usize,
    /// The newest seq dropped with a collected topic; a topic created later may have
    /// lost anything up to here, so replay across it is refused.
    collected_through: u64,
    closing: bool,
    dedupe: Dedupe,
    /// With a shared broker: the id of the last event delivered from it.
    position: Option<Arc<str>>,
}

#[derive(Debug)]
struct Topic {
    history: VecDeque<Arc<Event>>,
    history_bytes: u64,
    /// The newest seq dropped from `history`; replay from an older id is incomplete.
    trimmed_through: u64,
    subscribers: HashMap<u64, Arc<Inbox>>,
}

impl Topic {
    fn new(trimmed_through: u64) -> Self {
        Topic {
            history: VecDeque::new(),
            history_bytes: 0,
            trimmed_through,
            subscribers: HashMap::new(),
        }
    }

    fn trim(&mut self, limits: &Limits, now: Instant) {
        while let Some(front) = self.history.front() {
            let expired = now.duration_since(front.at) >= limits.history_ttl;
            let over =
                self.history.len() > limits.history || self.history_bytes > limits.history_bytes;
            if !expired && !over {
                break;
            }
            self.trimmed_through = front.seq;
            self.history_bytes -= front.data_len as u64;
            self.history.pop_front();
        }
    }

    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.history.is_empty()
    }

    /// Events after `seq`, oldest first.
    fn after(&self, seq: u64) -> impl Iterator<Item = &Arc<Event>> {
        let start = self.history.partition_point(|e| e.seq <= seq);
        self.history.range(start..)
    }
}

/// Everything of an event's frame after its `id:` line.
fn encode_tail(event: Option<&str>, data: &str) -> Bytes {
    sse::encode(&sse::Fields {
        event,
        data: Some(data),
        ..Default::default()
    })
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
                patterns: HashMap::new(),
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
        let tail = encode_tail(new.event.as_deref(), &new.data);
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
        let tail = encode_tail(event, data);
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
        let chunk = sse::Chunk::from_parts(&[b"id: ", id.as_bytes(), b"\n", tail]);
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
        for (pattern, inboxes) in &st.patterns {
            if topics.iter().any(|t| pattern.matches(t)) {
                inboxes.values().for_each(|i| push(i));
            }
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
        let inboxes = guard.topics.values().flat_map(|t| t.subscribers.values());
        for inbox in inboxes.chain(guard.patterns.values().flat_map(|s| s.values())) {
            inbox.close(Close::Shutdown);
        }
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
                Filter::Pattern(p) => {
                    st.patterns
                        .entry(p.clone())
                        .or_default()
                        .insert(id, inbox.clone());
                }
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
            filters,
            replay,
            resync,
            skip_through: None,
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
                Filter::Pattern(p) => {
                    if let Some(set) = st.patterns.get_mut(p) {
                        set.remove(&id);
                        if set.is_empty() {
                            st.patterns.remove(p);
                        }
                    }
                }
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
        let inboxes = st.topics.values().flat_map(|t| t.subscribers.values());
        for inbox in inboxes.chain(st.patterns.values().flat_map(|s| s.values())) {
            inbox.close(Close::Shutdown);
        }
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
        let patterns = guard.patterns.iter().map(|(p, subs)| TopicInfo {
            name: p.as_str().to_owned(),
            pattern: true,
            subscribers: subs.len(),
            history: 0,
            history_bytes: 0,
        });
        let mut all: Vec<TopicInfo> = topics.chain(patterns).collect();
        drop(guard);
        all.sort_unstable_by(|a, b| b.subscribers.cmp(&a.subscribers).then(a.name.cmp(&b.name)));
        all.truncate(limit);
        all
    }
}

/// A topic (or pattern) as the operator page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub pattern: bool,
    pub subscribers: usize,
    pub history: usize,
    pub history_bytes: u64,
}

/// One subscriber's place in the hub: events to replay, then its live queue.
/// Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    inbox: Arc<Inbox>,
    filters: Vec<Filter>,
    /// Retained events after the client's last id, sent before live ones.
    pub replay: VecDeque<Arc<Event>>,
    /// Filters that could not be resumed, announced before the replay.
    pub resync: Option<Resync>,
    /// Live events up to this stream id were already sent by another replica.
    skip_through: Option<(u64, u64)>,
}

impl Subscription {
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.hub.metrics
    }

    /// Skips live events whose stream id is not after `id`.
    pub fn skip_through(&mut self, id: (u64, u64)) {
        self.skip_through = Some(id);
    }

    /// The next live event, or why the hub ended this subscription.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Recv> {
        loop {
            let recv = self.inbox.poll_recv(cx);
            if let (Some(skip), Poll::Ready(Recv::Event(ev))) = (self.skip_through, &recv) {
                if parse_stream_id(&ev.id).is_some_and(|id| id <= skip) {
                    continue;
                }
                self.skip_through = None;
            }
            return recv;
        }
    }

    /// Ready once the subscriber was cut for falling behind; takes nothing from
    /// the queue. For a writer that waits on its socket and must still notice.
    pub fn poll_cut(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.inbox.poll_cut(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id, &self.filters);
    }
}

#[cfg(test)]
mod tests;

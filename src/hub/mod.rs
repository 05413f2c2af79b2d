//! The hub: topics with bounded history, fan-out to subscribers, and replay.
//!
//! Topics live in shards, each under a short std `Mutex` never held across
//! `.await`, so publishes to topics of different shards run in parallel. Ids
//! come from one counter: they increase in publish order, an event with several
//! topics reaches a subscriber once, replay-then-subscribe is atomic, and a
//! subscriber that follows several shards still takes its events in id order;
//! `order.rs` gives the argument.

mod dedupe;
mod direct;
mod event;
mod id;
mod inbox;
mod order;
mod patterns;
mod state;
mod subscription;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::task::Waker;
use std::time::Instant;

use crate::sse::encode;
use crate::topic::Filter;

pub use direct::{Direct, Feed};
pub use event::{
    Event, Limits, NewEvent, Published, RESYNC_TRIMMED, RESYNC_UNKNOWN_ID, Refusal, Resync,
    TopicInfo,
};
pub use id::{MAX_ID_LEN, is_valid_id};
pub use inbox::{Close, Recv};
pub use subscription::Subscription;

use dedupe::Dedupe;
use id::Epoch;
use inbox::{Inbox, Pushed, Wakes};
use order::{Order, Padded};
use patterns::Patterns;
use state::{ALL, Locked, Mask, SHARDS, Shard, mask_of};

#[derive(Debug)]
pub struct Hub {
    /// Itself, for the tasks that a large fan-out's direct deliveries run in.
    me: Weak<Hub>,
    epoch: Epoch,
    limits: Limits,
    /// Kept here because every part that counts (publish, replay, streams) reaches the hub.
    metrics: crate::metrics::Metrics,
    next_subscriber: AtomicU64,
    shards: [Padded<Mutex<Shard>>; SHARDS],
    order: Order,
    /// Pattern subscriptions, indexed by segment. Changed only with every shard
    /// locked and read with at least one, so readers never wait on a writer and
    /// each publish sees one set of patterns from start to end.
    patterns: RwLock<Patterns>,
    /// Whether `patterns` has any: a publish reads it under its shard lock, and
    /// skips the read lock (a cache line every publisher writes) when it has none.
    any_pattern: AtomicBool,
    /// Taken under the shard locks of a publish, after them.
    dedupe: Mutex<Dedupe>,
    /// With a shared broker: the id of the last event delivered from it. Written
    /// under the shard locks of that event.
    position: Mutex<Option<Arc<str>>>,
    subscribers: AtomicUsize,
    /// Set before the shards are locked to close every subscriber, and read under
    /// a subscription's shard locks, so no subscription opens unclosed.
    closing: AtomicBool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take every publisher and subscriber down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    pub fn new(limits: Limits) -> Arc<Self> {
        let dedupe = Dedupe::new(limits.dedupe_window, limits.dedupe_max_keys);
        Arc::new_cyclic(|me| Hub {
            me: me.clone(),
            epoch: Epoch::random(),
            limits,
            metrics: crate::metrics::Metrics::new(),
            next_subscriber: AtomicU64::new(1),
            shards: Default::default(),
            order: Order::new(),
            patterns: RwLock::new(Patterns::default()),
            any_pattern: AtomicBool::new(false),
            dedupe: Mutex::new(dedupe),
            position: Mutex::new(None),
            subscribers: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        })
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    #[inline]
    fn lock_shards(&self, mask: Mask) -> Locked<'_> {
        Locked::new(&self.shards, mask)
    }

    /// Appends the event to each topic's history and queues it for every subscriber,
    /// unless its dedupe key was seen within the window.
    pub fn publish(&self, new: NewEvent) -> Published {
        let tail = encode::event_tail(new.event.as_deref(), &new.data, id::MAX_MINTED_LEN);
        let topics: Arc<[Arc<str>]> = new.topics.iter().map(|t| Arc::from(t.as_str())).collect();
        let now = Instant::now();

        let mut locked = self.lock_shards(mask_of(new.topics.iter().map(String::as_str)));
        // Under the shard locks, so that the seq taken next and the key agree;
        // two publishes with one key wait on each other here, and on nothing else.
        let mut dedupe = None;
        if let Some((route, key)) = &new.dedupe {
            let keys = lock(&self.dedupe);
            if let Some(seen) = keys.get(route, key, now) {
                return Published {
                    id: seen.id.clone(),
                    topics: seen.topics.iter().map(|t| t.to_string()).collect(),
                    duplicate: true,
                };
            }
            dedupe = Some(keys);
        }
        let flight = self.order.begin(locked.first);
        let id: Arc<str> = self.epoch.format(flight.seq);
        if let (Some(mut keys), Some((route, key))) = (dedupe, new.dedupe) {
            keys.insert(route, &key, id.clone(), topics.clone(), now);
        }
        let wakes = self.insert(
            &mut locked,
            flight.seq,
            id.clone(),
            topics,
            tail,
            new.data.len(),
            now,
        );
        self.release(flight, locked, wakes);
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
        let tail = encode::event_tail(event, data, id.len());
        let now = Instant::now();
        let mut locked = self.lock_shards(mask_of(topics.iter().map(|t| &**t)));
        let flight = self.order.begin(locked.first);
        let wakes = self.insert(
            &mut locked,
            flight.seq,
            id.clone(),
            topics,
            tail,
            data.len(),
            now,
        );
        // Deliveries come one after another from the reader; a subscription that
        // reads the position holds the shards of its topics, so every event of
        // those topics after the position reaches its queue (`subscribe_at_position`).
        *lock(&self.position) = Some(id);
        self.release(flight, locked, wakes);
    }

    /// Ends a publish, in this order: the publish counts as done (merged queues
    /// may hand its event out), their readers are woken, the shard locks go, and
    /// only then are parked streams written to: no socket under a shard lock.
    fn release(&self, flight: order::InFlight<'_>, locked: Locked<'_>, wakes: Wakes) {
        drop(flight);
        wakes.later.into_iter().for_each(Waker::wake);
        drop(locked);
        self.hand_off(wakes.direct);
    }

    /// Sets the broker position (the id of the last event delivered, or of the
    /// newest one stored when delivery starts) without delivering anything.
    pub fn set_position(&self, id: Arc<str>) {
        *lock(&self.position) = Some(id);
    }

    /// Returns the wakers of merged queues, to wake once the publish has ended,
    /// and the parked direct writers, to deliver to once the locks are released.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        locked: &mut Locked<'_>,
        seq: u64,
        id: Arc<str>,
        topics: Arc<[Arc<str>]>,
        tail: encode::Tail,
        data_len: usize,
        now: Instant,
    ) -> Wakes {
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
        let mut wakes = Wakes::default();
        let mut push = |inbox: &Arc<Inbox>| match inbox.push(&event, &mut wakes) {
            Pushed::Queued => queued += 1,
            Pushed::Cut => cut += 1,
            Pushed::Skipped => {}
        };
        for name in topics.iter() {
            let topic = locked.shard(name).topic(name);
            topic.history.push_back(event.clone());
            topic.history_bytes += data_len as u64;
            topic.trim(&self.limits, now);
            topic.subscribers.values().for_each(&mut push);
        }
        // Read under a shard lock: a pattern subscription changes it with all of them.
        if self.any_pattern.load(Ordering::Relaxed) {
            let patterns = self.patterns.read().unwrap_or_else(PoisonError::into_inner);
            // A pattern matching several of the topics finds the event already queued.
            for name in topics.iter() {
                patterns.matching(name, |subs| subs.inboxes.values().for_each(&mut push));
            }
        }
        self.metrics.delivered(queued);
        for _ in 0..cut {
            self.metrics.dropped(crate::metrics::Dropped::Slow);
        }
        wakes
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
        self.subscribe_inner(filters, None, on_overflow, |hub| {
            lock(&hub.position).clone()
        })
    }

    /// Ends every open subscription with a reconnect hint, without refusing new
    /// ones: used when events may have been missed, so clients replay them.
    pub fn disconnect_all(&self) -> usize {
        let locked = self.lock_shards(ALL);
        self.close_every(&locked, Close::Shutdown);
        self.subscribers.load(Ordering::Relaxed)
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

    /// The shards a subscription to `filters` reads from: all of them for a pattern.
    fn mask_of_filters(filters: &[Filter]) -> Mask {
        let mut mask = 0;
        for f in filters {
            match f {
                Filter::Topic(t) => mask |= 1 << state::shard_of(t),
                Filter::Pattern(_) => return ALL,
            }
        }
        mask
    }

    fn subscribe_inner<T>(
        self: &Arc<Self>,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<tokio::sync::Notify>>,
        also: impl FnOnce(&Hub) -> T,
    ) -> Result<(Subscription, T), Refusal> {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let mask = Self::mask_of_filters(&filters);
        let inbox = Arc::new(Inbox::new(
            self.limits.subscriber_queue,
            self.limits.subscriber_queue_bytes,
            on_overflow,
            mask.count_ones() > 1,
        ));
        let now = Instant::now();

        let mut locked = self.lock_shards(mask);
        if self.closing.load(Ordering::SeqCst) {
            return Err(Refusal::ShuttingDown);
        }
        let admitted = self
            .subscribers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limits.max_subscribers).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(Refusal::Capacity);
        }
        let mut patterns = None;
        for f in &filters {
            match f {
                Filter::Topic(t) => {
                    let topic = locked.shard(t).topic(t);
                    topic.subscribers.insert(id, inbox.clone());
                }
                Filter::Pattern(p) => {
                    let index = patterns.get_or_insert_with(|| {
                        self.patterns
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                    });
                    index.insert(p, id, inbox.clone());
                    self.any_pattern.store(true, Ordering::Relaxed);
                }
            }
        }
        drop(patterns);
        let (replay, resync) = match last_event_id {
            Some(last) if !last.is_empty() => self.replay(&mut locked, &filters, last, now),
            _ => (VecDeque::new(), None),
        };
        let extra = also(self);
        drop(locked);
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
        locked: &mut Locked<'_>,
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
            Some(seq) if seq < self.order.next() => seq,
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
                    if let Some(topic) = locked.shard(t).topics.get_mut(t) {
                        topic.trim(&self.limits, now);
                        complete = topic.trimmed_through <= seq;
                        found.extend(topic.after(seq).cloned());
                    }
                }
                Filter::Pattern(p) => {
                    // A pattern holds every shard: a topic collected in any of them
                    // may have matched.
                    for shard in locked.all_mut() {
                        complete &= shard.collected_through <= seq;
                        for (name, topic) in shard.topics.iter_mut() {
                            if p.matches(name) {
                                topic.trim(&self.limits, now);
                                complete &= topic.trimmed_through <= seq;
                                found.extend(topic.after(seq).cloned());
                            }
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
        let mut locked = self.lock_shards(Self::mask_of_filters(filters));
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
        for f in filters {
            match f {
                Filter::Topic(t) => {
                    let shard = locked.shard(t);
                    if let Some(topic) = shard.topics.get_mut(t) {
                        topic.subscribers.remove(&id);
                        if topic.is_idle() {
                            shard.collected_through =
                                shard.collected_through.max(topic.trimmed_through);
                            shard.topics.remove(t);
                        }
                    }
                }
                Filter::Pattern(p) => {
                    let mut index = self
                        .patterns
                        .write()
                        .unwrap_or_else(PoisonError::into_inner);
                    index.remove(p, id);
                    self.any_pattern.store(!index.is_empty(), Ordering::Relaxed);
                }
            }
        }
    }

    /// Drops expired history and dedupe keys, and topics left with neither history
    /// nor subscribers. Called periodically, one shard at a time.
    pub fn collect(&self, now: Instant) {
        for shard in &self.shards {
            let mut shard = lock(&shard.0);
            let shard = &mut *shard;
            let mut collected = shard.collected_through;
            shard.topics.retain(|_, topic| {
                topic.trim(&self.limits, now);
                let idle = topic.is_idle();
                if idle {
                    collected = collected.max(topic.trimmed_through);
                }
                !idle
            });
            shard.collected_through = collected;
        }
        lock(&self.dedupe).expire(now);
    }

    fn close_every(&self, locked: &Locked<'_>, why: Close) {
        locked.all().for_each(|shard| shard.close_every(why));
        let patterns = self.patterns.read().unwrap_or_else(PoisonError::into_inner);
        patterns.all(|subs| subs.inboxes.values().for_each(|inbox| inbox.close(why)));
    }

    /// Ends every subscription (they send a reconnect hint and close) and refuses new ones.
    /// Returns how many were open.
    pub fn close_all(&self) -> usize {
        self.closing.store(true, Ordering::SeqCst);
        let locked = self.lock_shards(ALL);
        self.close_every(&locked, Close::Shutdown);
        self.subscribers.load(Ordering::Relaxed)
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    pub fn topic_count(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).topics.len()).sum()
    }

    /// Up to `limit` topics and patterns with the most subscribers, for the operator page.
    pub fn topics(&self, limit: usize) -> Vec<TopicInfo> {
        let mut all: Vec<TopicInfo> = Vec::new();
        for shard in &self.shards {
            let shard = lock(&shard.0);
            all.extend(shard.topics.iter().map(|(name, t)| TopicInfo {
                name: name.to_string(),
                pattern: false,
                subscribers: t.subscribers.len(),
                history: t.history.len(),
                history_bytes: t.history_bytes,
            }));
        }
        let patterns = self.patterns.read().unwrap_or_else(PoisonError::into_inner);
        patterns.all(|subs| {
            all.push(TopicInfo {
                name: subs.pattern.as_str().to_owned(),
                pattern: true,
                subscribers: subs.inboxes.len(),
                history: 0,
                history_bytes: 0,
            });
        });
        drop(patterns);
        all.sort_unstable_by(|a, b| b.subscribers.cmp(&a.subscribers).then(a.name.cmp(&b.name)));
        all.truncate(limit);
        all
    }
}

#[cfg(test)]
mod tests;

//! The hub's state in shards, each under its own lock: topics with their history
//! and subscribers. Pattern subscriptions, dedupe keys and the broker position
//! sit beside them in `mod.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::inbox::{Close, Inbox};
use super::order::Padded;
use super::{Event, Limits, lock};

/// Topics are spread over this many shards by a hash of their name. More shards
/// than cores keeps two busy topics apart most of the time; a pattern
/// subscription locks all of them, so they stay few.
pub(super) const SHARDS: usize = 16;

/// A set of shards, one bit each.
pub(super) type Mask = u16;

/// Every shard: what a pattern subscription and the hub-wide operations lock.
pub(super) const ALL: Mask = Mask::MAX;

#[derive(Debug, Default)]
pub(super) struct Shard {
    pub(super) topics: HashMap<Arc<str>, Topic>,
    /// The newest seq dropped with a collected topic of this shard; a topic
    /// created here later may have lost anything up to it, so replay across it
    /// is refused.
    pub(super) collected_through: u64,
}

#[derive(Debug)]
pub(super) struct Topic {
    pub(super) history: VecDeque<Arc<Event>>,
    pub(super) history_bytes: u64,
    /// The newest seq dropped from `history`; replay from an older id is incomplete.
    pub(super) trimmed_through: u64,
    pub(super) subscribers: HashMap<u64, Arc<Inbox>>,
}

/// The shard a topic lives in: a multiplicative hash, eight bytes at a time,
/// cheap for names of a few dozen bytes.
pub(super) fn shard_of(topic: &str) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes = topic.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    let mut h: u64 = bytes.len() as u64;
    for c in &mut chunks {
        let word = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        h = (h.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    ((h >> 32) as usize) % SHARDS
}

/// The shards of `topics`.
pub(super) fn mask_of<'a>(topics: impl IntoIterator<Item = &'a str>) -> Mask {
    topics
        .into_iter()
        .fold(0, |mask, t| mask | 1 << shard_of(t))
}

/// The locks of a set of shards, taken in index order so that two holders of
/// overlapping sets never wait on each other in a cycle.
pub(super) struct Locked<'a> {
    guards: Guards<'a>,
    /// The lowest shard held: its `busy` slot is the one a publish uses (`order.rs`).
    pub(super) first: usize,
}

enum Guards<'a> {
    /// Most publishes and subscriptions: one shard, found without hashing.
    One(MutexGuard<'a, Shard>),
    /// Boxed, so that the common case moves a few words, not sixteen guards.
    Many(Box<[Option<MutexGuard<'a, Shard>>; SHARDS]>),
}

impl<'a> Locked<'a> {
    #[inline]
    pub(super) fn new(shards: &'a [Padded<Mutex<Shard>>; SHARDS], mask: Mask) -> Self {
        // A publish with no topic still needs a slot.
        let mask = if mask == 0 { 1 } else { mask };
        let first = mask.trailing_zeros() as usize;
        if mask.is_power_of_two() {
            return Locked {
                guards: Guards::One(lock(&shards[first].0)),
                first,
            };
        }
        let mut guards = Box::new([const { None }; SHARDS]);
        let mut rest = mask;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            guards[i] = Some(lock(&shards[i].0));
            rest &= rest - 1;
        }
        Locked {
            guards: Guards::Many(guards),
            first,
        }
    }

    /// The shard of `topic`, which the caller locked.
    pub(super) fn shard(&mut self, topic: &str) -> &mut Shard {
        match &mut self.guards {
            Guards::One(g) => {
                debug_assert_eq!(shard_of(topic), self.first);
                g
            }
            Guards::Many(all) => all[shard_of(topic)]
                .as_deref_mut()
                .expect("the caller locked the shard of each topic it touches"),
        }
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &Shard> {
        let (one, many) = match &self.guards {
            Guards::One(g) => (Some(&**g), None),
            Guards::Many(all) => (None, Some(all.iter().flatten().map(|g| &**g))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    pub(super) fn all_mut(&mut self) -> impl Iterator<Item = &mut Shard> {
        let (one, many) = match &mut self.guards {
            Guards::One(g) => (Some(&mut **g), None),
            Guards::Many(all) => (None, Some(all.iter_mut().flatten().map(|g| &mut **g))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl std::fmt::Debug for Locked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locked")
            .field("first", &self.first)
            .finish()
    }
}

impl Shard {
    pub(super) fn close_every(&self, why: Close) {
        for topic in self.topics.values() {
            topic
                .subscribers
                .values()
                .for_each(|inbox| inbox.close(why));
        }
    }

    /// The topic `name`, created empty if it is not there.
    pub(super) fn topic(&mut self, name: &Arc<str>) -> &mut Topic {
        let collected = self.collected_through;
        self.topics
            .entry(name.clone())
            .or_insert_with(|| Topic::new(collected))
    }
}

impl Topic {
    pub(super) fn new(trimmed_through: u64) -> Self {
        Topic {
            history: VecDeque::new(),
            history_bytes: 0,
            trimmed_through,
            subscribers: HashMap::new(),
        }
    }

    pub(super) fn trim(&mut self, limits: &Limits, now: Instant) {
        while let Some(front) = self.history.front() {
            let over =
                self.history.len() > limits.history || self.history_bytes > limits.history_bytes;
            // The clock is compared only for an event no bound drops already.
            if !over && now.duration_since(front.at) < limits.history_ttl {
                break;
            }
            self.trimmed_through = front.seq;
            self.history_bytes -= front.data_len as u64;
            self.history.pop_front();
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.history.is_empty()
    }

    /// Events after `seq`, oldest first.
    pub(super) fn after(&self, seq: u64) -> impl Iterator<Item = &Arc<Event>> {
        let start = self.history.partition_point(|e| e.seq <= seq);
        self.history.range(start..)
    }
}

//! The hub's state under its one lock: topics with their history and
//! subscribers, pattern subscriptions, dedupe keys, the broker position.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::dedupe::Dedupe;
use super::inbox::{Close, Inbox};
use super::patterns::Patterns;
use super::{Event, Limits};

#[derive(Debug)]
pub(super) struct State {
    pub(super) next_seq: u64,
    pub(super) topics: HashMap<Arc<str>, Topic>,
    /// Pattern subscriptions, indexed by segment.
    pub(super) patterns: Patterns,
    pub(super) subscribers: usize,
    /// The newest seq dropped with a collected topic; a topic created later may have
    /// lost anything up to here, so replay across it is refused.
    pub(super) collected_through: u64,
    pub(super) closing: bool,
    pub(super) dedupe: Dedupe,
    /// With a shared broker: the id of the last event delivered from it.
    pub(super) position: Option<Arc<str>>,
}

#[derive(Debug)]
pub(super) struct Topic {
    pub(super) history: VecDeque<Arc<Event>>,
    pub(super) history_bytes: u64,
    /// The newest seq dropped from `history`; replay from an older id is incomplete.
    pub(super) trimmed_through: u64,
    pub(super) subscribers: HashMap<u64, Arc<Inbox>>,
}

impl State {
    pub(super) fn close_every(&self, why: Close) {
        for topic in self.topics.values() {
            topic
                .subscribers
                .values()
                .for_each(|inbox| inbox.close(why));
        }
        self.patterns
            .all(|subs| subs.inboxes.values().for_each(|inbox| inbox.close(why)));
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
            let expired = now.duration_since(front.at) >= limits.history_ttl;
            let over =
                self.history.len() > limits.history || self.history_bytes > limits.history_bytes;
            if !expired && !over {
                break;
            }
            self.trimmed_through = front.seq;
            self.history_bytes -= front.frame_len as u64;
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

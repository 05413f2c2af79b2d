//! Delivery by the fan-out itself: a subscriber whose writer is parked with
//! nothing unwritten is written to by the publish that queued its event, once
//! the publish released its shard locks, rather than through a wake-up and a
//! poll of the writer's task. The hub knows no socket: the writer implements
//! [`Direct`], and hands back to its task whatever it cannot finish.

use std::fmt;
use std::sync::Arc;
use std::task::Waker;

use super::inbox::Inbox;
use super::{Event, Hub};

/// Handoffs run inline below this many; more are split into tasks of
/// [`CHUNK`], so that the webhook's answer does not wait for the whole fan-out
/// and a runtime with several workers spreads it over them.
const INLINE: usize = 4;
const CHUNK: usize = 16;

/// A subscriber's writer that the fan-out may write through.
pub trait Direct: Send + Sync + fmt::Debug {
    /// Writes what `feed` hands out, without blocking and without waiting for
    /// any lock. Returns `true` once everything taken was written and the feed
    /// [`Feed::parked`] the writer for the next event. `false` hands over to
    /// the writer's task, which the hub then wakes: the writer was busy or not
    /// parked, the socket did not take everything, or the subscription closed
    /// (calling [`Feed::unpark`] first if the feed had parked it).
    fn deliver(&self, feed: &mut Feed<'_>) -> bool;
}

/// What a stream's writer reads during a direct delivery: its queue, in order.
#[derive(Debug)]
pub struct Feed<'a> {
    inbox: &'a Inbox,
    waker: Option<Waker>,
    metrics: &'a crate::metrics::Metrics,
}

impl Feed<'_> {
    /// The next queued event. When none is left, the writer's waker goes back
    /// to the queue in the same step, so that the next push finds the writer
    /// parked again ([`Feed::parked`]); not when the subscription closed.
    pub fn take(&mut self) -> Option<Arc<Event>> {
        let waker = self.waker.take()?;
        match self.inbox.pop_or_park(waker) {
            Ok(ev) => ev,
            Err((ev, waker)) => {
                self.waker = Some(waker);
                ev
            }
        }
    }

    /// Whether the writer's waker went back to the queue: nothing was left.
    pub fn parked(&self) -> bool {
        self.waker.is_none()
    }

    /// Takes the waker back from the queue, for the hub to wake once the
    /// writer gives up: its task must write what is left. A push that took it
    /// meanwhile wakes the task itself, the writer being no longer parked.
    pub fn unpark(&mut self) {
        if self.waker.is_none() {
            self.waker = self.inbox.take_waker();
        }
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.metrics
    }
}

/// One subscriber that a push found parked, with the waker the push took: the
/// publish delivers to it, or wakes it, after releasing its locks.
#[derive(Debug)]
pub(crate) struct Handoff {
    pub(crate) inbox: Arc<Inbox>,
    /// Taken when run; one dropped unrun (its task cancelled) still wakes.
    pub(crate) waker: Option<Waker>,
}

impl Handoff {
    fn run(mut self, metrics: &crate::metrics::Metrics) {
        let Some(direct) = self.inbox.direct() else {
            return;
        };
        let mut feed = Feed {
            inbox: &self.inbox,
            waker: self.waker.take(),
            metrics,
        };
        if !direct.deliver(&mut feed) {
            self.waker = feed.waker;
        }
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl Hub {
    /// Runs the handoffs of a publish that released its locks. Each subscriber
    /// appears once, and the queue lock orders its events, so the order the
    /// handoffs run in does not matter.
    pub(super) fn hand_off(&self, handoffs: Vec<Handoff>) {
        if handoffs.is_empty() {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current();
        let hub = self.me.upgrade();
        let (Ok(runtime), Some(hub)) = (runtime, hub) else {
            handoffs.into_iter().for_each(|h| h.run(&self.metrics));
            return;
        };
        if handoffs.len() <= INLINE {
            handoffs.into_iter().for_each(|h| h.run(&self.metrics));
            return;
        }
        let mut all = handoffs.into_iter();
        loop {
            let chunk: Vec<Handoff> = all.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                return;
            }
            let hub = hub.clone();
            runtime.spawn(async move {
                chunk.into_iter().for_each(|h| h.run(&hub.metrics));
            });
        }
    }
}

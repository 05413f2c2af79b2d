//! A subscriber's bounded queue, filled by publishers and drained by its response body.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use super::direct::{Direct, Handoff};
use super::order::Order;
use super::{Event, lock};

/// Why the hub ended a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The queue overflowed (in events or bytes): the client reads slower than
    /// events arrive.
    Slow,
    /// hookcast is shutting down.
    Shutdown,
}

/// Shared between the hub (which pushes) and one [`super::Subscription`] (which pops).
#[derive(Debug)]
pub(crate) struct Inbox {
    capacity: usize,
    /// Bytes of queued events allowed; one event alone may exceed it.
    capacity_bytes: u64,
    state: Mutex<State>,
    /// Fired on overflow. A client that stopped reading leaves hyper's buffers
    /// full, so hyper stops polling the body and would never see the close; the
    /// connection task listens for this and drops the connection instead.
    on_overflow: Option<Arc<Notify>>,
    /// Fed from several shards (`order.rs`): pushes may come out of seq order, so
    /// the queue is kept sorted and hands out only events no earlier publish can
    /// still precede.
    merged: bool,
    /// The stream's writer, when the fan-out may write through it (`direct.rs`).
    direct: OnceLock<Arc<dyn Direct>>,
}

/// What a publish does once it released its locks: wakes merged queues whose
/// events it held back, and delivers to (or wakes) parked direct writers.
#[derive(Debug, Default)]
pub(crate) struct Wakes {
    pub(crate) later: Vec<Waker>,
    pub(crate) direct: Vec<Handoff>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Arc<Event>>,
    /// Wire bytes of the events in `queue`.
    bytes: u64,
    waker: Option<Waker>,
    closed: Option<Close>,
    /// The newest event queued, so an event reaching this inbox through several
    /// of its topics or patterns is queued once (not used when `merged`).
    last_seq: u64,
    /// When `merged`: every publish below this seq had ended when last looked at.
    released_below: u64,
}

/// What [`Inbox::push`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Already queued through another topic, or the subscriber is closed.
    Skipped,
    /// The queue overflowed: the subscriber was cut as slow, just now.
    Cut,
}

/// What [`Inbox::poll_recv`] yields.
#[derive(Debug)]
pub enum Recv {
    Event(Arc<Event>),
    Closed(Close),
}

impl Inbox {
    pub(crate) fn new(
        capacity: usize,
        capacity_bytes: u64,
        on_overflow: Option<Arc<Notify>>,
        merged: bool,
    ) -> Self {
        Inbox {
            capacity,
            capacity_bytes,
            on_overflow,
            merged,
            direct: OnceLock::new(),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                waker: None,
                closed: None,
                last_seq: 0,
                released_below: 0,
            }),
        }
    }

    /// Queues `event`; on overflow (too many events, or too many bytes with at
    /// least one queued) the subscriber is closed as slow and its queue freed.
    /// A merged inbox cannot hand the event out before its publish ends, so its
    /// waker goes to `wakes.later`, for the publisher to wake then; a parked
    /// direct writer goes to `wakes.direct`, for the publisher to write to once
    /// it holds no shard lock.
    pub(crate) fn push(self: &Arc<Self>, event: &Arc<Event>, wakes: &mut Wakes) -> Pushed {
        if self.merged {
            return self.push_merged(event, &mut wakes.later);
        }
        let (waker, pushed) = {
            let mut s = lock(&self.state);
            if s.closed.is_some() || s.last_seq >= event.seq {
                return Pushed::Skipped;
            }
            s.last_seq = event.seq;
            self.queue_at(&mut s, event, None)
        };
        match waker {
            Some(waker) if pushed == Pushed::Queued && self.direct.get().is_some() => {
                wakes.direct.push(Handoff {
                    inbox: self.clone(),
                    waker: Some(waker),
                });
            }
            Some(w) => w.wake(),
            None => {}
        }
        pushed
    }

    /// Lets the fan-out write to this subscriber through `direct`; once.
    pub(crate) fn set_direct(&self, direct: Arc<dyn Direct>) {
        let _ = self.direct.set(direct);
    }

    pub(super) fn direct(&self) -> Option<&Arc<dyn Direct>> {
        self.direct.get()
    }

    /// The oldest event, for a direct writer, or, when none is queued, its
    /// waker registered again in the same step: `Ok`. `Err` gives the waker
    /// back: the subscription closed (no event then), or an event was taken
    /// and the queue may hold more. Only for an inbox that is not merged
    /// (those are never handed off).
    #[allow(clippy::type_complexity)]
    pub(super) fn pop_or_park(
        &self,
        waker: Waker,
    ) -> Result<Option<Arc<Event>>, (Option<Arc<Event>>, Waker)> {
        let mut s = lock(&self.state);
        if s.closed.is_some() {
            return Err((None, waker));
        }
        let Some(ev) = s.queue.pop_front() else {
            // The task may have registered itself meanwhile; its waker is as good.
            if s.waker.is_none() {
                s.waker = Some(waker);
            }
            return Ok(None);
        };
        s.bytes -= ev.chunk.wire().len() as u64;
        Err((Some(ev), waker))
    }

    /// The registered waker, taken.
    pub(super) fn take_waker(&self) -> Option<Waker> {
        lock(&self.state).waker.take()
    }

    /// Pushes may come out of seq order: the event goes to its place, and a seq
    /// already queued came through another of the subscriber's topics or patterns.
    fn push_merged(&self, event: &Arc<Event>, later: &mut Vec<Waker>) -> Pushed {
        let (waker, pushed) = {
            let mut s = lock(&self.state);
            if s.closed.is_some() {
                return Pushed::Skipped;
            }
            let before = s.queue.iter().rposition(|e| e.seq <= event.seq);
            if before.is_some_and(|i| s.queue[i].seq == event.seq) {
                return Pushed::Skipped;
            }
            self.queue_at(&mut s, event, Some(before.map_or(0, |i| i + 1)))
        };
        match waker {
            Some(w) if pushed == Pushed::Queued => later.push(w),
            Some(w) => w.wake(),
            None => {}
        }
        pushed
    }

    /// Queues `event` at `at` (at the back if `None`), or cuts the subscriber if
    /// the queue is full; returns the waker to wake.
    #[inline(always)]
    fn queue_at(
        &self,
        s: &mut State,
        event: &Arc<Event>,
        at: Option<usize>,
    ) -> (Option<Waker>, Pushed) {
        let size = event.chunk.wire().len() as u64;
        let over_bytes = !s.queue.is_empty() && s.bytes + size > self.capacity_bytes;
        if s.queue.len() >= self.capacity || over_bytes {
            s.closed = Some(Close::Slow);
            s.queue = VecDeque::new();
            s.bytes = 0;
            if let Some(cut) = &self.on_overflow {
                cut.notify_one();
            }
            (s.waker.take(), Pushed::Cut)
        } else {
            match at {
                Some(at) => s.queue.insert(at, event.clone()),
                None => s.queue.push_back(event.clone()),
            }
            s.bytes += size;
            (s.waker.take(), Pushed::Queued)
        }
    }

    pub(crate) fn close(&self, why: Close) {
        let waker = {
            let mut s = lock(&self.state);
            if s.closed.is_some() {
                return;
            }
            s.closed = Some(why);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(crate) fn poll_cut(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = lock(&self.state);
        if s.closed == Some(Close::Slow) {
            return Poll::Ready(());
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Queued events come before a shutdown close, so nothing already accepted is cut;
    /// a slow close drops the queue, since the client replays it on reconnect.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>, order: &Order) -> Poll<Recv> {
        let mut s = lock(&self.state);
        if s.closed == Some(Close::Slow) {
            return Poll::Ready(Recv::Closed(Close::Slow));
        }
        let taken = if self.merged {
            self.take_released(&mut s, order, cx)
        } else {
            s.queue.pop_front()
        };
        if let Some(ev) = taken {
            s.bytes -= ev.chunk.wire().len() as u64;
            return Poll::Ready(Recv::Event(ev));
        }
        // A merged queue may still hold events, only not yet released.
        if let Some(why) = s.closed
            && s.queue.is_empty()
        {
            return Poll::Ready(Recv::Closed(why));
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The oldest event of a merged queue, if no publish still under way can
    /// push an older one; read under the queue's lock, so that every push the
    /// watermark counts as done is in the queue (`order.rs`). If one can,
    /// registers to be woken when a publish ends.
    fn take_released(&self, s: &mut State, order: &Order, cx: &Context<'_>) -> Option<Arc<Event>> {
        let seq = s.queue.front()?.seq;
        if seq >= s.released_below {
            s.released_below = order.released();
        }
        if seq >= s.released_below {
            s.released_below = order.complete_below();
        }
        if seq >= s.released_below {
            order.wait(cx.waker());
            s.released_below = order.complete_below();
            if seq >= s.released_below {
                return None;
            }
        }
        s.queue.pop_front()
    }
}

//! A subscriber's bounded queue, filled by publishers and drained by its response body.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

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
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Arc<Event>>,
    /// Wire bytes of the events in `queue`.
    bytes: u64,
    waker: Option<Waker>,
    closed: Option<Close>,
    /// The newest event queued, so an event reaching this inbox through several
    /// of its topics or patterns is queued once.
    last_seq: u64,
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
    ) -> Self {
        Inbox {
            capacity,
            capacity_bytes,
            on_overflow,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                waker: None,
                closed: None,
                last_seq: 0,
            }),
        }
    }

    /// Queues `event`; on overflow (too many events, or too many bytes with at
    /// least one queued) the subscriber is closed as slow and its queue freed.
    pub(crate) fn push(&self, event: &Arc<Event>) -> Pushed {
        let size = event.chunk.wire().len() as u64;
        let (waker, pushed) = {
            let mut s = lock(&self.state);
            if s.closed.is_some() || s.last_seq >= event.seq {
                return Pushed::Skipped;
            }
            s.last_seq = event.seq;
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
                s.queue.push_back(event.clone());
                s.bytes += size;
                (s.waker.take(), Pushed::Queued)
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        pushed
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
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Recv> {
        let mut s = lock(&self.state);
        if s.closed == Some(Close::Slow) {
            return Poll::Ready(Recv::Closed(Close::Slow));
        }
        if let Some(ev) = s.queue.pop_front() {
            s.bytes -= ev.chunk.wire().len() as u64;
            return Poll::Ready(Recv::Event(ev));
        }
        if let Some(why) = s.closed {
            return Poll::Ready(Recv::Closed(why));
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

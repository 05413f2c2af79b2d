//! A subscriber's bounded queue, filled by publishers and drained by its response body.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use super::{Event, lock};

/// Why the hub ended a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The queue overflowed: the client reads slower than events arrive.
    Slow,
    /// hookcast is shutting down.
    Shutdown,
}

/// Shared between the hub (which pushes) and one [`super::Subscription`] (which pops).
#[derive(Debug)]
pub(crate) struct Inbox {
    capacity: usize,
    state: Mutex<State>,
    /// Fired on overflow. A client that stopped reading leaves hyper's buffers
    /// full, so hyper stops polling the body and would never see the close; the
    /// connection task listens for this and drops the connection instead.
    on_overflow: Option<Arc<Notify>>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Arc<Event>>,
    waker: Option<Waker>,
    closed: Option<Close>,
    /// The newest event queued, so an event reaching this inbox through several
    /// of its topics or patterns is queued once.
    last_seq: u64,
}

/// What [`Inbox::poll_recv`] yields.
#[derive(Debug)]
pub enum Recv {
    Event(Arc<Event>),
    Closed(Close),
}

impl Inbox {
    pub(crate) fn new(capacity: usize, on_overflow: Option<Arc<Notify>>) -> Self {
        Inbox {
            capacity,
            on_overflow,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                waker: None,
                closed: None,
                last_seq: 0,
            }),
        }
    }

    /// Queues `event`; on overflow the subscriber is closed as slow and its queue freed.
    /// Returns whether the event was queued.
    pub(crate) fn push(&self, event: &Arc<Event>) -> bool {
        let (waker, queued) = {
            let mut s = lock(&self.state);
            if s.closed.is_some() || s.last_seq >= event.seq {
                return false;
            }
            s.last_seq = event.seq;
            if s.queue.len() >= self.capacity {
                s.closed = Some(Close::Slow);
                s.queue = VecDeque::new();
                if let Some(cut) = &self.on_overflow {
                    cut.notify_one();
                }
                (s.waker.take(), false)
            } else {
                s.queue.push_back(event.clone());
                (s.waker.take(), true)
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        queued
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

//! One subscriber's handle on the hub: what to replay, then its live queue.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::inbox::{Inbox, Recv};
use super::{Event, Hub, Resync};
use crate::topic::Filter;

/// One subscriber's place in the hub: events to replay, then its live queue.
/// Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    pub(super) hub: Arc<Hub>,
    pub(super) id: u64,
    pub(super) inbox: Arc<Inbox>,
    pub(super) filters: Box<[Filter]>,
    /// Retained events after the client's last id, sent before live ones.
    pub replay: VecDeque<Arc<Event>>,
    /// Filters that could not be resumed, announced before the replay. Boxed:
    /// rare, and read once, while the subscription lives as long as its stream.
    pub resync: Option<Box<Resync>>,
    /// Live events another replica already sent: skipped until the first that is not.
    pub(super) already_sent: Option<AlreadySent>,
}

/// Whether a live event (by its id) was already sent; the broker that reads ids
/// decides, the hub only asks.
pub(super) struct AlreadySent(Box<dyn Fn(&str) -> bool + Send + Sync>);

impl fmt::Debug for AlreadySent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AlreadySent")
    }
}

impl Subscription {
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.hub.metrics
    }

    /// Skips live events while `sent` says their id was already sent, up to the
    /// first that was not.
    pub fn skip_while_sent(&mut self, sent: impl Fn(&str) -> bool + Send + Sync + 'static) {
        self.already_sent = Some(AlreadySent(Box::new(sent)));
    }

    /// The next live event, or why the hub ended this subscription.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Recv> {
        loop {
            let recv = self.inbox.poll_recv(cx, &self.hub.order);
            if let (Some(sent), Poll::Ready(Recv::Event(ev))) = (&self.already_sent, &recv) {
                if (sent.0)(&ev.id) {
                    continue;
                }
                self.already_sent = None;
            }
            return recv;
        }
    }

    /// Lets the fan-out write this subscriber's events through `direct` while
    /// its writer is parked (see [`super::Direct`]).
    pub fn deliver_through(&self, direct: Arc<dyn super::Direct>) {
        self.inbox.set_direct(direct);
    }

    /// Whether live events are still checked against [`Self::skip_while_sent`]:
    /// the fan-out must not deliver them directly then.
    pub fn skipping(&self) -> bool {
        self.already_sent.is_some()
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

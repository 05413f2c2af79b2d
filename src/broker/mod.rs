//! Where a publish goes: the in-memory hub alone (default), or Redis Streams or
//! NATS JetStream shared by every replica, with the hub as each replica's local fan-out.

pub mod health;
mod id;
mod nats;
mod reader;
mod redis;
mod resume;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Notify;

use crate::config::{self, Config};
use crate::hub::{self, Hub, NewEvent, Published, Refusal, Subscription};
use crate::topic::Filter;

pub use self::id::parse_stream_id;

/// The broker could not store an event (or read history): nothing was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Nothing was stored, and nothing will be: the broker was unreachable,
    /// refused, or said so when asked after the publish's deadline (see [`health`]).
    NotStored,
    /// The broker stopped answering: nothing it runs from now on is stored (the
    /// deadline has passed), but it may have stored the event in the instant
    /// before it stopped, its answer stuck with it.
    Stalled,
    /// The connection broke while the publish was in flight, and the broker could
    /// not tell afterwards whether it had stored it (it was still unreachable, or
    /// lost its data meanwhile). A route with `dedupe` makes the sender's retry safe.
    Unknown,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NotStored => f.write_str("the broker is unavailable"),
            Unavailable::Stalled => f.write_str("the broker stopped answering"),
            Unavailable::Unknown => {
                f.write_str("the connection to the broker broke during the publish")
            }
        }
    }
}

impl std::error::Error for Unavailable {}

/// A publish in progress (see [`Broker::publish`]).
pub enum Publishing<'a> {
    /// Published already (the memory broker); taken by the first poll.
    Done(Option<Result<Published, Unavailable>>),
    /// A shared broker's round trip.
    Waiting(Pin<Box<dyn Future<Output = Result<Published, Unavailable>> + Send + 'a>>),
}

impl fmt::Debug for Publishing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Publishing::Done(done) => f.debug_tuple("Done").field(done).finish(),
            Publishing::Waiting(_) => f.write_str("Waiting"),
        }
    }
}

impl Future for Publishing<'_> {
    type Output = Result<Published, Unavailable>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Publishing::Done(done) => Poll::Ready(done.take().expect("polled after it resolved")),
            Publishing::Waiting(fut) => fut.as_mut().poll(cx),
        }
    }
}

/// The bounds the hub keeps, as configured in the `sse` and `dedupe` sections.
pub fn configured_limits(config: &Config) -> hub::Limits {
    hub::Limits {
        history: config.sse.history,
        history_ttl: config.sse.history_ttl,
        history_bytes: config.sse.history_bytes,
        subscriber_queue: config.sse.subscriber_queue,
        subscriber_queue_bytes: config.sse.subscriber_queue_bytes,
        max_subscribers: config.sse.max_subscribers,
        dedupe_window: config.dedupe.window,
        dedupe_max_keys: config.dedupe.max_keys,
    }
}

/// The bounds this process's hub keeps under the configured broker: with a
/// shared one, replay is read from the broker and the hub keeps no history.
pub fn hub_limits(config: &Config) -> hub::Limits {
    let mut limits = configured_limits(config);
    if !matches!(config.broker, config::Broker::Memory) {
        limits.history = 0;
        limits.history_bytes = 0;
    }
    limits
}

/// The configured broker, in front of this process's hub. Clones share it.
#[derive(Debug, Clone)]
pub struct Broker {
    hub: Arc<Hub>,
    kind: Kind,
}

/// One variant a kind, each in a module of its own with the same methods:
/// `start`, `publish`, `subscribe`, `ready`, `stop`.
#[derive(Debug, Clone)]
enum Kind {
    /// The hub alone.
    Memory,
    Redis(Arc<redis::RedisStreams>),
    Nats(Arc<nats::JetStream>),
}

impl Broker {
    /// With a shared broker, starts this replica's reader task (it keeps trying
    /// to reach the broker, with backoff, until [`Broker::stop`]).
    pub fn new(config: &Config, hub: Arc<Hub>) -> Broker {
        let (sse, dedupe) = (&config.sse, &config.dedupe);
        let kind = match &config.broker {
            config::Broker::Memory => Kind::Memory,
            config::Broker::Redis(c) => {
                Kind::Redis(redis::RedisStreams::start(c, sse, dedupe, hub.clone()))
            }
            config::Broker::Nats(c) => {
                Kind::Nats(nats::JetStream::start(c, sse, dedupe, hub.clone()))
            }
        };
        Broker { hub, kind }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stores the event (a shared broker: before the future resolves) and fans it
    /// out. The memory broker publishes here and now; a shared broker's future
    /// (its network states, several KiB) is boxed, so that what a caller awaits,
    /// and every future it is part of, stays a few bytes for the common case.
    pub fn publish(&self, new: NewEvent) -> Publishing<'_> {
        match &self.kind {
            Kind::Memory => Publishing::Done(Some(Ok(self.hub.publish(new)))),
            Kind::Redis(r) => Publishing::Waiting(Box::pin(r.publish(new))),
            Kind::Nats(n) => Publishing::Waiting(Box::pin(n.publish(new))),
        }
    }

    /// Opens a subscription; with a last event id, what was missed comes first.
    pub async fn subscribe(
        &self,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<Notify>>,
    ) -> Result<Subscription, Refusal> {
        let hub = &self.hub;
        match &self.kind {
            Kind::Memory => hub.subscribe(filters, last_event_id, on_overflow),
            Kind::Redis(r) => r.subscribe(hub, filters, last_event_id, on_overflow).await,
            Kind::Nats(n) => n.subscribe(hub, filters, last_event_id, on_overflow).await,
        }
    }

    /// Whether the broker can take events: always for memory; for a shared
    /// broker, while this replica's reader follows it and its server answered
    /// within `broker.timeout` (see [`health`]).
    pub fn ready(&self) -> bool {
        match &self.kind {
            Kind::Memory => true,
            Kind::Redis(r) => r.ready(),
            Kind::Nats(n) => n.ready(),
        }
    }

    /// Resolves, with the reason, if the broker refuses to run (a NATS stream that
    /// exists with other settings); never for the others.
    pub async fn fatal(&self) -> String {
        match &self.kind {
            Kind::Nats(n) => n.fatal().await,
            Kind::Memory | Kind::Redis(_) => std::future::pending().await,
        }
    }

    /// Stops the reader task.
    pub fn stop(&self) {
        match &self.kind {
            Kind::Memory => {}
            Kind::Redis(r) => r.stop(),
            Kind::Nats(n) => n.stop(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// A publish into the memory broker is awaited inside every webhook's
    /// future: a shared broker's states (several KiB) stay out of it.
    #[test]
    fn the_publish_future_stays_small() {
        let size = std::mem::size_of::<super::Publishing<'static>>();
        assert!(size <= 64, "the publish future grew to {size} bytes");
    }
}

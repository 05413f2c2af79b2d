//! Where a publish goes: the in-memory hub alone (default), or Redis Streams or
//! NATS JetStream shared by every replica, with the hub as each replica's local fan-out.

pub mod health;
mod nats;
mod redis;

use std::fmt;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{self, Config};
use crate::hub::{Hub, NewEvent, Published, Refusal, Subscription};
use crate::topic::Filter;

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

/// The configured broker, in front of this process's hub. Clones share it.
#[derive(Debug, Clone)]
pub struct Broker {
    hub: Arc<Hub>,
    redis: Option<Arc<redis::Shared>>,
    nats: Option<Arc<nats::Shared>>,
}

impl Broker {
    /// With `broker: redis` or `nats`, starts this replica's reader task (it keeps
    /// trying to reach the broker, with backoff, until [`Broker::stop`]).
    pub fn new(config: &Config, hub: Arc<Hub>) -> Broker {
        let (sse, dedupe) = (&config.sse, &config.dedupe);
        let (redis, nats) = match &config.broker {
            config::Broker::Memory => (None, None),
            config::Broker::Redis(c) => (
                Some(redis::Shared::start(c, sse, dedupe, hub.clone())),
                None,
            ),
            config::Broker::Nats(c) => {
                (None, Some(nats::Shared::start(c, sse, dedupe, hub.clone())))
            }
        };
        Broker { hub, redis, nats }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stores the event (Redis: before returning) and fans it out.
    pub async fn publish(&self, new: NewEvent) -> Result<Published, Unavailable> {
        match (&self.redis, &self.nats) {
            (Some(r), _) => r.publish(new).await,
            (_, Some(n)) => n.publish(new).await,
            _ => Ok(self.hub.publish(new)),
        }
    }

    /// Opens a subscription; with a last event id, what was missed comes first.
    pub async fn subscribe(
        &self,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<Notify>>,
    ) -> Result<Subscription, Refusal> {
        match (&self.redis, &self.nats) {
            (Some(r), _) => {
                r.subscribe(&self.hub, filters, last_event_id, on_overflow)
                    .await
            }
            (_, Some(n)) => {
                n.subscribe(&self.hub, filters, last_event_id, on_overflow)
                    .await
            }
            _ => self.hub.subscribe(filters, last_event_id, on_overflow),
        }
    }

    /// Whether the broker can take events: always for memory; for Redis, while
    /// this replica's reader is connected and Redis answered within
    /// `broker.timeout` (see [`health`]); for NATS, while the reader follows the
    /// stream and JetStream answers within `broker.timeout`.
    pub fn ready(&self) -> bool {
        self.redis.as_ref().is_none_or(|r| r.ready())
            && self.nats.as_ref().is_none_or(|n| n.ready())
    }

    /// Resolves, with the reason, if the broker refuses to run (a NATS stream that
    /// exists with other settings); never for the others.
    pub async fn fatal(&self) -> String {
        match &self.nats {
            Some(n) => n.fatal().await,
            None => std::future::pending().await,
        }
    }

    /// Stops the reader task.
    pub fn stop(&self) {
        if let Some(r) = &self.redis {
            r.stop();
        }
        if let Some(n) = &self.nats {
            n.stop();
        }
    }
}

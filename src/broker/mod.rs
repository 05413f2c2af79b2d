//! Where a publish goes: the in-memory hub alone (default), or Redis Streams
//! shared by every replica, with the hub as each replica's local fan-out.

pub mod health;
mod redis;

use std::fmt;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{self, Config};
use crate::hub::{Hub, NewEvent, Published, Refusal, Subscription};
use crate::topic::Filter;

pub use self::redis::check_url as check_redis_url;

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
}

impl Broker {
    /// With `broker: redis`, starts this replica's reader task (it keeps trying
    /// to reach Redis, with backoff, until [`Broker::stop`]).
    pub fn new(config: &Config, hub: Arc<Hub>) -> Broker {
        let redis = match &config.broker {
            config::Broker::Memory => None,
            config::Broker::Redis(c) => Some(redis::Shared::start(
                c,
                &config.sse,
                &config.dedupe,
                hub.clone(),
            )),
        };
        Broker { hub, redis }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stores the event (Redis: before returning) and fans it out.
    pub async fn publish(&self, new: NewEvent) -> Result<Published, Unavailable> {
        match &self.redis {
            None => Ok(self.hub.publish(new)),
            Some(r) => r.publish(new).await,
        }
    }

    /// Opens a subscription; with a last event id, what was missed comes first.
    pub async fn subscribe(
        &self,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<Notify>>,
    ) -> Result<Subscription, Refusal> {
        match &self.redis {
            None => self.hub.subscribe(filters, last_event_id, on_overflow),
            Some(r) => {
                r.subscribe(&self.hub, filters, last_event_id, on_overflow)
                    .await
            }
        }
    }

    /// Whether the broker can take events: always for memory; for Redis, while
    /// this replica's reader is connected and Redis answered within
    /// `broker.timeout` (see [`health`]).
    pub fn ready(&self) -> bool {
        self.redis.as_ref().is_none_or(|r| r.ready())
    }

    /// Stops the reader task.
    pub fn stop(&self) {
        if let Some(r) = &self.redis {
            r.stop();
        }
    }
}

//! Redis Streams shared by replicas.
//!
//! Keys (under `broker.prefix`):
//! - `feed`: one stream of every event (topics, event name, data), trimmed to
//!   `broker.feed_length`. Each replica's reader follows it with `XREAD BLOCK` and
//!   hands events to its hub, so an event is encoded once per replica. One stream
//!   gives one order: ids increase in publish order across topics.
//! - `topic:<name>`: per-topic history for replay, the same entries under the same
//!   ids, trimmed by `sse.history`, `sse.history_ttl` and `sse.history_bytes`, so
//!   the per-topic bounds hold as in memory. `meta:<name>` counts its bytes and records
//!   the newest id trimmed away (to tell a complete replay from a partial one).
//! - `topics`: a sorted set of topic names by last publish time, for patterns.
//! - `since`: the first id written to this Redis's data set; older ids are unknown
//!   (they come from a Redis that lost its data).
//! - `dedupe:<len>:<route>:<key>`: idempotency keys, `SET NX`-like inside the script.
//! - `receipt:<token>`: the id a publish got, kept for a few `broker.timeout`s, so a
//!   publisher whose connection broke before the answer can ask whether it ran.
//!
//! A publish is one Lua script, so the feed entry, the topic entries, the trims
//! and the dedupe key are written together or not at all. It carries a deadline
//! on Redis's clock and stores nothing once `TIME` has passed it, so a publish
//! answered 503 (Redis paused or stalled past `broker.timeout`) is never stored
//! later (see [`super::health`]).
//!
//! Here: the broker's shared state, its commands' limits and its pinger; in
//! `redis/`: the publish script and its receipt (`publish.rs`), replay
//! (`replay.rs`), and the reader (`reader.rs`).

mod publish;
mod reader;
mod replay;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::Unavailable;
use super::health::{self, Health};
use super::reader::Tasks;
use crate::config;
use crate::hub::Hub;

/// Reconnection backoff bounds; the ceiling keeps resumption within 5 s
/// (README "Redis").
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Key names under the prefix.
#[derive(Debug)]
struct Keys {
    prefix: String,
    feed: String,
    since: String,
    topics: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            feed: format!("{prefix}feed"),
            since: format!("{prefix}since"),
            topics: format!("{prefix}topics"),
        }
    }

    fn topic(&self, name: &str) -> String {
        format!("{}topic:{name}", self.prefix)
    }

    fn meta(&self, name: &str) -> String {
        format!("{}meta:{name}", self.prefix)
    }

    fn receipt(&self, token: u64) -> String {
        format!("{}receipt:{token:016x}", self.prefix)
    }

    fn dedupe(&self, route: &str, key: &str) -> String {
        // The route's length keeps `a:b`+`c` apart from `a`+`b:c`.
        format!("{}dedupe:{}:{route}:{key}", self.prefix, route.len())
    }
}

/// Redis Streams as this replica's broker: the publishing connection, the key
/// names, the bounds, and the health of the server, shared by the publisher,
/// the subscribers, the reader and the pinger.
pub(super) struct RedisStreams {
    client: Client,
    manager: ConnectionManager,
    keys: Keys,
    script: Script,
    timeout: Duration,
    feed_length: usize,
    history: usize,
    history_ttl: Duration,
    history_bytes: u64,
    dedupe_window: Duration,
    connected: AtomicBool,
    health: Health,
    /// The reader and the pinger.
    tasks: Tasks,
}

impl health::Ping for RedisStreams {
    const KIND: &'static str = "redis";

    /// On the publishing connection, so that readiness follows whether Redis
    /// answers there, and the publish deadlines follow its clock.
    async fn ping(self: Arc<Self>) -> bool {
        self.time().await.is_ok()
    }
}

impl std::fmt::Debug for RedisStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreams")
            .field("prefix", &self.keys.prefix)
            .field("connected", &self.connected)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl RedisStreams {
    pub(super) fn start(
        c: &config::RedisBroker,
        sse: &config::Sse,
        dedupe: &config::Dedupe,
        hub: Arc<Hub>,
    ) -> Arc<RedisStreams> {
        // The URL was checked with the config; a failure here is a bug.
        let client = Client::open(c.url.as_str()).expect("broker.url was checked");
        let health = Health::new(c.timeout);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(c.timeout))
            // A publish is waited for past broker.timeout by the clock margin.
            .set_response_timeout(Some(health.wait_limit()))
            .set_number_of_retries(1)
            .set_max_delay(BACKOFF_MAX);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .expect("a lazy connection manager needs no connection");
        let shared = Arc::new(RedisStreams {
            client,
            manager,
            keys: Keys::new(&c.prefix),
            script: Script::new(publish::SCRIPT),
            timeout: c.timeout,
            feed_length: c.feed_length,
            history: sse.history,
            history_ttl: sse.history_ttl,
            history_bytes: sse.history_bytes,
            dedupe_window: dedupe.window,
            connected: AtomicBool::new(false),
            health,
            tasks: Tasks::default(),
        });
        let reader = reader::read(Arc::downgrade(&shared), hub);
        shared.tasks.run(&shared, c.timeout, reader);
        shared
    }

    pub(super) fn ready(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.health.healthy()
    }

    pub(super) fn stop(&self) {
        self.tasks.stop();
    }

    /// Reads Redis's clock on the publishing connection: an answer counts for
    /// readiness and dates the publish deadlines.
    async fn time(&self) -> redis::RedisResult<()> {
        let mut conn = self.manager.clone();
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        self.health
            .calibrate(secs * 1000 + micros / 1000, std::time::Instant::now());
        Ok(())
    }

    async fn within<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        self.within_for(what, self.timeout, f).await
    }

    /// [`RedisStreams::within`] with a limit of its own. Any answer, an error reply
    /// included, shows Redis is responsive.
    async fn within_for<T>(
        &self,
        what: &'static str,
        limit: Duration,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        match tokio::time::timeout(limit, f).await {
            Ok(Ok(v)) => {
                self.health.answered();
                Ok(v)
            }
            Ok(Err(e)) => {
                tracing::warn!(what, error = %e, "redis command failed");
                if !e.is_io_error() {
                    // An error reply: Redis answered (a script is refused before
                    // it writes: OOM, NOSCRIPT, a wrong argument).
                    self.health.answered();
                } else if !e.is_connection_refusal() && !e.is_timeout() {
                    // Perhaps sent, perhaps run, and then the connection broke.
                    return Err(Unavailable::Unknown);
                }
                Err(Unavailable::NotStored)
            }
            Err(_) => {
                tracing::warn!(
                    what,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "redis command timed out"
                );
                Err(Unavailable::NotStored)
            }
        }
    }
}

//! NATS JetStream shared by replicas (README "Scale out").
//!
//! One stream (`broker.stream`) holds every event once, under the subject
//! `<subject_prefix>.<first topic>`, with headers for what the body cannot say:
//! - `Hookcast-Topics`: every topic, space-separated, when there are several;
//! - `Hookcast-Event`: the SSE event name;
//! - `Hookcast-Deadline`: the wall-clock millisecond after which the publisher
//!   stopped waiting (see [`CLOCK_MARGIN`]); a message stored later is ignored;
//! - `Hookcast-Publish`: a random token, to find the message when its ack was lost;
//! - `Nats-Msg-Id`: the dedupe key, so JetStream's duplicate window answers retries.
//!
//! An event id is `<epoch>-<stream sequence>`: one order for all replicas. The
//! epoch is drawn when hookcast creates the stream (the unix ms then) and kept in
//! its description, `hookcast epoch <n>`, the same on every node (the servers'
//! own creation times differ by node), so a stream re-created on a wiped store
//! makes older ids unknown.
//! The stream is bounded by age (`sse.history_ttl`), `broker.max_msgs` and
//! optionally `broker.max_bytes`; the per-topic bounds (`sse.history`, `sse.history_bytes`)
//! are applied when replaying, since an event on several topics is one message.
//!
//! Here: the broker's shared state and its pinger; in `nats/`: a stored
//! message and reading messages back (`message.rs`), the publish (`publish.rs`),
//! replay (`replay.rs`), the stream's settings and the connection (`stream.rs`),
//! and the reader (`reader.rs`).

mod message;
mod publish;
mod reader;
mod replay;
mod stream;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::Context;
use tokio::sync::Notify;

use self::message::{epoch_of, unix_ms};
use super::Unavailable;
use super::health::{self, Health};
use super::reader::Tasks;
use crate::config;
use crate::hub::{self, Hub};

const TOPICS: &str = "Hookcast-Topics";
const EVENT: &str = "Hookcast-Event";
const DEADLINE: &str = "Hookcast-Deadline";
const MSG_ID: &str = "Nats-Msg-Id";
const PUBLISH: &str = "Hookcast-Publish";

/// The clock difference tolerated between hookcast and the NATS servers. A
/// publish carries the deadline `start + timeout + margin`; without an ack by
/// `start + timeout` hookcast waits until `start + timeout + 2 * margin` before
/// answering 503, so that anything stored from then on is stamped after the
/// deadline and ignored by every reader.
const CLOCK_MARGIN: Duration = Duration::from_millis(500);
/// Messages taken per pull; bounds what the reader holds at once.
const READ_COUNT: usize = 1000;
/// How long one pull waits; the server sends heartbeats meanwhile.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// Reconnection backoff bounds; the ceiling keeps resumption within 5 s
/// (README "NATS JetStream").
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The connection is dropped for a new one at most this often.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// An ephemeral consumer left behind (replica gone) is removed after this.
const CONSUMER_IDLE: Duration = Duration::from_secs(30);

/// NATS JetStream as this replica's broker: the connection, the stream's
/// settings and epoch, and the health of the servers, shared by the publisher,
/// the subscribers, the reader and the pinger.
pub(super) struct JetStream {
    config: config::NatsBroker,
    history: usize,
    history_bytes: u64,
    history_ttl: Duration,
    dedupe_window: Duration,
    js: OnceLock<Context>,
    /// The stream's creation time (ms): the first part of every id; 0 until known.
    epoch: AtomicU64,
    /// The reader follows the stream.
    following: AtomicBool,
    /// Whether JetStream answered within `broker.timeout` (see [`health`]).
    health: Health,
    /// When [`JetStream::reconnect`] last dropped the connection (unix ms).
    reconnected: AtomicU64,
    /// Wakes the reader to start over (the stream was re-created under it).
    restart: Arc<Notify>,
    /// Why the broker refuses to run (a stream with other settings).
    fatal: Mutex<Option<String>>,
    fatal_set: Notify,
    /// The reader and the pinger.
    tasks: Tasks,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream")
            .field("stream", &self.config.stream)
            .field("following", &self.following)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl JetStream {
    pub(super) fn start(
        c: &config::NatsBroker,
        sse: &config::Sse,
        dedupe: &config::Dedupe,
        hub: Arc<Hub>,
    ) -> Arc<JetStream> {
        let shared = Arc::new(JetStream {
            config: c.clone(),
            history: sse.history,
            history_bytes: sse.history_bytes,
            history_ttl: sse.history_ttl,
            dedupe_window: dedupe.window,
            js: OnceLock::new(),
            epoch: AtomicU64::new(0),
            following: AtomicBool::new(false),
            health: Health::new(c.timeout),
            reconnected: AtomicU64::new(0),
            restart: Arc::new(Notify::new()),
            fatal: Mutex::new(None),
            fatal_set: Notify::new(),
            tasks: Tasks::default(),
        });
        let reader = reader::read(Arc::downgrade(&shared), hub);
        shared.tasks.run(&shared, c.timeout, reader);
        shared
    }

    pub(super) fn ready(&self) -> bool {
        self.following.load(Ordering::Relaxed) && self.health.healthy()
    }

    pub(super) fn stop(&self) {
        self.tasks.stop();
    }

    /// Resolves once the broker refused to run, with the reason.
    pub(super) async fn fatal(&self) -> String {
        loop {
            let notified = self.fatal_set.notified();
            if let Some(why) = hub::lock(&self.fatal).clone() {
                return why;
            }
            notified.await;
        }
    }

    /// Drops the connection for a new one, at most once per [`RECONNECT_EVERY`]. A
    /// connection that went silent (a partition) may keep its TCP retransmission
    /// backoff after the network heals, holding back acks past their deadline;
    /// a new connection starts afresh.
    fn reconnect(&self, js: &Context) {
        let now = unix_ms(SystemTime::now());
        let last = self.reconnected.load(Ordering::Relaxed);
        if now.saturating_sub(last) < RECONNECT_EVERY.as_millis() as u64
            || self
                .reconnected
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let client = js.client();
        tokio::spawn(async move {
            let _ = client.force_reconnect().await;
        });
    }

    fn epoch(&self) -> Option<u64> {
        Some(self.epoch.load(Ordering::Relaxed)).filter(|e| *e != 0)
    }

    fn subject(&self, topic: &str) -> String {
        format!("{}.{topic}", self.config.subject_prefix)
    }

    /// Runs a request to JetStream within `broker.timeout`; an answer counts
    /// for readiness.
    async fn within<T, E: std::fmt::Display>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Unavailable> {
        match tokio::time::timeout(self.config.timeout, f).await {
            Ok(Ok(v)) => {
                self.health.answered();
                Ok(v)
            }
            Ok(Err(e)) => {
                tracing::warn!(what, error = %e, "nats request failed");
                Err(Unavailable::NotStored)
            }
            Err(_) => {
                tracing::warn!(
                    what,
                    timeout_ms = self.config.timeout.as_millis() as u64,
                    "nats request timed out"
                );
                Err(Unavailable::NotStored)
            }
        }
    }
}

impl health::Ping for JetStream {
    const KIND: &'static str = "nats";

    /// Asks for the stream: an answer within `broker.timeout` keeps the replica
    /// ready. A stream re-created meanwhile restarts the reader.
    async fn ping(self: Arc<Self>) -> bool {
        let Some(js) = self.js.get() else {
            return false;
        };
        let Ok(stream) = js.get_stream(&self.config.stream).await else {
            return false;
        };
        self.health.answered();
        let epoch = epoch_of(stream.cached_info());
        if self.epoch().is_some_and(|e| Some(e) != epoch) {
            self.restart.notify_waiters();
        }
        true
    }

    /// A connection that went silent is replaced (see [`JetStream::reconnect`]).
    fn unanswered(&self) {
        if let Some(js) = self.js.get() {
            self.reconnect(js);
        }
    }
}

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

use async_nats::ServerAddr;
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

/// Checks a `broker.url` (one URL, or several comma-separated) without connecting.
pub fn check_url(url: &str) -> Result<(), String> {
    addrs(url).map(|_| ())
}

fn addrs(url: &str) -> Result<Vec<ServerAddr>, String> {
    let hint = "write nats://[user:password@]host[:port], several separated by commas";
    let mut out = Vec::new();
    for one in url.split(',').map(str::trim) {
        if one.is_empty() {
            return Err(format!("`{url}` has an empty server address; {hint}"));
        }
        let scheme = one.split_once("://").map_or("nats", |(s, _)| s);
        match scheme {
            "nats" => {}
            "tls" => {
                return Err(
                    "TLS (tls://) is not built into hookcast; reach NATS on a private network or through a TLS tunnel".into(),
                );
            }
            other => {
                return Err(format!(
                    "`{one}` has scheme `{other}`, which is not NATS; {hint}"
                ));
            }
        }
        match one.parse::<ServerAddr>() {
            Ok(a) => out.push(a),
            Err(e) => return Err(format!("`{one}` is not a NATS URL ({e}); {hint}")),
        }
    }
    Ok(out)
}

/// Checks a `broker.stream` name as JetStream takes it.
pub fn check_stream(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "`{name}` is not a stream name: use 1 to 255 of A-Z a-z 0-9 _ -"
        ));
    }
    Ok(())
}

/// Checks a `broker.subject_prefix`: dot-separated tokens without wildcards.
pub fn check_subject_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t != "*"
                && t != ">"
                && t.chars().all(|c| !c.is_whitespace() && !c.is_control())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{prefix}` is not a subject prefix: use dot-separated tokens without spaces, `*` or `>`, e.g. hookcast"
        ))
    }
}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        check_url("nats://127.0.0.1:4222").unwrap();
        check_url("nats://a:4222, nats://b:4222,c").unwrap();
        check_url("nats://u:p@h:4222").unwrap();
        assert!(check_url("tls://h:4222").unwrap_err().contains("TLS"));
        assert!(check_url("http://h").unwrap_err().contains("not NATS"));
        assert!(check_url("nats://a,,b").unwrap_err().contains("empty"));
        assert!(
            check_url("nats://h:notaport")
                .unwrap_err()
                .contains("not a NATS URL")
        );
    }

    #[test]
    fn names() {
        check_stream("HOOKCAST_2-a").unwrap();
        for bad in ["", "a.b", "a b", "a*", "a>"] {
            assert!(check_stream(bad).is_err(), "{bad}");
        }
        check_subject_prefix("hookcast").unwrap();
        check_subject_prefix("app.events").unwrap();
        for bad in ["", ".a", "a.", "a..b", "a.*", "a.>", "a b"] {
            assert!(check_subject_prefix(bad).is_err(), "{bad}");
        }
    }
}

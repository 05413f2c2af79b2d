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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::datetime::DateTime;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{HeaderMap, ServerAddr};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::Unavailable;
use super::id::{parse_stream_id as parse_id, skip_through};
use crate::config;
use crate::hub::{
    self, Event, Hub, NewEvent, Published, RESYNC_TRIMMED, RESYNC_UNKNOWN_ID, Refusal, Resync,
    Subscription,
};
use crate::sse::encode;
use crate::topic::Filter;

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
/// Reconnection backoff bounds; the ceiling keeps resumption within SPEC's 5 s.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often readiness is checked with a request to JetStream.
const PING_EVERY: Duration = Duration::from_secs(1);
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

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn stamp_ms(t: &DateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// An event as stored: what replay and live delivery both need.
struct Stored {
    seq: u64,
    topics: Arc<[Arc<str>]>,
    event: Option<String>,
    data: String,
}

/// Reads a stored message; `None` for one stored after its publisher's deadline
/// (answered 503), which no reader may deliver.
fn stored(
    prefix: &str,
    seq: u64,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
    stamp: &DateTime,
) -> Option<Stored> {
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    if let Some(deadline) = header(DEADLINE).and_then(|d| d.parse::<u64>().ok())
        && stamp_ms(stamp) > deadline
    {
        return None;
    }
    let topics: Arc<[Arc<str>]> = match header(TOPICS) {
        Some(list) => list
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(Arc::from)
            .collect(),
        None => {
            let topic = subject
                .strip_prefix(prefix)
                .and_then(|s| s.strip_prefix('.'))
                .unwrap_or(subject);
            Arc::from(vec![Arc::from(topic)])
        }
    };
    Some(Stored {
        seq,
        topics,
        event: header(EVENT).map(str::to_owned),
        data: String::from_utf8_lossy(payload).into_owned(),
    })
}

const EPOCH_PREFIX: &str = "hookcast epoch ";

/// The epoch in a stream's description.
fn epoch_of(info: &stream::Info) -> Option<u64> {
    let d = info.config.description.as_deref()?;
    d.strip_prefix(EPOCH_PREFIX)?
        .parse()
        .ok()
        .filter(|e| *e != 0)
}

fn id(epoch: u64, seq: u64) -> String {
    format!("{epoch}-{seq}")
}

/// What the publisher, the subscribers, the reader and the pinger share.
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
    /// The last readiness request was answered within `broker.timeout`.
    answering: AtomicBool,
    /// When [`JetStream::reconnect`] last dropped the connection (unix ms).
    reconnected: AtomicU64,
    /// Wakes the reader to start over (the stream was re-created under it).
    restart: Arc<Notify>,
    /// Why the broker refuses to run (a stream with other settings).
    fatal: Mutex<Option<String>>,
    fatal_set: Notify,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream")
            .field("stream", &self.config.stream)
            .field("following", &self.following)
            .field("answering", &self.answering)
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
            answering: AtomicBool::new(false),
            reconnected: AtomicU64::new(0),
            restart: Arc::new(Notify::new()),
            fatal: Mutex::new(None),
            fatal_set: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let reader = tokio::spawn(read(Arc::downgrade(&shared), hub));
        let pinger = tokio::spawn(ping(Arc::downgrade(&shared)));
        hub::lock(&shared.tasks).extend([reader.abort_handle(), pinger.abort_handle()]);
        shared
    }

    pub(super) fn ready(&self) -> bool {
        self.following.load(Ordering::Relaxed) && self.answering.load(Ordering::Relaxed)
    }

    pub(super) fn stop(&self) {
        for task in hub::lock(&self.tasks).drain(..) {
            task.abort();
        }
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

    /// Drops the connection for a new one, at most once per [`PING_EVERY`]. A
    /// connection that went silent (a partition) may keep its TCP retransmission
    /// backoff after the network heals, holding back acks past their deadline;
    /// a new connection starts afresh.
    fn reconnect(&self, js: &Context) {
        let now = unix_ms(SystemTime::now());
        let last = self.reconnected.load(Ordering::Relaxed);
        if now.saturating_sub(last) < PING_EVERY.as_millis() as u64
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

    /// The stream as hookcast wants it.
    fn wanted(&self) -> stream::Config {
        stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            max_messages: i64::try_from(self.config.max_msgs).unwrap_or(i64::MAX),
            max_bytes: self
                .config
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            max_messages_per_subject: -1,
            max_age: self.history_ttl,
            duplicate_window: self.dedupe_window,
            num_replicas: self.config.replicas,
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            ..Default::default()
        }
    }

    async fn within<T, E: std::fmt::Display>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Unavailable> {
        match tokio::time::timeout(self.config.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
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

    pub(super) async fn publish(&self, new: NewEvent) -> Result<Published, Unavailable> {
        let (Some(js), Some(epoch)) = (self.js.get(), self.epoch()) else {
            return Err(Unavailable::NotStored);
        };
        let mut msg_id = new
            .dedupe
            .as_ref()
            .map(|(route, key)| format!("{}:{route}:{key}", route.len()));
        // A retried delivery whose first attempt was refused (stored too late, so
        // ignored) is stored again under a key naming the refused copy.
        for _ in 0..4 {
            let seq = self.store(js, &new, msg_id.as_deref()).await?;
            let Stored {
                seq: first, topics, ..
            } = match seq {
                Ack::New(seq) => {
                    return Ok(Published {
                        id: Arc::from(id(epoch, seq)),
                        topics: new.topics,
                        duplicate: false,
                    });
                }
                Ack::Duplicate(seq) => match self.get(js, seq).await? {
                    Some(Got::Accepted(s)) => s,
                    Some(Got::Refused) => {
                        msg_id = msg_id.map(|m| format!("{m}~{seq}"));
                        continue;
                    }
                    // Trimmed since: still a duplicate, of an event no longer kept.
                    None => Stored {
                        seq,
                        topics: new.topics.iter().map(|t| Arc::from(t.as_str())).collect(),
                        event: None,
                        data: String::new(),
                    },
                },
            };
            return Ok(Published {
                id: Arc::from(id(epoch, first)),
                topics: topics.iter().map(|t| t.to_string()).collect(),
                duplicate: true,
            });
        }
        Err(Unavailable::NotStored)
    }

    /// Publishes one message and waits for JetStream's ack, under the deadline
    /// scheme of [`CLOCK_MARGIN`].
    async fn store(
        &self,
        js: &Context,
        new: &NewEvent,
        msg_id: Option<&str>,
    ) -> Result<Ack, Unavailable> {
        let timeout = self.config.timeout;
        let start = tokio::time::Instant::now();
        let sent = unix_ms(SystemTime::now());
        let deadline = sent + (timeout + CLOCK_MARGIN).as_millis() as u64;
        let token = format!("{:032x}", fastrand::u128(..));
        let mut headers = HeaderMap::new();
        headers.insert(DEADLINE, deadline.to_string());
        headers.insert(PUBLISH, token.as_str());
        if new.topics.len() > 1 {
            headers.insert(TOPICS, new.topics.join(" "));
        }
        if let Some(e) = &new.event {
            headers.insert(EVENT, e.as_str());
        }
        if let Some(m) = msg_id {
            headers.insert(MSG_ID, m);
        }
        let publish = Publish::build()
            .payload(Bytes::from(new.data.clone()))
            .headers(headers);
        let subject = self.subject(new.topics.first().map_or("", String::as_str));
        let mut ack = std::pin::pin!(async {
            let ack = js.send_publish(subject.clone(), publish).await?;
            ack.await.map_err(async_nats::Error::from)
        });
        let ack = match tokio::time::timeout_at(start + timeout, &mut ack).await {
            Ok(ack) => Some(ack),
            // Late: wait out the margin; an ack now may be stamped either side.
            Err(_) => tokio::time::timeout_at(start + timeout + 2 * CLOCK_MARGIN, &mut ack)
                .await
                .ok(),
        };
        let late = start.elapsed() > timeout;
        let ack = match ack {
            Some(Ok(ack)) => ack,
            failed => {
                // Not knowing is not "not stored": the message may have reached
                // JetStream while its ack was lost. Past the margin anything stored
                // from now on is ignored, so a look settles it.
                match failed {
                    Some(Err(e)) => tracing::warn!(error = %e, "nats publish failed"),
                    _ => tracing::warn!(
                        timeout_ms = timeout.as_millis() as u64,
                        "nats publish not acknowledged in time; if stored later it is ignored"
                    ),
                }
                self.reconnect(js);
                tokio::time::sleep_until(start + timeout + 2 * CLOCK_MARGIN).await;
                // The connection may be coming back just now: ask again for a while.
                let give_up =
                    start + timeout + 2 * CLOCK_MARGIN + (2 * timeout).max(Duration::from_secs(2));
                loop {
                    match self.find(js, &subject, sent, &token).await {
                        Ok(Some(seq)) => return Ok(Ack::New(seq)),
                        Ok(None) => return Err(Unavailable::NotStored),
                        Err(_) if tokio::time::Instant::now() < give_up => {
                            tokio::time::sleep(BACKOFF_MIN).await;
                        }
                        Err(_) => {
                            tracing::error!(
                                "a nats publish answered 503 could not be looked up; if JetStream stored it in time it will be delivered"
                            );
                            return Err(Unavailable::Unknown);
                        }
                    }
                }
            }
        };
        if ack.duplicate {
            return Ok(Ack::Duplicate(ack.sequence));
        }
        if late && !matches!(self.get(js, ack.sequence).await?, Some(Got::Accepted(_))) {
            return Err(Unavailable::NotStored);
        }
        Ok(Ack::New(ack.sequence))
    }

    /// The sequence of the message this replica published with `token`, if
    /// JetStream stored it before its deadline: it looks through `subject` from
    /// `sent` (unix ms) on.
    async fn find(
        &self,
        js: &Context,
        subject: &str,
        sent: u64,
        token: &str,
    ) -> Result<Option<u64>, Unavailable> {
        let since = sent.saturating_sub(CLOCK_MARGIN.as_millis() as u64);
        let start_time = DateTime::from_unix_timestamp_nanos(i128::from(since) * 1_000_000)
            .map_err(|_| Unavailable::NotStored)?;
        let stream = self
            .within("find", js.get_stream_no_info(&self.config.stream))
            .await?;
        // Stored after the deadline and the margin: nothing of ours from there on counts.
        let past = sent + (self.config.timeout + 2 * CLOCK_MARGIN).as_millis() as u64;
        let mut found = None;
        let policy = DeliverPolicy::ByStartTime { start_time };
        self.read_from("find", &stream, policy, subject, u64::MAX, |seq, m, at| {
            if stamp_ms(at) > past {
                return false;
            }
            let ours = m
                .headers
                .as_ref()
                .and_then(|h| h.get(PUBLISH))
                .is_some_and(|t| t.as_str() == token);
            if ours {
                let accepted = self.stored(seq, m, at).is_some();
                found = accepted.then_some(seq);
            }
            !ours
        })
        .await?;
        Ok(found)
    }

    fn stored(&self, seq: u64, m: &jetstream::Message, at: &DateTime) -> Option<Stored> {
        stored(
            &self.config.subject_prefix,
            seq,
            &m.subject,
            m.headers.as_ref(),
            &m.payload,
            at,
        )
    }

    /// Reads up to `count` messages (of `subject`, or all when empty) from `policy`
    /// on with a short-lived consumer, handing each to `visit` (sequence, message,
    /// stored time) until it returns false or nothing more comes.
    async fn read_from<I: Clone + Send + Sync + 'static>(
        &self,
        what: &'static str,
        stream: &stream::Stream<I>,
        policy: DeliverPolicy,
        subject: &str,
        count: u64,
        mut visit: impl FnMut(u64, &jetstream::Message, &DateTime) -> bool,
    ) -> Result<(), Unavailable> {
        let consumer = self
            .within(
                what,
                stream.create_consumer(pull::Config {
                    deliver_policy: policy,
                    filter_subject: subject.to_owned(),
                    ack_policy: AckPolicy::None,
                    inactive_threshold: CONSUMER_IDLE,
                    memory_storage: true,
                    ..Default::default()
                }),
            )
            .await?;
        let name = consumer.cached_info().name.clone();
        let result = async {
            let mut left = count;
            while left > 0 {
                // Asking for no more than is wanted ends the batch as soon as it is read.
                let want = usize::try_from(left).map_or(READ_COUNT, |n| n.min(READ_COUNT));
                let batch = consumer
                    .batch()
                    .max_messages(want)
                    .expires(self.config.timeout)
                    .messages();
                let mut batch = self.within(what, batch).await?;
                let mut got = 0;
                // The batch itself ends after `expires`; waiting longer than that for
                // its next message means NATS went silent.
                let silent = self.config.timeout + CLOCK_MARGIN;
                while let Some(m) = tokio::time::timeout(silent, batch.next())
                    .await
                    .map_err(|_| Unavailable::NotStored)?
                {
                    let m = m.map_err(|e| {
                        tracing::warn!(what, error = %e, "nats read failed");
                        Unavailable::NotStored
                    })?;
                    let Ok(info) = m.info() else { continue };
                    got += 1;
                    if !visit(info.stream_sequence, &m, &info.published) {
                        return Ok(());
                    }
                }
                if got == 0 {
                    break;
                }
                left = left.saturating_sub(got);
            }
            Ok(())
        }
        .await;
        let stream = stream.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        result
    }

    /// One stored message by sequence; `None` when it is no longer kept.
    async fn get(&self, js: &Context, seq: u64) -> Result<Option<Got>, Unavailable> {
        let stream = self
            .within("get", js.get_stream_no_info(&self.config.stream))
            .await?;
        match tokio::time::timeout(self.config.timeout, stream.get_raw_message(seq)).await {
            Ok(Ok(m)) => Ok(Some(
                match stored(
                    &self.config.subject_prefix,
                    m.sequence,
                    &m.subject,
                    Some(&m.headers),
                    &m.payload,
                    &m.time,
                ) {
                    Some(s) => Got::Accepted(s),
                    None => Got::Refused,
                },
            )),
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound
                ) =>
            {
                Ok(None)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "nats get failed");
                Err(Unavailable::NotStored)
            }
            Err(_) => Err(Unavailable::NotStored),
        }
    }

    /// Subscribes at this replica's reader position, then reads what the client
    /// missed from the stream up to that position: live events after it are
    /// already queued, so the two join with no gap and no duplicate.
    pub(super) async fn subscribe(
        &self,
        hub: &Arc<Hub>,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<Notify>>,
    ) -> Result<Subscription, Refusal> {
        let (mut sub, position) = hub.subscribe_at_position(filters, on_overflow)?;
        let (Some(position), Some(js)) = (position, self.js.get()) else {
            // Until the reader has first reached NATS this replica delivers nothing,
            // so the client is told to come back rather than wait on a silent stream.
            return Err(Refusal::BrokerUnavailable);
        };
        let Some(last) = last_event_id.filter(|l| !l.is_empty()) else {
            return Ok(sub);
        };
        let all = || {
            sub.filters()
                .iter()
                .map(|f| f.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let resync = |reason, filters| Resync {
            reason,
            last_event_id: last.to_owned(),
            filters,
        };
        let upto = parse_id(&position).unwrap_or((0, 0));
        let Some(from) = parse_id(last).filter(|f| f.0 == upto.0) else {
            sub.resync = Some(resync(RESYNC_UNKNOWN_ID, all()));
            return Ok(sub);
        };
        let unavailable = |_| Refusal::BrokerUnavailable;
        let stream = self
            .within("replay", js.get_stream(&self.config.stream))
            .await
            .map_err(unavailable)?;
        let info = stream.cached_info();
        if epoch_of(info) != Some(from.0) || from.1 > info.state.last_sequence {
            sub.resync = Some(resync(RESYNC_UNKNOWN_ID, all()));
            return Ok(sub);
        }
        if from >= upto {
            // Another replica served the client further than this one's reader has
            // read; what it already has must not come again.
            if from > upto {
                skip_through(&mut sub, from);
            }
            return Ok(sub);
        }
        if info.state.first_sequence > from.1 + 1 {
            // Dropped by age or the stream's bounds: which topics is not known.
            sub.resync = Some(resync(RESYNC_TRIMMED, all()));
            return Ok(sub);
        }
        let events = self
            .scan(&stream, from.1 + 1, upto.1)
            .await
            .map_err(unavailable)?;
        let (events, lost) = window(
            sub.filters(),
            events,
            self.history,
            self.history_bytes,
            upto.0,
        );
        sub.replay = events.into();
        if !lost.is_empty() {
            sub.resync = Some(resync(RESYNC_TRIMMED, lost));
        }
        Ok(sub)
    }

    /// Every accepted message from `first` through `last`, in order.
    async fn scan(
        &self,
        stream: &stream::Stream,
        first: u64,
        last: u64,
    ) -> Result<Vec<Stored>, Unavailable> {
        let mut out = Vec::new();
        let policy = DeliverPolicy::ByStartSequence {
            start_sequence: first,
        };
        self.read_from(
            "replay",
            stream,
            policy,
            "",
            last - first + 1,
            |seq, m, at| {
                if seq > last {
                    return false;
                }
                out.extend(self.stored(seq, m, at));
                seq < last
            },
        )
        .await?;
        Ok(out)
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        // The reader may wait on a pull indefinitely; it must not outlive us.
        self.stop();
    }
}

enum Ack {
    New(u64),
    Duplicate(u64),
}

enum Got {
    Accepted(Stored),
    Refused,
}

/// Applies the per-topic history bounds to the events after a client's last id,
/// as the in-memory hub keeps them: a topic with more than `history` events (or
/// `history_bytes`) after the id lost some, so its filter is resynced instead.
fn window(
    filters: &[Filter],
    events: Vec<Stored>,
    history: usize,
    history_bytes: u64,
    epoch: u64,
) -> (Vec<Arc<Event>>, Vec<String>) {
    let mut per_topic: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for e in &events {
        // Counted as the hub counts it: the encoded frame.
        let tail = encode::event_tail_len(e.event.as_deref(), &e.data);
        let frame = encode::event_frame_len(&id(epoch, e.seq), tail) as u64;
        for t in e.topics.iter() {
            let n = per_topic.entry(t).or_default();
            n.0 += 1;
            n.1 += frame;
        }
    }
    let lost_topic = |t: &str| {
        per_topic
            .get(t)
            .is_some_and(|(n, bytes)| *n > history || *bytes > history_bytes)
    };
    let mut lost = Vec::new();
    let mut keep = vec![false; events.len()];
    for f in filters {
        let matches = |t: &str| f.matches(t);
        let trimmed = per_topic.keys().any(|t| matches(t) && lost_topic(t));
        if trimmed {
            lost.push(f.as_str().to_owned());
            continue;
        }
        for (i, e) in events.iter().enumerate() {
            keep[i] |= e.topics.iter().any(|t| matches(t));
        }
    }
    let replay = events
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(e, _)| {
            Arc::new(Event::replayed(
                Arc::from(id(epoch, e.seq)),
                e.topics,
                e.event.as_deref(),
                &e.data,
            ))
        })
        .collect();
    (replay, lost)
}

/// Why the stream could not be had: try again later, or never.
enum Failed {
    Retry(String),
    Fatal(String),
}

/// Makes the stream exist with hookcast's settings.
async fn ensure_stream(shared: &JetStream, js: &Context) -> Result<stream::Info, Failed> {
    let wanted = shared.wanted();
    let timeout = shared.config.timeout;
    let timed_out = || Failed::Retry(format!("no answer within {timeout:?}"));
    let found = tokio::time::timeout(timeout, js.get_stream(&wanted.name)).await;
    let info = match found {
        Err(_) => return Err(timed_out()),
        Ok(Ok(s)) => s.cached_info().clone(),
        Ok(Err(e))
            if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            let create = stream::Config {
                description: Some(format!(
                    "{EPOCH_PREFIX}{}",
                    unix_ms(SystemTime::now()).max(1)
                )),
                ..wanted.clone()
            };
            match tokio::time::timeout(timeout, js.create_stream(create)).await {
                Ok(Ok(s)) => {
                    tracing::info!(stream = %wanted.name, "nats stream created");
                    s.cached_info().clone()
                }
                // Another replica may have just created it: the next round finds it.
                Ok(Err(e)) => {
                    return Err(Failed::Retry(format!(
                        "creating the stream `{}` failed: {e}",
                        wanted.name
                    )));
                }
                Err(_) => return Err(timed_out()),
            }
        }
        Ok(Err(e)) => return Err(Failed::Retry(e.to_string())),
    };
    if epoch_of(&info).is_none() {
        return Err(Failed::Fatal(format!(
            "the nats stream `{}` was not made by hookcast: its description lacks `{EPOCH_PREFIX}<number>`, which event ids start with; let hookcast create the stream, or set that description (any number from 1)",
            wanted.name
        )));
    }
    let differs = differences(&info.config, &wanted);
    if !differs.is_empty() {
        return Err(Failed::Fatal(format!(
            "the nats stream `{}` exists with other settings ({}); hookcast does not change a stream: edit it (nats stream edit) or hookcast's config to match",
            wanted.name,
            differs.join("; ")
        )));
    }
    Ok(info)
}

/// The stream settings hookcast checks, each with the key it comes from.
const SETTINGS: [&str; 10] = [
    "subjects",
    "max_msgs (broker.max_msgs)",
    "max_bytes (broker.max_bytes)",
    "max_msgs_per_subject",
    "max_age (sse.history_ttl)",
    "duplicate_window (dedupe.window)",
    "replicas (broker.replicas)",
    "storage",
    "retention",
    "discard",
];

/// A stream's values of [`SETTINGS`], as they are compared and reported.
fn settings(c: &stream::Config) -> [String; 10] {
    let unlimited = |n: i64| if n <= 0 { -1 } else { n }.to_string();
    [
        format!("{:?}", c.subjects),
        unlimited(c.max_messages),
        unlimited(c.max_bytes),
        unlimited(c.max_messages_per_subject),
        format!("{:?}", c.max_age),
        format!("{:?}", c.duplicate_window),
        c.num_replicas.max(1).to_string(),
        format!("{:?}", c.storage),
        format!("{:?}", c.retention),
        format!("{:?}", c.discard),
    ]
}

/// What an existing stream's settings differ in from what hookcast wants.
fn differences(have: &stream::Config, want: &stream::Config) -> Vec<String> {
    SETTINGS
        .iter()
        .zip(settings(have).into_iter().zip(settings(want)))
        .filter(|(_, (h, w))| h != w)
        .map(|(what, (h, w))| format!("{what} is {h}, hookcast wants {w}"))
        .collect()
}

async fn connect(c: &config::NatsBroker) -> Result<Context, String> {
    let addrs = addrs(&c.url).expect("broker.url was checked");
    let options = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(c.timeout)
        .request_timeout(Some(c.timeout))
        .ping_interval(PING_EVERY * 5)
        .reconnect_delay_callback(|attempt| {
            (BACKOFF_MIN * 2u32.saturating_pow(attempt.min(8) as u32)).min(BACKOFF_MAX)
        });
    // With retry_on_initial_connect the client is returned at once and connects
    // (and reconnects) in the background.
    let client = options.connect(addrs).await.map_err(|e| e.to_string())?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(c.timeout + 2 * CLOCK_MARGIN)
        .build(client))
}

/// This replica's reader: follows the stream and hands each event to the hub.
/// Reconnects with backoff and resumes after the last sequence it read.
async fn read(shared: Weak<JetStream>, hub: Arc<Hub>) {
    let mut backoff = BACKOFF_MIN;
    // (epoch, sequence) read through.
    let mut position: Option<(u64, u64)> = None;
    let mut down_logged = false;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let result: Result<(), String> = async {
            if s.js.get().is_none() {
                let js = connect(&s.config).await?;
                let _ = s.js.set(js);
            }
            let js = s.js.get().expect("set above").clone();
            let info = match ensure_stream(&s, &js).await {
                Ok(info) => info,
                Err(Failed::Fatal(fatal)) => {
                    tracing::error!("{fatal}");
                    *hub::lock(&s.fatal) = Some(fatal);
                    s.fatal_set.notify_waiters();
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                Err(Failed::Retry(why)) => return Err(why),
            };
            let epoch = epoch_of(&info).expect("ensure_stream checked it");
            s.epoch.store(epoch, Ordering::Relaxed);
            let start = match position {
                None => info.state.last_sequence,
                Some((e, seq)) if e == epoch => {
                    if info.state.first_sequence > seq + 1 {
                        let n = hub.disconnect_all();
                        tracing::warn!(
                            subscribers = n,
                            "the nats stream dropped events past this replica's position; subscribers told to reconnect and replay"
                        );
                    }
                    seq
                }
                Some(_) => {
                    tracing::warn!(
                        "the nats stream was re-created (its store lost); earlier event ids are unknown now"
                    );
                    0
                }
            };
            position = Some((epoch, start));
            hub.set_position(Arc::from(id(epoch, start)));
            let stream = js
                .get_stream_no_info(&s.config.stream)
                .await
                .map_err(|e| e.to_string())?;
            let consumer = tokio::time::timeout(
                s.config.timeout,
                stream.create_consumer(pull::Config {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: start + 1,
                    },
                    ack_policy: AckPolicy::None,
                    inactive_threshold: CONSUMER_IDLE,
                    memory_storage: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(READ_COUNT)
                .expires(PULL_EXPIRES)
                .heartbeat(PULL_HEARTBEAT)
                .messages()
                .await
                .map_err(|e| e.to_string())?;
            s.following.store(true, Ordering::Relaxed);
            // Finding the stream was an answer within broker.timeout.
            s.answering.store(true, Ordering::Relaxed);
            tracing::info!("nats reader connected");
            down_logged = false;
            backoff = BACKOFF_MIN;
            let prefix = s.config.subject_prefix.clone();
            let restart = s.restart.clone();
            drop(s);
            let mut restart = std::pin::pin!(restart.notified());
            loop {
                let m = tokio::select! {
                    m = messages.next() => m,
                    () = &mut restart => return Err("the stream changed".to_owned()),
                };
                let Some(m) = m else {
                    return Err("the consumer ended".to_owned());
                };
                let m = m.map_err(|e| e.to_string())?;
                let Ok(info) = m.info() else { continue };
                let seq = info.stream_sequence;
                let Some((_, at)) = position else { continue };
                if seq <= at {
                    continue;
                }
                if seq > at + 1 {
                    let n = hub.disconnect_all();
                    tracing::warn!(
                        subscribers = n,
                        "nats stream events were removed before this replica read them; subscribers told to reconnect and replay"
                    );
                }
                if let Some(e) = stored(
                    &prefix,
                    seq,
                    &m.subject,
                    m.headers.as_ref(),
                    &m.payload,
                    &info.published,
                ) {
                    hub.deliver(Arc::from(id(epoch, seq)), e.topics, e.event.as_deref(), &e.data);
                }
                position = Some((epoch, seq));
            }
        }
        .await;
        let Some(s) = shared.upgrade() else { return };
        s.following.store(false, Ordering::Relaxed);
        drop(s);
        if let Err(e) = result {
            if !down_logged {
                tracing::warn!(error = %e, "nats not usable; webhooks get 503 until it is, retrying");
                down_logged = true;
            } else {
                tracing::debug!(error = %e, "nats still not usable");
            }
        }
        tokio::time::sleep(
            backoff + Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2)),
        )
        .await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Readiness: a request to JetStream answered within `broker.timeout`, every
/// [`PING_EVERY`]. A stream re-created meanwhile restarts the reader.
async fn ping(shared: Weak<JetStream>) {
    loop {
        tokio::time::sleep(PING_EVERY).await;
        let Some(s) = shared.upgrade() else { return };
        let Some(js) = s.js.get().cloned() else {
            continue;
        };
        let answer = tokio::time::timeout(s.config.timeout, js.get_stream(&s.config.stream)).await;
        let ok = match answer {
            Ok(Ok(stream)) => {
                let epoch = epoch_of(stream.cached_info());
                if s.epoch().is_some_and(|e| Some(e) != epoch) {
                    s.restart.notify_waiters();
                }
                true
            }
            _ => false,
        };
        if !ok {
            s.reconnect(&js);
        }
        if s.answering.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("nats answers again");
            } else {
                tracing::warn!("nats does not answer; not ready");
            }
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

    fn ev(seq: u64, topics: &[&str], data: &str) -> Stored {
        Stored {
            seq,
            topics: topics.iter().map(|t| Arc::from(*t)).collect(),
            event: None,
            data: data.to_owned(),
        }
    }

    fn filters(list: &[&str]) -> Vec<Filter> {
        list.iter().map(|f| Filter::parse(f).unwrap()).collect()
    }

    #[test]
    fn replay_keeps_what_the_hub_would_have_kept() {
        let events = || {
            vec![
                ev(3, &["a"], "1"),
                ev(4, &["a", "b"], "22"),
                ev(5, &["c"], "333"),
                ev(6, &["a"], "4444"),
            ]
        };
        let ids = |r: &[Arc<Event>]| r.iter().map(|e| e.id.to_string()).collect::<Vec<_>>();
        // Within history: exact, an event on two followed topics once.
        let (r, lost) = window(&filters(&["a", "b"]), events(), 3, 100, 9);
        assert_eq!(ids(&r), ["9-3", "9-4", "9-6"]);
        assert!(lost.is_empty());
        // history 2: topic a had 3 events after the id, so one was dropped.
        let (r, lost) = window(&filters(&["a", "b"]), events(), 2, 100, 9);
        assert_eq!(ids(&r), ["9-4"]);
        assert_eq!(lost, ["a"]);
        // Frames of `id: 9-N\ndata: <data>\n\n`: 17, 18, 19 and 20 bytes.
        // history_bytes 40: a's 17+18+20 bytes are over it; b's 18 and c's 19 are not.
        let (r, lost) = window(&filters(&["*"]), events(), 10, 40, 9);
        assert!(r.is_empty());
        assert_eq!(lost, ["*"]);
        let (r, lost) = window(&filters(&["c", "b"]), events(), 10, 40, 9);
        assert_eq!(ids(&r), ["9-4", "9-5"]);
        assert!(lost.is_empty());
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

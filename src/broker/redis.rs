//! Redis Streams shared by replicas.
//!
//! Keys (under `broker.prefix`):
//! - `feed`: one stream of every event (topics, event name, data), trimmed to
//!   `broker.feed_length`. Each replica's reader follows it with `XREAD BLOCK` and
//!   hands events to its hub, so an event is encoded once per replica. One stream
//!   gives one order: ids increase in publish order across topics.
//! - `topic:<name>`: per-topic history for replay, the same entries under the same
//!   ids, trimmed by `sse.history`, `sse.history_ttl` and `sse.history_bytes`, so
//!   the SPEC's per-topic bounds hold. `meta:<name>` counts its bytes and records
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, Script, Value};
use tokio::sync::Notify;

use super::Unavailable;
use super::health::{self, Health};
use super::id::{parse_stream_id as parse_id, skip_through};
use crate::config;
use crate::hub::{
    self, Event, Hub, NewEvent, Published, RESYNC_TRIMMED, RESYNC_UNKNOWN_ID, Refusal, Resync,
    Subscription,
};
use crate::sse::encode;
use crate::topic::Filter;

/// How long one `XREAD` waits for new entries before asking again.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries taken per `XREAD`; bounds what the reader holds at once.
const READ_COUNT: usize = 1000;
/// Reconnection backoff bounds; the ceiling keeps resumption within SPEC's 5 s.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

const PUBLISH: &str = r"
-- KEYS: feed, since, topics, dedupe, receipt, then (stream, meta) per topic
-- ARGV: feed_length, history, ttl_ms, history_bytes, window_ms, topics joined by
--       spaces, has_event, event, data, has_dedupe, deadline_ms, receipt_ms, the
--       length of the frame's lines after `id:`, then one topic name per topic
-- Past its deadline hookcast has answered 503 (or is about to): store nothing.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[11]) then
  return {2, ''}
end
if ARGV[10] == '1' then
  local seen = redis.call('GET', KEYS[4])
  if seen then return {1, seen} end
end
local feed = {'t', ARGV[6], 'd', ARGV[9]}
if ARGV[7] == '1' then
  table.insert(feed, 'e'); table.insert(feed, ARGV[8])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(feed))
-- history_bytes counts the encoded frame: `id: <id>\n`, then the rest.
local len = tonumber(ARGV[13]) + string.len(id) + 5
local entry = {'d', ARGV[9], 'n', tostring(len)}
if ARGV[7] == '1' then
  table.insert(entry, 'e'); table.insert(entry, ARGV[8])
end
redis.call('SET', KEYS[2], id, 'NX')
-- Read back by a publisher whose connection broke before the answer came.
redis.call('SET', KEYS[5], id, 'PX', ARGV[12])
local ms = tonumber(string.match(id, '^%d+'))
local history = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
for i = 1, (#KEYS - 5) / 2 do
  local k = KEYS[4 + 2 * i]
  local m = KEYS[5 + 2 * i]
  redis.call('XADD', k, id, unpack(entry))
  local bytes = redis.call('HINCRBY', m, 'bytes', len)
  local n = redis.call('XLEN', k)
  while n > 0 do
    local first = redis.call('XRANGE', k, '-', '+', 'COUNT', 1)[1]
    local first_ms = tonumber(string.match(first[1], '^%d+'))
    if n <= history and bytes <= max_bytes and first_ms > ms - ttl then break end
    local first_len = 0
    for j = 1, #first[2], 2 do
      if first[2][j] == 'n' then first_len = tonumber(first[2][j + 1]) end
    end
    bytes = redis.call('HINCRBY', m, 'bytes', -first_len)
    redis.call('HSET', m, 'trimmed', first[1])
    redis.call('XDEL', k, first[1])
    n = n - 1
  end
  -- An idle topic's events all pass history_ttl; Redis then drops its keys.
  redis.call('PEXPIRE', k, ttl)
  redis.call('PEXPIRE', m, ttl)
  redis.call('ZADD', KEYS[3], ms, ARGV[13 + i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (ms - ttl))
if ARGV[10] == '1' then
  redis.call('SET', KEYS[4], id .. ' ' .. ARGV[6], 'PX', ARGV[5])
end
return {0, id}
";

/// Checks a `broker.url` without connecting.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") || url.starts_with("valkeys://") {
        return Err(
            "TLS (rediss://) is not built into hookcast; reach Redis on a private network or through a TLS tunnel".into(),
        );
    }
    match url.into_connection_info() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "`{url}` is not a Redis URL ({e}); write redis://[user:password@]host[:port][/db]"
        )),
    }
}

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

/// What the publisher, the subscribers and the reader share.
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
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
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
            script: Script::new(PUBLISH),
            timeout: c.timeout,
            feed_length: c.feed_length,
            history: sse.history,
            history_ttl: sse.history_ttl,
            history_bytes: sse.history_bytes,
            dedupe_window: dedupe.window,
            connected: AtomicBool::new(false),
            health,
            tasks: Mutex::new(Vec::new()),
        });
        let reader = tokio::spawn(read(Arc::downgrade(&shared), hub));
        // On the publishing connection, so that readiness follows whether Redis
        // answers there, and the publish deadlines follow its clock.
        let pinger = tokio::spawn(health::keep_pinging(
            Arc::downgrade(&shared),
            c.timeout,
            |s: Arc<RedisStreams>| async move {
                let _ = s.time().await;
            },
        ));
        *hub::lock(&shared.tasks) = vec![reader.abort_handle(), pinger.abort_handle()];
        shared
    }

    pub(super) fn ready(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.health.healthy()
    }

    pub(super) fn stop(&self) {
        for task in hub::lock(&self.tasks).drain(..) {
            task.abort();
        }
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

    pub(super) async fn publish(&self, new: NewEvent) -> Result<Published, Unavailable> {
        let started = std::time::Instant::now();
        if self.health.deadline(started).is_none() {
            // No clock sample yet (the pinger has not been answered): take one.
            self.within("time", self.time()).await?;
        }
        let deadline = self
            .health
            .deadline(started)
            .ok_or(Unavailable::NotStored)?;
        let k = &self.keys;
        let joined = new.topics.join(" ");
        let mut inv = self.script.prepare_invoke();
        inv.key(&k.feed).key(&k.since).key(&k.topics);
        match &new.dedupe {
            Some((route, key)) => inv.key(k.dedupe(route, key)),
            None => inv.key(format!("{}dedupe", k.prefix)),
        };
        let receipt = k.receipt(fastrand::u64(..));
        inv.key(&receipt);
        for t in &new.topics {
            inv.key(k.topic(t)).key(k.meta(t));
        }
        let ms = |d: Duration| d.as_millis().clamp(1, i64::MAX as u128) as i64;
        inv.arg(self.feed_length)
            .arg(self.history)
            .arg(ms(self.history_ttl))
            .arg(self.history_bytes)
            .arg(ms(self.dedupe_window))
            .arg(&joined)
            .arg(if new.event.is_some() { "1" } else { "0" })
            .arg(new.event.as_deref().unwrap_or_default())
            .arg(&new.data)
            .arg(if new.dedupe.is_some() { "1" } else { "0" })
            .arg(deadline)
            // Long enough to be read after the deadline and the margin.
            .arg(ms(self.timeout * 3 + Duration::from_secs(1)))
            .arg(encode::event_tail_len(new.event.as_deref(), &new.data));
        for t in &new.topics {
            inv.arg(t);
        }
        let mut conn = self.manager.clone();
        // Waited for until the deadline plus the clock margin, counted from the
        // start: after that, Redis refuses to run it, and its receipt tells.
        let left = self.health.answer_limit().saturating_sub(started.elapsed());
        let call = inv.invoke_async::<(u8, String)>(&mut conn);
        tokio::pin!(call);
        let (status, value): (u8, String) = match tokio::time::timeout(left, &mut call).await {
            Ok(Ok(v)) => {
                self.health.answered();
                v
            }
            Ok(Err(e)) if !e.is_io_error() => {
                // An error reply: Redis answered, and ran nothing (a script
                // is refused before it writes: OOM, a wrong argument).
                self.health.answered();
                tracing::warn!(error = %e, "redis refused a publish");
                return Err(Unavailable::NotStored);
            }
            Ok(Err(e)) if e.is_connection_refusal() => {
                tracing::warn!(error = %e, "redis refused the connection");
                return Err(Unavailable::NotStored);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the connection to redis broke during a publish");
                (
                    0,
                    self.settle(&receipt, started, deadline, Unavailable::Unknown)
                        .await?,
                )
            }
            Err(_) => {
                tracing::warn!(
                    wait_ms = left.as_millis() as u64,
                    "redis did not answer a publish in time"
                );
                // Silent Redis: frozen, so it never ran it, or ran it in the
                // instant before it froze and froze with the answer. Its
                // answer is still taken if it comes while the receipt is
                // asked for: Redis may have run it just before its deadline
                // and the answer be late on a busy host.
                let settled = self.settle(&receipt, started, deadline, Unavailable::Stalled);
                tokio::pin!(settled);
                tokio::select! {
                    biased;
                    Ok(v) = &mut call => {
                        self.health.answered();
                        v
                    }
                    r = &mut settled => (0, r?),
                }
            }
        };
        if status == 2 {
            tracing::warn!("redis ran a publish after its deadline and stored nothing");
            return Err(Unavailable::NotStored);
        }
        if status == 1 {
            // Stored as `<id> <topic> <topic>…`.
            let mut parts = value.split(' ');
            let id = parts.next().unwrap_or_default();
            return Ok(Published {
                id: Arc::from(id),
                topics: parts.map(str::to_owned).collect(),
                duplicate: true,
            });
        }
        Ok(Published {
            id: Arc::from(value.as_str()),
            topics: new.topics,
            duplicate: false,
        })
    }

    /// A publish's answer did not come, or its connection broke. Once its
    /// deadline and the clock margin have passed, Redis can no longer run it, so
    /// whether it ran is settled: its receipt holds its id, or it never ran. Only
    /// the data set that received the publish can say "never": one that began
    /// after the publish started (a Redis restarted without its data) cannot.
    /// Redis not answering within the rest of `broker.timeout` gives `silent`.
    async fn settle(
        &self,
        receipt: &str,
        started: std::time::Instant,
        deadline: u64,
        silent: Unavailable,
    ) -> Result<String, Unavailable> {
        tokio::time::sleep_until((started + self.health.answer_limit()).into()).await;
        let left = self.health.wait_limit().saturating_sub(started.elapsed());
        let mut conn = self.manager.clone();
        let (since, id): (Option<String>, Option<String>) = self
            .within_for(
                "settle",
                left,
                redis::pipe()
                    .get(&self.keys.since)
                    .get(receipt)
                    .query_async(&mut conn),
            )
            .await
            .map_err(|_| silent)?;
        if let Some(id) = id {
            tracing::info!("redis had stored the publish whose answer did not come");
            return Ok(id);
        }
        let start_ms = deadline.saturating_sub(self.health.run_limit().as_millis() as u64);
        match since.as_deref().and_then(parse_id) {
            Some((ms, _)) if ms < start_ms => Err(Unavailable::NotStored),
            _ => Err(Unavailable::Unknown),
        }
    }

    /// Subscribes at this replica's reader position, then reads what the client
    /// missed from Redis up to that position: live events after it are already
    /// queued, so the two join with no gap and no duplicate.
    pub(super) async fn subscribe(
        &self,
        hub: &Arc<Hub>,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<Notify>>,
    ) -> Result<Subscription, Refusal> {
        let (mut sub, position) = hub.subscribe_at_position(filters, on_overflow)?;
        let Some(position) = position else {
            // Until the reader has first reached Redis this replica delivers nothing,
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
        let Some(from) = parse_id(last) else {
            sub.resync = Some(resync(RESYNC_UNKNOWN_ID, all()));
            return Ok(sub);
        };
        let upto = parse_id(&position).unwrap_or((0, 0));
        let mut conn = self.manager.clone();
        let (since, now): (Option<String>, (u64, u64)) = self
            .within(
                "replay",
                redis::pipe()
                    .get(&self.keys.since)
                    .cmd("TIME")
                    .query_async(&mut conn),
            )
            .await
            .map_err(|_| Refusal::BrokerUnavailable)?;
        let since = since.as_deref().and_then(parse_id);
        if since.is_none_or(|s| from < s) {
            sub.resync = Some(resync(RESYNC_UNKNOWN_ID, all()));
            return Ok(sub);
        }
        if from >= upto {
            if from > upto {
                // Another replica served the client further than this one's reader has
                // read; what it already has must not come again.
                let newest = self
                    .newest()
                    .await
                    .map_err(|_| Refusal::BrokerUnavailable)?;
                if newest.is_none_or(|n| from > n) {
                    sub.resync = Some(resync(RESYNC_UNKNOWN_ID, all()));
                    return Ok(sub);
                }
                skip_through(&mut sub, from);
            }
            return Ok(sub);
        }
        let now_ms = now.0 * 1000 + now.1 / 1000;
        let aged_out = from.0 + (self.history_ttl.as_millis() as u64) <= now_ms;
        let mut events: HashMap<String, Arc<Event>> = HashMap::new();
        let mut lost = Vec::new();
        for f in sub.filters().to_vec() {
            let (names, mut complete) = match &f {
                Filter::Topic(t) => (vec![t.to_string()], true),
                Filter::Pattern(p) => {
                    let names: Vec<String> = self
                        .within(
                            "replay",
                            redis::cmd("ZRANGEBYSCORE")
                                .arg(&self.keys.topics)
                                .arg(from.0)
                                .arg("+inf")
                                .query_async(&mut conn),
                        )
                        .await
                        .map_err(|_| Refusal::BrokerUnavailable)?;
                    // Topics idle for history_ttl left the set; events of theirs after
                    // the id may have existed.
                    (
                        names.into_iter().filter(|n| p.matches(n)).collect(),
                        !aged_out,
                    )
                }
            };
            let mut found = Vec::new();
            for name in names {
                let (trimmed, exists, range): (Option<String>, bool, StreamRangeReply) = self
                    .within(
                        "replay",
                        redis::pipe()
                            .hget(self.keys.meta(&name), "trimmed")
                            .exists(self.keys.topic(&name))
                            .cmd("XRANGE")
                            .arg(self.keys.topic(&name))
                            .arg(format!("({last}"))
                            .arg(&*position)
                            .query_async(&mut conn),
                    )
                    .await
                    .map_err(|_| Refusal::BrokerUnavailable)?;
                if !exists && aged_out {
                    complete = false;
                }
                if trimmed
                    .as_deref()
                    .and_then(parse_id)
                    .is_some_and(|t| t > from)
                {
                    complete = false;
                }
                for entry in range.ids {
                    found.push((name.clone(), entry));
                }
            }
            if !complete {
                lost.push(f.as_str().to_owned());
                continue;
            }
            // One event on several followed topics is sent once.
            for (name, entry) in found {
                events
                    .entry(entry.id.clone())
                    .or_insert_with(|| replayed(&name, &entry));
            }
        }
        let mut events: Vec<Arc<Event>> = events.into_values().collect();
        events.sort_unstable_by_key(|e| parse_id(&e.id));
        sub.replay = events.into();
        if !lost.is_empty() {
            sub.resync = Some(resync(RESYNC_TRIMMED, lost));
        }
        Ok(sub)
    }

    /// The id of the newest event in the feed.
    async fn newest(&self) -> Result<Option<(u64, u64)>, Unavailable> {
        let mut conn = self.manager.clone();
        let r: StreamRangeReply = self
            .within(
                "newest",
                redis::cmd("XREVRANGE")
                    .arg(&self.keys.feed)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(r.ids.first().and_then(|e| parse_id(&e.id)))
    }
}

impl Drop for RedisStreams {
    fn drop(&mut self) {
        // The reader may sit in a blocking read indefinitely; it must not outlive us.
        self.stop();
    }
}

fn field(entry: &StreamId, name: &str) -> Option<String> {
    match entry.map.get(name)? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn replayed(topic: &str, entry: &StreamId) -> Arc<Event> {
    let data = field(entry, "d").unwrap_or_default();
    let event = field(entry, "e");
    let topics: Arc<[Arc<str>]> = Arc::from(vec![Arc::from(topic)]);
    Arc::new(Event::replayed(
        Arc::from(entry.id.as_str()),
        topics,
        event.as_deref(),
        &data,
    ))
}

/// This replica's reader: follows the feed and hands each event to the hub.
/// Reconnects with backoff and resumes after the last id it delivered.
async fn read(shared: std::sync::Weak<RedisStreams>, hub: Arc<Hub>) {
    let mut backoff = BACKOFF_MIN;
    let mut position: Option<String> = None;
    let mut down_logged = false;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let client = s.client.clone();
        let feed = s.keys.feed.clone();
        let since_key = s.keys.since.clone();
        let timeout = s.timeout;
        drop(s);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(BLOCK + timeout));
        let result = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let start =
                resume_point(&mut conn, &feed, &since_key, position.as_deref(), &hub).await?;
            hub.set_position(Arc::from(start.as_str()));
            position = Some(start);
            if let Some(s) = shared.upgrade() {
                s.connected.store(true, Ordering::Relaxed);
            }
            tracing::info!("redis reader connected");
            down_logged = false;
            backoff = BACKOFF_MIN;
            follow(&mut conn, &feed, &mut position, &hub).await
        }
        .await;
        let Some(s) = shared.upgrade() else { return };
        s.connected.store(false, Ordering::Relaxed);
        drop(s);
        if let Err(e) = result {
            if !down_logged {
                tracing::warn!(error = %e, "redis unreachable; webhooks get 503 until it returns, retrying");
                down_logged = true;
            } else {
                tracing::debug!(error = %e, "redis still unreachable");
            }
        }
        tokio::time::sleep(
            backoff + Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2)),
        )
        .await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Where to follow the feed from: the newest entry at first start, else the last
/// id delivered. When entries after that id may have been trimmed meanwhile,
/// local subscribers are told to reconnect, so they replay from topic history.
async fn resume_point(
    conn: &mut MultiplexedConnection,
    feed: &str,
    since_key: &str,
    position: Option<&str>,
    hub: &Hub,
) -> redis::RedisResult<String> {
    let (since, first, last): (Option<String>, StreamRangeReply, StreamRangeReply) = redis::pipe()
        .get(since_key)
        .cmd("XRANGE")
        .arg(feed)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .cmd("XREVRANGE")
        .arg(feed)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    let Some(pos) = position else {
        return Ok(last
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()));
    };
    let p = parse_id(pos);
    let since = since.as_deref().and_then(parse_id);
    let first = first.ids.first().and_then(|e| parse_id(&e.id));
    // A Redis that lost its data (since is newer than our position) holds nothing
    // we missed; one that trimmed past our position may have.
    let lost_data = since.is_none() || since > p;
    if !lost_data && first.is_some_and(|f| Some(f) > p) {
        let n = hub.disconnect_all();
        tracing::warn!(
            subscribers = n,
            "the redis feed was trimmed past this replica's position; subscribers told to reconnect and replay"
        );
    }
    Ok(pos.to_owned())
}

async fn follow(
    conn: &mut MultiplexedConnection,
    feed: &str,
    position: &mut Option<String>,
    hub: &Hub,
) -> redis::RedisResult<()> {
    loop {
        let from = position.clone().unwrap_or_else(|| "0-0".to_owned());
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(feed)
            .arg(&from)
            .query_async(conn)
            .await?;
        let Some(reply) = reply else { continue };
        for key in reply.keys {
            for entry in key.ids {
                let topics: Arc<[Arc<str>]> = field(&entry, "t")
                    .unwrap_or_default()
                    .split(' ')
                    .filter(|t| !t.is_empty())
                    .map(Arc::from)
                    .collect();
                let data = field(&entry, "d").unwrap_or_default();
                let event = field(&entry, "e");
                hub.deliver(
                    Arc::from(entry.id.as_str()),
                    topics,
                    event.as_deref(),
                    &data,
                );
                *position = Some(entry.id);
            }
        }
    }
}

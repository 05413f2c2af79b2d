//! A publish to Redis: one script that stores the event everywhere it goes or
//! nowhere, under a deadline on Redis's clock, and the receipt that settles a
//! publish whose answer did not come (see [`super::super::health`]).

use std::sync::Arc;
use std::time::Duration;

use redis::ScriptInvocation;

use super::RedisStreams;
use crate::broker::Unavailable;
use crate::broker::id::parse_stream_id as parse_id;
use crate::hub::{Event, NewEvent, Published};

/// The publish script.
pub(super) const SCRIPT: &str = r"
-- KEYS: feed, since, topics, dedupe, receipt, then (stream, meta) per topic
-- ARGV: feed_length, history, ttl_ms, history_bytes, window_ms, topics joined by
--       spaces, has_event, event, data, has_dedupe, deadline_ms, receipt_ms, the
--       bytes the event counts against history_bytes but for its id, then one
--       topic name per topic
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
-- history_bytes counts the encoded frame, its id included.
local len = tonumber(ARGV[13]) + string.len(id)
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

impl RedisStreams {
    pub(in crate::broker) async fn publish(&self, new: NewEvent) -> Result<Published, Unavailable> {
        let started = std::time::Instant::now();
        if self.health.deadline(started).is_none() {
            // No clock sample yet (the pinger has not been answered): take one.
            self.within("time", self.time()).await?;
        }
        let deadline = self
            .health
            .deadline(started)
            .ok_or(Unavailable::NotStored)?;
        let receipt = self.keys.receipt(fastrand::u64(..));
        let inv = self.invocation(&new, deadline, &receipt);
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
        published(status, value, new.topics)
    }

    /// The publish script's call for `new`: its keys and arguments (see
    /// [`SCRIPT`]), with its deadline on Redis's clock and its receipt key.
    fn invocation<'a>(
        &'a self,
        new: &NewEvent,
        deadline: u64,
        receipt: &str,
    ) -> ScriptInvocation<'a> {
        let k = &self.keys;
        let joined = new.topics.join(" ");
        let mut inv = self.script.prepare_invoke();
        inv.key(&k.feed).key(&k.since).key(&k.topics);
        match &new.dedupe {
            Some((route, key)) => inv.key(k.dedupe(route, key)),
            None => inv.key(format!("{}dedupe", k.prefix)),
        };
        inv.key(receipt);
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
            .arg(Event::counted_len("", new.event.as_deref(), &new.data));
        for t in &new.topics {
            inv.arg(t);
        }
        inv
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
}

/// What the script answered: `0 <id>` stored, `1 <id> <topic>…` a duplicate of
/// the event stored under that id, `2` past its deadline (nothing stored).
fn published(status: u8, value: String, topics: Vec<String>) -> Result<Published, Unavailable> {
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
        topics,
        duplicate: false,
    })
}

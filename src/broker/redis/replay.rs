//! A subscription on Redis: joined at the reader's position, with what the
//! client missed read from each topic's stream (README "Redis").

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use redis::Value;
use redis::aio::ConnectionManager;
use redis::streams::{StreamId, StreamRangeReply};
use tokio::sync::Notify;

use super::RedisStreams;
use crate::broker::Unavailable;
use crate::broker::id::{parse_stream_id as parse_id, skip_through};
use crate::broker::resume::{self, Opened, Resuming};
use crate::hub::{Event, Hub, Refusal, Subscription};
use crate::topic::Filter;

/// A stream id, as a pair ordered as Redis orders them.
type Id = (u64, u64);

impl RedisStreams {
    /// Subscribes at this replica's reader position, then reads what the client
    /// missed from Redis up to that position (see [`resume`]).
    pub(in crate::broker) async fn subscribe(
        &self,
        hub: &Arc<Hub>,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<Notify>>,
    ) -> Result<Subscription, Refusal> {
        let mut r = match resume::open(hub, filters, last_event_id, on_overflow)? {
            Opened::Live(sub) => return Ok(sub),
            Opened::Resuming(r) => r,
        };
        let Some(from) = parse_id(&r.last) else {
            return Ok(r.unknown());
        };
        let upto = parse_id(&r.position).unwrap_or((0, 0));
        let unavailable = |_| Refusal::BrokerUnavailable;
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
            .map_err(unavailable)?;
        let since = since.as_deref().and_then(parse_id);
        if since.is_none_or(|s| from < s) {
            return Ok(r.unknown());
        }
        if from >= upto {
            if from > upto {
                // Another replica served the client further than this one's reader has
                // read; what it already has must not come again.
                let newest = self.newest().await.map_err(unavailable)?;
                if newest.is_none_or(|n| from > n) {
                    return Ok(r.unknown());
                }
                skip_through(&mut r.sub, from);
            }
            return Ok(r.sub);
        }
        let now_ms = now.0 * 1000 + now.1 / 1000;
        let aged_out = from.0 + (self.history_ttl.as_millis() as u64) <= now_ms;
        let mut events: HashMap<String, Arc<Event>> = HashMap::new();
        let mut lost = Vec::new();
        for f in r.sub.filters().to_vec() {
            let Some(found) = self
                .missed(&mut conn, &f, &r, from, aged_out)
                .await
                .map_err(unavailable)?
            else {
                lost.push(f.as_str().to_owned());
                continue;
            };
            // One event on several followed topics is sent once.
            for (name, entry) in found {
                events
                    .entry(entry.id.clone())
                    .or_insert_with(|| replayed(&name, &entry));
            }
        }
        let mut events: Vec<Arc<Event>> = events.into_values().collect();
        events.sort_unstable_by_key(|e| parse_id(&e.id));
        Ok(r.replay(VecDeque::from(events), lost))
    }

    /// The entries of `filter`'s topics after the client's last id `from`, up to
    /// the reader's position, each with its topic; `None` when some are no longer
    /// kept (trimmed, or on a topic idle past `history_ttl` when `aged_out`).
    async fn missed(
        &self,
        conn: &mut ConnectionManager,
        filter: &Filter,
        r: &Resuming,
        from: Id,
        aged_out: bool,
    ) -> Result<Option<Vec<(String, StreamId)>>, Unavailable> {
        let (names, mut complete) = match filter {
            Filter::Topic(t) => (vec![t.to_string()], true),
            Filter::Pattern(p) => {
                let names: Vec<String> = self
                    .within(
                        "replay",
                        redis::cmd("ZRANGEBYSCORE")
                            .arg(&self.keys.topics)
                            .arg(from.0)
                            .arg("+inf")
                            .query_async(conn),
                    )
                    .await?;
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
                        .arg(format!("({}", r.last))
                        .arg(&*r.position)
                        .query_async(conn),
                )
                .await?;
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
            found.extend(range.ids.into_iter().map(|entry| (name.clone(), entry)));
        }
        Ok(complete.then_some(found))
    }

    /// The id of the newest event in the feed.
    async fn newest(&self) -> Result<Option<Id>, Unavailable> {
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

/// A field of a stream entry, as text.
pub(super) fn field(entry: &StreamId, name: &str) -> Option<String> {
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

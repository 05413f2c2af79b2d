//! This replica's reader of the Redis feed: `XREAD BLOCK` on a connection of
//! its own, every entry handed to the hub, and the way back after an outage.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadReply};

use super::replay::field;
use super::{BACKOFF_MAX, BACKOFF_MIN, RedisStreams};
use crate::broker::id::parse_stream_id as parse_id;
use crate::broker::reader::Backoff;
use crate::hub::Hub;

/// How long one `XREAD` waits for new entries before asking again.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries taken per `XREAD`; bounds what the reader holds at once.
const READ_COUNT: usize = 1000;

/// This replica's reader: follows the feed and hands each event to the hub.
/// Reconnects with backoff and resumes after the last id it delivered.
pub(super) async fn read(shared: std::sync::Weak<RedisStreams>, hub: Arc<Hub>) {
    let mut backoff = Backoff::new("redis", BACKOFF_MIN, BACKOFF_MAX);
    let mut position: Option<String> = None;
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
            backoff.reached();
            follow(&mut conn, &feed, &mut position, &hub).await
        }
        .await;
        let Some(s) = shared.upgrade() else { return };
        s.connected.store(false, Ordering::Relaxed);
        drop(s);
        if let Err(e) = result {
            backoff.failed(&e);
        }
        backoff.wait().await;
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

//! What goes in and out of the hub: events, publish results, refusals, resync
//! notices, and the bounds it keeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sse::encode::{self, Chunk};

/// Bounds the hub keeps (the server takes them from the `sse` and `dedupe`
/// config sections). `history_bytes` counts event data bytes, see [`Event::data_len`].
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub history: usize,
    pub history_ttl: Duration,
    pub history_bytes: u64,
    pub subscriber_queue: usize,
    pub subscriber_queue_bytes: u64,
    pub max_subscribers: usize,
    pub dedupe_window: Duration,
    pub dedupe_max_keys: usize,
}

/// One published event, encoded once; every subscriber and history slot shares it.
#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    pub id: Arc<str>,
    pub topics: Arc<[Arc<str>]>,
    /// The complete SSE frame (`id:`, `event:`, `data:` lines and the blank line),
    /// already framed as an HTTP/1.1 chunk.
    pub chunk: Chunk,
    /// Bytes of the event's data, what `history_bytes` counts (README "Memory").
    pub data_len: usize,
    pub at: Instant,
}

impl Event {
    /// An event read back from a shared broker for one subscriber's replay.
    pub fn replayed(
        id: Arc<str>,
        topics: Arc<[Arc<str>]>,
        event: Option<&str>,
        data: &str,
    ) -> Event {
        let tail = encode::event_tail(event, data, id.len());
        Event {
            seq: 0,
            chunk: encode::event_chunk(&id, tail),
            data_len: data.len(),
            id,
            topics,
            at: Instant::now(),
        }
    }

    /// What an event counts against `history_bytes` (its [`Event::data_len`]):
    /// for a shared broker that bounds its own history the same way.
    pub fn counted_len(data: &str) -> usize {
        data.len()
    }

    /// The SSE frame alone, without the chunk framing.
    pub fn frame(&self) -> Bytes {
        self.chunk.frame()
    }
}

/// An event to publish, already rendered and checked.
#[derive(Debug)]
pub struct NewEvent {
    /// Valid topic names, without duplicates.
    pub topics: Vec<String>,
    pub event: Option<String>,
    pub data: String,
    /// Route name and idempotency key.
    pub dedupe: Option<(Arc<str>, String)>,
}

/// The result of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: Arc<str>,
    pub topics: Vec<String>,
    /// True when the dedupe key was seen before: nothing was published.
    pub duplicate: bool,
}

/// Why a subscription was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_subscribers` are connected.
    Capacity,
    /// The hub is shutting down.
    ShuttingDown,
    /// The shared broker could not be read to replay what the client missed.
    BrokerUnavailable,
}

/// Filters that could not be resumed from the client's last event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    pub reason: &'static str,
    pub last_event_id: String,
    pub filters: Vec<String>,
}

/// Resync reason: the id was not minted by this process, or is malformed.
pub const RESYNC_UNKNOWN_ID: &str = "unknown_id";
/// Resync reason: events after the id were dropped from history.
pub const RESYNC_TRIMMED: &str = "history_trimmed";

/// A topic (or pattern) as the operator page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub pattern: bool,
    pub subscribers: usize,
    pub history: usize,
    pub history_bytes: u64,
}

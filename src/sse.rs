//! Server-Sent Events: the response body that streams one subscription:
//! prelude, resync notice, replay, live events, heartbeats, and a clean end with
//! a reconnect hint. The wire encoding itself is in [`encode`].

pub mod encode;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::hub::{Close, Event, Recv, Resync, Subscription};
use crate::limits::IpSlot;

pub use self::encode::{Chunk, Fields, encode, is_field_safe, is_reserved_event};

const HEARTBEAT: &[u8] = b": keepalive\n\n";
/// [`HEARTBEAT`] as one HTTP/1.1 chunk.
const HEARTBEAT_CHUNK: &[u8] = b"d\r\n: keepalive\n\n\r\n";

/// One piece of a stream, as [`EventStream::poll_piece`] yields it.
#[derive(Debug)]
pub enum Piece {
    /// A published event, shared with every other subscriber.
    Event(Arc<Event>),
    Heartbeat,
    /// A frame of this stream alone: prelude, resync notice, final retry hint.
    Own(Bytes),
}

impl Piece {
    /// The SSE bytes.
    pub fn frame(&self) -> Bytes {
        match self {
            Piece::Event(ev) => ev.frame(),
            Piece::Heartbeat => Bytes::from_static(HEARTBEAT),
            Piece::Own(b) => b.clone(),
        }
    }

    /// The SSE bytes framed as an HTTP/1.1 chunk; shared, not copied, but for
    /// the stream's own frames.
    pub fn chunk(&self) -> Bytes {
        match self {
            Piece::Event(ev) => ev.chunk.wire().clone(),
            Piece::Heartbeat => Bytes::from_static(HEARTBEAT_CHUNK),
            Piece::Own(b) => Chunk::from_parts(&[b]).wire().clone(),
        }
    }
}

/// A reconnect hint jittered in [retry, 2*retry], so that clients told to reconnect
/// at the same moment spread out.
pub fn jittered_retry(retry: Duration) -> Bytes {
    let ms = retry.as_millis().min(u128::from(u64::MAX / 2)) as u64;
    let jittered = Duration::from_millis(ms + fastrand::u64(0..=ms));
    encode(&Fields {
        retry: Some(jittered),
        ..Default::default()
    })
}

/// The first bytes of every stream: the retry hint and a comment, so that the
/// client's `onopen` fires and no proxy waits for data.
pub fn prelude(retry: Duration) -> Bytes {
    let mut b = BytesMut::new();
    b.put_slice(format!("retry: {}\n", retry.as_millis()).as_bytes());
    b.put_slice(b": hookcast\n\n");
    b.freeze()
}

/// The `hookcast.resync` event: no `id:`, so the client keeps its last id.
pub fn resync_frame(r: &Resync) -> Bytes {
    let data = serde_json::json!({
        "reason": r.reason,
        "last_event_id": r.last_event_id,
        "topics": r.filters,
    })
    .to_string();
    encode(&Fields {
        event: Some("hookcast.resync"),
        data: Some(&data),
        ..Default::default()
    })
}

/// Why a stream ended, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Slow,
    Shutdown,
    MaxDuration,
    /// The subscriber's token expired.
    AuthExpired,
}

impl End {
    fn dropped(self) -> crate::metrics::Dropped {
        use crate::metrics::Dropped;
        match self {
            End::Slow => Dropped::Slow,
            End::Shutdown => Dropped::Shutdown,
            End::MaxDuration => Dropped::MaxDuration,
            End::AuthExpired => Dropped::AuthExpired,
        }
    }
}

/// An error that aborts the connection instead of ending the body cleanly.
#[derive(Debug)]
pub struct SlowSubscriber;

impl std::fmt::Display for SlowSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("subscriber queue overflowed")
    }
}

impl std::error::Error for SlowSubscriber {}

/// Timing for one stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub retry: Duration,
    pub heartbeat: Duration,
    /// Already jittered by the caller.
    pub max_duration: Option<Duration>,
    /// Time left until the subscriber's credentials expire.
    pub auth_expires: Option<Duration>,
}

/// The response body of one subscriber. It polls its subscription directly: no task
/// or channel of its own. Returning `Pending` lets hyper flush what was written.
#[derive(Debug)]
pub struct EventStream {
    sub: Subscription,
    settings: StreamSettings,
    prelude: Option<Bytes>,
    resync: Option<Bytes>,
    heartbeat: Pin<Box<Sleep>>,
    last_write: Instant,
    /// The earlier of `max_duration` and `auth_expires`, and which one it is.
    deadline: Option<(Pin<Box<Sleep>>, End)>,
    /// Set once the stream has decided to end; the next poll returns `None`.
    done: bool,
    /// Whether this stream feeds `hookcast_publish_to_write_seconds` (a sample).
    sampled: bool,
    /// Publish time of the oldest live event handed out since the last write.
    unwritten_since: Option<std::time::Instant>,
    /// The client address's place under `limits.max_subscribers_per_ip`.
    _slot: Option<IpSlot>,
}

impl EventStream {
    pub fn new(mut sub: Subscription, settings: StreamSettings) -> Self {
        let now = Instant::now();
        let resync = sub.resync.take().map(|r| resync_frame(&r));
        EventStream {
            sub,
            settings,
            prelude: Some(prelude(settings.retry)),
            resync,
            heartbeat: Box::pin(tokio::time::sleep_until(now + settings.heartbeat)),
            last_write: now,
            deadline: earliest(settings.max_duration, settings.auth_expires)
                .map(|(d, end)| (Box::pin(tokio::time::sleep_until(now + d)), end)),
            done: false,
            sampled: false,
            unwritten_since: None,
            _slot: None,
        }
    }

    /// Makes this stream feed the publish-to-write histogram when the hub's
    /// metrics pick it (one stream in [`crate::metrics::SAMPLE_EVERY`]).
    pub fn sampling(mut self) -> Self {
        self.sampled = self.sub.metrics().sampled();
        self
    }

    /// Called by the writer once what it took was written: observes the oldest
    /// live event of that batch, so a sampled stream costs one observation per write.
    pub fn written(&mut self) {
        if let Some(at) = self.unwritten_since.take() {
            self.sub.metrics().publish_to_write(at.elapsed());
        }
    }

    /// Holds `slot` for as long as the stream lives.
    pub fn holding(mut self, slot: Option<IpSlot>) -> Self {
        self._slot = slot;
        self
    }

    fn wrote(&mut self, piece: Piece) -> Poll<Option<Result<Piece, SlowSubscriber>>> {
        self.last_write = Instant::now();
        Poll::Ready(Some(Ok(piece)))
    }

    fn finish(&mut self, end: End) -> Poll<Option<Result<Piece, SlowSubscriber>>> {
        self.closed(end);
        Poll::Ready(Some(Ok(Piece::Own(jittered_retry(self.settings.retry)))))
    }

    /// Every stream that hookcast itself ends: one line at info and one count, with
    /// the reason's metric label (`slow`, `shutdown`, `max_duration`, `auth_expired`).
    fn closed(&mut self, end: End) {
        let reason = end.dropped();
        tracing::info!(reason = reason.as_str(), "stream closed by hookcast");
        self.sub.metrics().dropped(reason);
        self.done = true;
    }

    /// Whether the hub cut this subscriber for falling behind (see
    /// [`Subscription::poll_cut`]).
    pub fn poll_cut(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.sub.poll_cut(cx)
    }

    /// The next piece to write; `None` once the stream has ended cleanly, an error
    /// when it must be cut.
    pub fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Piece, SlowSubscriber>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(b) = self.prelude.take() {
            return self.wrote(Piece::Own(b));
        }
        if let Some(b) = self.resync.take() {
            return self.wrote(Piece::Own(b));
        }
        if let Some(ev) = self.sub.replay.pop_front() {
            return self.wrote(Piece::Event(ev));
        }
        if let Some((deadline, end)) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            let end = *end;
            return self.finish(end);
        }
        match self.sub.poll_recv(cx) {
            Poll::Ready(Recv::Event(ev)) => {
                if self.sampled && self.unwritten_since.is_none() {
                    self.unwritten_since = Some(ev.at);
                }
                return self.wrote(Piece::Event(ev));
            }
            Poll::Ready(Recv::Closed(Close::Shutdown)) => return self.finish(End::Shutdown),
            Poll::Ready(Recv::Closed(Close::Slow)) => {
                // Counted by the hub when it cut the subscriber.
                tracing::info!(
                    reason = End::Slow.dropped().as_str(),
                    "stream closed by hookcast"
                );
                self.done = true;
                return Poll::Ready(Some(Err(SlowSubscriber)));
            }
            Poll::Pending => {}
        }
        let this = self;
        // The timer is not reset per event; when it fires early it is moved to one
        // heartbeat after the last write.
        loop {
            if this.heartbeat.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = this.last_write + this.settings.heartbeat;
            if Instant::now() >= due {
                this.heartbeat
                    .as_mut()
                    .reset(Instant::now() + this.settings.heartbeat);
                return this.wrote(Piece::Heartbeat);
            }
            this.heartbeat.as_mut().reset(due);
        }
    }
}

fn earliest(max: Option<Duration>, auth: Option<Duration>) -> Option<(Duration, End)> {
    match (max, auth) {
        (Some(m), Some(a)) if a < m => Some((a, End::AuthExpired)),
        (Some(m), _) => Some((m, End::MaxDuration)),
        (None, Some(a)) => Some((a, End::AuthExpired)),
        (None, None) => None,
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = SlowSubscriber;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let piece = self.poll_piece(cx);
        // hyper writes what it is handed before it polls again: count it as written.
        self.written();
        piece.map(|p| p.map(|r| r.map(|piece| Frame::data(piece.frame()))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..200 {
            let s =
                String::from_utf8(jittered_retry(Duration::from_millis(3000)).to_vec()).unwrap();
            let ms: u64 = s.trim().strip_prefix("retry: ").unwrap().parse().unwrap();
            assert!((3000..=6000).contains(&ms), "{ms}");
        }
    }
}

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

/// Why a stream ended, whichever HTTP path served it (README "Subscribing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Cut for falling behind (counted by the hub, where the cut happens).
    Slow,
    Shutdown,
    MaxDuration,
    /// The subscriber's token expired.
    AuthExpired,
    /// The client left: not a drop, only the subscriber gauge goes down.
    ClientGone,
}

impl EndReason {
    /// The `hookcast_subscribers_dropped_total` reason; none for a client that left.
    pub fn dropped(self) -> Option<crate::metrics::Dropped> {
        use crate::metrics::Dropped;
        match self {
            EndReason::Slow => Some(Dropped::Slow),
            EndReason::Shutdown => Some(Dropped::Shutdown),
            EndReason::MaxDuration => Some(Dropped::MaxDuration),
            EndReason::AuthExpired => Some(Dropped::AuthExpired),
            EndReason::ClientGone => None,
        }
    }

    /// The name logged.
    pub fn as_str(self) -> &'static str {
        self.dropped().map_or("client_gone", |d| d.as_str())
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

/// The response body of one subscriber, and its life: it polls its subscription
/// directly (no task or channel of its own), decides and records how it ends —
/// one log line and the drop count, the same under hyper and on the fast path —
/// and releases the subscriber and the address's slot as soon as it ends or,
/// dropped, its client left.
/// Returning `Pending` lets hyper flush what was written.
#[derive(Debug)]
pub struct EventStream {
    /// Taken when the stream ends: the subscriber leaves the hub then (no more
    /// events queued, the gauge down), not once the last bytes are written.
    sub: Option<Subscription>,
    /// Of [`StreamSettings`], what is read after the start.
    retry: Duration,
    heartbeat_every: Duration,
    prelude: Option<Bytes>,
    resync: Option<Bytes>,
    heartbeat: Pin<Box<Sleep>>,
    last_write: Instant,
    /// The earlier of `max_duration` and `auth_expires`, and which one it is.
    deadline: Option<(Pin<Box<Sleep>>, EndReason)>,
    /// Set once the stream has ended (or decided to); the next poll returns `None`.
    ended: Option<EndReason>,
    /// Whether this stream feeds `hookcast_publish_to_write_seconds` (a sample).
    sampled: bool,
    /// Publish time of the oldest live event handed out since the last write.
    unwritten_since: Option<std::time::Instant>,
    /// The client address's place under `limits.max_subscribers_per_ip`;
    /// given back when the stream ends.
    slot: Option<IpSlot>,
}

impl EventStream {
    pub fn new(mut sub: Subscription, settings: StreamSettings) -> Self {
        let now = Instant::now();
        let resync = sub.resync.take().map(|r| resync_frame(&r));
        EventStream {
            sub: Some(sub),
            retry: settings.retry,
            heartbeat_every: settings.heartbeat,
            prelude: Some(prelude(settings.retry)),
            resync,
            heartbeat: Box::pin(tokio::time::sleep_until(now + settings.heartbeat)),
            last_write: now,
            deadline: earliest(settings.max_duration, settings.auth_expires)
                .map(|(d, end)| (Box::pin(tokio::time::sleep_until(now + d)), end)),
            ended: None,
            sampled: false,
            unwritten_since: None,
            slot: None,
        }
    }

    /// Makes this stream feed the publish-to-write histogram when the hub's
    /// metrics pick it (one stream in [`crate::metrics::SAMPLE_EVERY`]).
    pub fn sampling(mut self) -> Self {
        self.sampled = self.sub.as_ref().is_some_and(|s| s.metrics().sampled());
        self
    }

    /// Called by the writer once what it took was written: observes the oldest
    /// live event of that batch, so a sampled stream costs one observation per write.
    pub fn written(&mut self) {
        if let Some(at) = self.unwritten_since.take()
            && let Some(sub) = &self.sub
        {
            sub.metrics().publish_to_write(at.elapsed());
        }
    }

    /// Whether this stream feeds the publish-to-write histogram.
    pub fn is_sampled(&self) -> bool {
        self.sampled
    }

    /// Lets the fan-out write this stream's live events through `direct` while
    /// its writer is parked (see [`crate::hub::Direct`]).
    pub fn deliver_through(&self, direct: Arc<dyn crate::hub::Direct>) {
        if let Some(sub) = &self.sub {
            sub.deliver_through(direct);
        }
    }

    /// Whether the fan-out may write the next live events itself: nothing of
    /// this stream's own comes first (prelude, resync notice, replay, skipped
    /// ids) and it has not ended. Its end (deadline, close) still comes
    /// through its task, which the hub wakes or its timer does.
    pub fn direct_ok(&self) -> bool {
        self.ended.is_none()
            && self.prelude.is_none()
            && self.resync.is_none()
            && self
                .sub
                .as_ref()
                .is_some_and(|s| s.replay.is_empty() && !s.skipping())
    }

    /// Records what the fan-out wrote while the writer was parked: the time of
    /// its last write, for the heartbeat, and the publish time of the oldest
    /// event it left to the writer, for the histogram.
    pub fn wrote_elsewhere(&mut self, at: Instant, unwritten_since: Option<std::time::Instant>) {
        self.last_write = self.last_write.max(at);
        if self.sampled
            && let Some(since) = unwritten_since
        {
            self.unwritten_since = Some(self.unwritten_since.map_or(since, |u| u.min(since)));
        }
    }

    /// Holds `slot` for as long as the stream lives.
    pub fn holding(mut self, slot: Option<IpSlot>) -> Self {
        self.slot = slot;
        self
    }

    fn wrote(&mut self, piece: Piece) -> Poll<Option<Result<Piece, SlowSubscriber>>> {
        self.last_write = Instant::now();
        Poll::Ready(Some(Ok(piece)))
    }

    fn finish(&mut self, end: EndReason) -> Poll<Option<Result<Piece, SlowSubscriber>>> {
        self.ended(end);
        Poll::Ready(Some(Ok(Piece::Own(jittered_retry(self.retry)))))
    }

    /// The one place a stream's end is recorded, once, for both HTTP paths: a
    /// stream hookcast ends gets one line at info and one count with the
    /// reason's label (`shutdown`, `max_duration`, `auth_expired`; `slow` is
    /// counted by the hub when it cuts); a client that left, one line at debug.
    fn ended(&mut self, end: EndReason) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(end);
        match end {
            EndReason::ClientGone => {
                tracing::debug!(reason = end.as_str(), "stream ended: client left")
            }
            _ => tracing::info!(reason = end.as_str(), "stream closed by hookcast"),
        }
        if let Some(reason) = end.dropped().filter(|_| end != EndReason::Slow)
            && let Some(sub) = &self.sub
        {
            sub.metrics().dropped(reason);
        }
        // Released now: a stream that ended takes no more events, and its
        // last bytes (a reconnect hint) need neither.
        self.sub = None;
        self.slot = None;
    }

    /// How the stream ended, once it has.
    pub fn end(&self) -> Option<EndReason> {
        self.ended
    }

    /// Whether the hub cut this subscriber for falling behind (see
    /// [`Subscription::poll_cut`]); for a writer waiting on its socket.
    pub fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(sub) = &self.sub else {
            // Ended already: nothing left to cut.
            return Poll::Pending;
        };
        let cut = sub.poll_cut(cx);
        if cut.is_ready() {
            self.ended(EndReason::Slow);
        }
        cut
    }

    /// The next piece to write; `None` once the stream has ended cleanly, an error
    /// when it must be cut.
    pub fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Piece, SlowSubscriber>>> {
        if self.sub.is_none() {
            // Ended.
            return Poll::Ready(None);
        }
        if let Some(b) = self.prelude.take() {
            return self.wrote(Piece::Own(b));
        }
        if let Some(b) = self.resync.take() {
            return self.wrote(Piece::Own(b));
        }
        let Some(sub) = self.sub.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(ev) = sub.replay.pop_front() {
            return self.wrote(Piece::Event(ev));
        }
        if let Some((deadline, end)) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            let end = *end;
            return self.finish(end);
        }
        match sub.poll_recv(cx) {
            Poll::Ready(Recv::Event(ev)) => {
                if self.sampled && self.unwritten_since.is_none() {
                    self.unwritten_since = Some(ev.at);
                }
                return self.wrote(Piece::Event(ev));
            }
            Poll::Ready(Recv::Closed(Close::Shutdown)) => return self.finish(EndReason::Shutdown),
            Poll::Ready(Recv::Closed(Close::Slow)) => {
                self.ended(EndReason::Slow);
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
            let due = this.last_write + this.heartbeat_every;
            if Instant::now() >= due {
                this.heartbeat
                    .as_mut()
                    .reset(Instant::now() + this.heartbeat_every);
                return this.wrote(Piece::Heartbeat);
            }
            this.heartbeat.as_mut().reset(due);
        }
    }
}

impl Drop for EventStream {
    /// A stream dropped before it ended: its client left (or its connection
    /// was cut at the end of `shutdown_grace`). Dropping the subscription and
    /// the slot releases them now, on either path.
    fn drop(&mut self) {
        if let Some(sub) = &self.sub {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let cut = sub.poll_cut(&mut cx).is_ready();
            self.ended(if cut {
                EndReason::Slow
            } else {
                EndReason::ClientGone
            });
        }
    }
}

fn earliest(max: Option<Duration>, auth: Option<Duration>) -> Option<(Duration, EndReason)> {
    match (max, auth) {
        (Some(m), Some(a)) if a < m => Some((a, EndReason::AuthExpired)),
        (Some(m), _) => Some((m, EndReason::MaxDuration)),
        (None, Some(a)) => Some((a, EndReason::AuthExpired)),
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

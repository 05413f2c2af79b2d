//! Per-connection facts that the accept loop hands to each request of a
//! connection. A leaf: it imports nothing from the crate, so every layer may use it
//! (README "Architecture").

use std::sync::Arc;

use tokio::sync::Notify;

/// Handed to each request of a connection: notified when a subscriber on it
/// overflows its queue, so that the connection is dropped even if the client
/// stopped reading (then hyper no longer polls the body to see the close).
#[derive(Debug, Clone)]
pub struct ConnectionCut(pub Arc<Notify>);

/// The client's address, handed to each request of a connection (for `X-Forwarded-For`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// The `request` span a request is served under, whichever HTTP path serves it
/// (hyper, the fast path's streams and its plain proxying), and the `answered`
/// line that ends it.
#[derive(Debug)]
pub struct RequestLog {
    pub span: tracing::Span,
    /// Read only when the span or the `answered` line is recorded.
    started: Option<std::time::Instant>,
}

impl RequestLog {
    pub fn new(method: &http::Method, path: &str) -> Self {
        // The query is left out: it may carry tokens.
        let span = tracing::info_span!(
            "request",
            method = %method,
            path = %path,
            status = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        let timed = !span.is_disabled() || tracing::enabled!(tracing::Level::DEBUG);
        RequestLog {
            started: timed.then(std::time::Instant::now),
            span,
        }
    }

    /// Records the status and time taken on the span, so that every later line
    /// of the request carries them, and logs `answered` (with how a stream
    /// ended, when it was one).
    pub fn answered(&self, status: u16, outcome: Option<&'static str>) {
        let Some(started) = self.started else {
            return;
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        self.span.record("status", status);
        self.span.record("elapsed_ms", elapsed_ms);
        self.span.in_scope(|| match outcome {
            Some(outcome) => tracing::debug!(status, elapsed_ms, outcome, "answered"),
            None => tracing::debug!(status, elapsed_ms, "answered"),
        });
    }
}

/// Length of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub const HTTP_DATE_LEN: usize = 29;

/// The current time as an HTTP `Date` value, for every response hookcast writes
/// itself on the socket. Formatting costs more than the rest of a small
/// response head, so each thread formats it at most once a second.
pub fn http_date() -> [u8; HTTP_DATE_LEN] {
    use std::cell::Cell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: Cell<(u64, [u8; HTTP_DATE_LEN])> = const { Cell::new((u64::MAX, [0; HTTP_DATE_LEN])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let (at, date) = c.get();
        if at == secs {
            return date;
        }
        let mut date = [b' '; HTTP_DATE_LEN];
        let text = httpdate::fmt_http_date(now);
        // Always 29 bytes for years 1000 to 9999.
        let n = text.len().min(HTTP_DATE_LEN);
        date[..n].copy_from_slice(&text.as_bytes()[..n]);
        c.set((secs, date));
        date
    })
}

/// One timer for a connection's successive waits (a request head, the
/// upstream's answer), each with its own limit. A timer made per wait is put
/// into the runtime's timer wheel and taken out again, under its lock; this
/// one stays in: a later deadline is an atomic store, and a wait for less
/// than it has left moves it once, after which it fires early at most once
/// per limit and is set again.
#[derive(Debug)]
pub struct Deadline(std::pin::Pin<Box<tokio::time::Sleep>>);

impl Default for Deadline {
    fn default() -> Self {
        // Far off, until the first wait sets it.
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365);
        Deadline(Box::pin(tokio::time::sleep_until(far)))
    }
}

impl Deadline {
    /// `fut`'s output, or `None` when `limit` passes first.
    pub async fn within<F: std::future::Future>(
        &mut self,
        limit: std::time::Duration,
        fut: F,
    ) -> Option<F::Output> {
        use std::task::Poll;
        let deadline = tokio::time::Instant::now() + limit;
        if self.0.deadline() > deadline {
            self.0.as_mut().reset(deadline);
        }
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            loop {
                if self.0.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Set for an earlier wait: this one's limit is further off.
                if self.0.deadline() >= deadline {
                    return Poll::Ready(None);
                }
                self.0.as_mut().reset(deadline);
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn whole_seconds(t: SystemTime) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(t.duration_since(UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn the_cached_date_is_the_current_second() {
        for _ in 0..3 {
            let before = whole_seconds(SystemTime::now());
            let date = super::http_date();
            let after = SystemTime::now();
            let text = std::str::from_utf8(&date).unwrap();
            let parsed = httpdate::parse_http_date(text).unwrap();
            assert!(before <= parsed && parsed <= after, "{text}");
        }
    }

    /// Waits of several limits on one timer, on a paused clock: each ends at its
    /// own limit, whatever the waits before it left the timer set to.
    #[tokio::test(start_paused = true)]
    async fn each_wait_ends_at_its_own_limit() {
        use tokio::time::Instant;
        let mut timer = super::Deadline::default();
        let never = std::future::pending::<()>;
        for limit in [30, 10, 30, 5, 60, 10] {
            let limit = Duration::from_secs(limit);
            let start = Instant::now();
            assert_eq!(timer.within(limit, never()).await, None);
            assert_eq!(Instant::now() - start, limit);
            // A wait that ends first gives its output.
            assert_eq!(timer.within(limit, async { 7 }).await, Some(7));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
    }
}

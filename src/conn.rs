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

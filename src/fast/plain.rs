//! Plain requests served on the socket. While a keep-alive connection's
//! requests are plain HTTP/1.1 (no body or a `Content-Length` one, no upgrade
//! or expectation), each head is parsed once here and the request served
//! without hyper, by the same code hyper's path calls:
//!
//! - a webhook (every route its method and path select publishes) is read
//!   whole and given to [`ingest::handle`], which routes, verifies, publishes,
//!   counts and logs it; its answer is written as hyper would write it;
//! - a request for the upstream (a path nothing of hookcast's own serves) is
//!   exchanged by [`Upstream::relay_h1`](crate::proxy::Upstream::relay_h1),
//!   the same rewrite rules, errors and counts as hyper's path.
//!
//! The first other request hands the connection, with the bytes read, to
//! hyper for good.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tracing::Instrument;

use crate::app::{App, Live};
use crate::conn::{ClientAddr, Deadline, RequestLog};
use crate::ingest;
use crate::route::{Candidate, Lookup, Mode};

/// Longest request head served here (hyper's limit for longer ones). It also
/// keeps every request target here under `service::MAX_URI_BYTES`.
const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;

/// How a connection left the plain path.
#[derive(Debug)]
pub enum Handoff {
    /// To hyper, which serves it from these bytes on.
    Hyper(Bytes, TcpStream),
    /// Closed, or to be closed.
    Closed,
}

/// What serves a plain request.
enum Kind {
    /// The upstream.
    Proxied,
    /// Publish-mode routes: these candidates; `headers`: whether the handler
    /// reads the request's headers ([`ingest::reads_headers`]).
    Webhook {
        candidates: Vec<Candidate>,
        headers: bool,
    },
}

/// A request plain enough for the socket, its head taken off the buffer.
struct Plain {
    parts: http::request::Parts,
    kind: Kind,
    body_len: u64,
    /// The client asked to close after this request.
    close: bool,
}

/// Serves the connection's requests from `buf` on (the first head is in it)
/// while they are plain. Each head is read within `header_timeout`, as hyper
/// reads its own; `draining` ends a connection waiting for its next request.
pub async fn serve(
    live: &Live,
    mut io: TcpStream,
    buf: Bytes,
    peer: SocketAddr,
    header_timeout: Duration,
    draining: &Notify,
) -> Handoff {
    let mut buf = BytesMut::from(buf);
    // One timer for every wait of the connection (see `Deadline`).
    let mut timer = Deadline::default();
    // One registration for the connection's life, rather than one per request
    // (each enabled and dropped under the `Notify`'s lock); once the drain
    // begins, it stays ready.
    let mut draining = std::pin::pin!(draining.notified());
    draining.as_mut().enable();
    loop {
        let app = live.load();
        let max_body = app.config.limits.max_body;
        let plain = match classify(&mut buf, &|method, path| kind(&app, method, path), max_body) {
            Classified::Plain(plain) => plain,
            Classified::Other => return Handoff::Hyper(buf.freeze(), io),
            Classified::Partial => {
                drop(app);
                match read_head(
                    &mut io,
                    &mut buf,
                    &mut timer,
                    header_timeout,
                    live,
                    draining.as_mut(),
                )
                .await
                {
                    Ok(true) => continue,
                    // Something hyper should answer (its own 408, 400...), or nothing.
                    Ok(false) if !buf.is_empty() => return Handoff::Hyper(buf.freeze(), io),
                    _ => return Handoff::Closed,
                }
            }
        };
        let Plain {
            parts,
            kind,
            body_len,
            close,
        } = plain;
        let log = RequestLog::new(&parts.method, parts.uri.path());
        let close = close || live.is_draining();
        let keep = match kind {
            Kind::Webhook { candidates, .. } => {
                // Pinned where it is built: awaited, it would be moved once more.
                std::pin::pin!(webhook(
                    &app, &mut io, &mut buf, parts, candidates, body_len, close, &log, peer,
                ))
                .await
            }
            Kind::Proxied => {
                let req = crate::proxy::h1::Plain {
                    head: parts,
                    from: peer,
                    body_len,
                    close,
                };
                proxied(&app, &mut io, &mut buf, &mut timer, req, &log).await
            }
        };
        if !keep {
            let _ = io.shutdown().await;
            return Handoff::Closed;
        }
    }
}

/// One webhook: its body read from `buf` and the socket, then [`ingest::handle`],
/// as hyper's path calls it. Whether the connection goes on.
#[expect(clippy::too_many_arguments, reason = "one call site, the loop's state")]
async fn webhook(
    app: &App,
    io: &mut TcpStream,
    buf: &mut BytesMut,
    mut parts: http::request::Parts,
    candidates: Vec<Candidate>,
    body_len: u64,
    close: bool,
    log: &RequestLog,
    peer: SocketAddr,
) -> bool {
    // Within `limits.max_body` (checked by `serve`), so it fits in memory.
    let len = usize::try_from(body_len).unwrap_or(usize::MAX);
    let body = read_body(io, buf, len).await;
    let whole = body.is_some();
    if app.upstream.is_some() {
        // For the upstream's `X-Forwarded-For`, should no route take it.
        parts.extensions.insert(ClientAddr(peer));
    }
    // A body the client broke off is the handler's to refuse, as under hyper:
    // counted and logged, nothing published.
    let req = Request::from_parts(parts, Received(body.map_or(Read::Cut, Read::Whole)));
    let handled = std::pin::pin!(Some(ingest::handle(
        app,
        req,
        Lookup::Candidates(candidates)
    )));
    let answer = InSpan {
        span: &log.span,
        fut: handled,
    }
    .await;
    log.answered(answer.status().as_u16(), None);
    let keep = whole && !close;
    let written = match answer {
        ingest::Answer::Accepted(a) => super::writer::accepted(io, &a, keep).await,
        ingest::Answer::Response(resp) => super::writer::respond(io, resp, keep).await,
    };
    keep && written.is_ok()
}

/// A future polled, and dropped, in a span, as `Instrumented` does, but where
/// it was pinned: wrapping the webhook future (about 2 KB) in `Instrumented`
/// and awaiting that moved it twice more per webhook.
struct InSpan<'a, F> {
    span: &'a tracing::Span,
    /// `None` once dropped.
    fut: Pin<&'a mut Option<F>>,
}

impl<F: Future> Future for InSpan<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let fut = this
            .fut
            .as_mut()
            .as_pin_mut()
            .expect("not polled after drop");
        this.span.in_scope(|| fut.poll(cx))
    }
}

impl<F> Drop for InSpan<'_, F> {
    fn drop(&mut self) {
        self.span.in_scope(|| self.fut.set(None));
    }
}

/// One request for the upstream; whether the connection goes on.
async fn proxied(
    app: &App,
    io: &mut TcpStream,
    buf: &mut BytesMut,
    timer: &mut Deadline,
    req: crate::proxy::h1::Plain,
    log: &RequestLog,
) -> bool {
    let Some(upstream) = app.upstream.as_ref() else {
        return false;
    };
    let close = req.close;
    let relayed = upstream
        .relay_h1(io, buf, timer, req)
        .instrument(log.span.clone())
        .await;
    let (status, keep) = match relayed {
        Ok(r) => (r.status, r.keep),
        Err(e) => {
            let body_unread = matches!(e, crate::proxy::Error::ClientBody);
            let resp = log.span.in_scope(|| e.into_response());
            let status = resp.status().as_u16();
            let keep = !close && !body_unread;
            let written = super::writer::respond(io, resp, keep).await;
            (status, keep && written.is_ok())
        }
    };
    app.metrics().proxied(status);
    log.answered(status, None);
    keep
}

/// Reads a `len`-byte body: what `buf` holds of it, then the rest from the
/// socket. `None`: the client left first.
async fn read_body(io: &mut TcpStream, buf: &mut BytesMut, len: usize) -> Option<Bytes> {
    if buf.len() < len {
        buf.reserve(len - buf.len());
        while buf.len() < len {
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
    Some(buf.split_to(len).freeze())
}

/// A webhook's body as it was read on the socket.
enum Read {
    /// Whole; taken as the one frame.
    Whole(Bytes),
    /// Broken off by the client.
    Cut,
    /// Given.
    Done,
}

/// The body [`ingest::handle`] reads on this path: one frame, or an error.
struct Received(Read);

impl http_body::Body for Received {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(match std::mem::replace(&mut self.get_mut().0, Read::Done) {
            Read::Whole(bytes) => Some(Ok(Frame::data(bytes))),
            Read::Cut => Some(Err(std::io::ErrorKind::UnexpectedEof.into())),
            Read::Done => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, Read::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Read::Whole(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Read::Cut => SizeHint::default(),
            Read::Done => SizeHint::with_exact(0),
        }
    }
}

/// Which plain path serves a method and path, if any: what `service` would
/// send to `ingest` with publish-mode routes only, or to the upstream. Event
/// streams, the demo page and forward-mode routes stay with hyper.
fn kind(app: &App, method: &Method, path: &str) -> Option<Kind> {
    if path == app.config.sse.path
        || app.config.streams.serves(path)
        || path == "/_hookcast"
        || path.starts_with("/_hookcast/")
    {
        return None;
    }
    match app.config.router.lookup(method, path) {
        Lookup::Candidates(candidates)
            if *method != Method::HEAD
                && candidates.iter().all(|(r, _)| r.mode == Mode::Publish) =>
        {
            let headers = ingest::reads_headers(app, &candidates);
            Some(Kind::Webhook {
                candidates,
                headers,
            })
        }
        Lookup::Candidates(_) => None,
        _ if app.upstream.is_some() => Some(Kind::Proxied),
        _ => None,
    }
}

/// Reads more of a request head. `Ok(false)`: the client closed, the head
/// grew too long for here, or the process is draining (with nothing read).
async fn read_head(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    timer: &mut Deadline,
    timeout: Duration,
    live: &Live,
    mut draining: Pin<&mut Notified<'_>>,
) -> std::io::Result<bool> {
    if buf.len() >= MAX_HEAD {
        return Ok(false);
    }
    if buf.is_empty() && live.is_draining() {
        return Ok(false);
    }
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    // What has arrived already needs no timer.
    match io.try_read_buf(buf) {
        Ok(n) => return Ok(n > 0),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let read = async {
        tokio::select! {
            n = io.read_buf(buf) => n,
            // Between requests, a draining process closes the connection.
            () = &mut draining, if buf.is_empty() => Ok(0),
        }
    };
    match timer.within(timeout, read).await {
        Some(Ok(n)) => Ok(n > 0),
        Some(Err(e)) => Err(e),
        None => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "short-lived, and the plain request is the case to serve fast"
)]
enum Classified {
    Plain(Plain),
    Other,
    Partial,
}

/// Whether the head at the start of `buf` is a plain request; `kind` says
/// which plain path, if any, serves a method and path. A plain request's head
/// is taken off `buf`; anything else leaves it as it was, for hyper. A webhook
/// whose body is over `max_body` is hyper's: it answers 413 and knows what to
/// do with the unread body.
fn classify(
    buf: &mut BytesMut,
    kind: &dyn Fn(&Method, &str) -> Option<Kind>,
    max_body: u64,
) -> Classified {
    if buf.is_empty() {
        // Between requests: nothing to parse yet.
        return Classified::Partial;
    }
    // Left uninitialised: the parser writes only the headers there are.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Classified::Partial,
        _ => return Classified::Other,
    };
    if head_len > MAX_HEAD {
        return Classified::Other;
    }
    let mut spans = [Span::default(); MAX_HEADERS];
    let Some(found) = plain(&req, buf, kind, &mut spans) else {
        return Classified::Other;
    };
    if matches!(found.kind, Kind::Webhook { .. }) && found.body_len > max_body {
        return Classified::Other;
    }
    let spans = &spans[..req.headers.len()];
    // The head's bytes become the values' own: no copy per header.
    let head = buf.split_to(head_len).freeze();
    match found.build(&head, spans) {
        Some(plain) => Classified::Plain(plain),
        None => {
            // Bytes the checks above let through but the http crate refuses:
            // hyper answers them, from the bytes as they were.
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Classified::Other
        }
    }
}

/// Where a piece of a head lies in it: start and end (a head is at most
/// [`MAX_HEAD`] bytes).
#[derive(Clone, Copy, Default)]
struct At(u16, u16);

impl At {
    fn of(piece: &[u8], head: &[u8]) -> Self {
        let start = piece.as_ptr() as usize - head.as_ptr() as usize;
        At(start as u16, (start + piece.len()) as u16)
    }

    fn range(self) -> std::ops::Range<usize> {
        self.0 as usize..self.1 as usize
    }
}

/// A header's name and value in the head.
#[derive(Clone, Copy, Default)]
struct Span {
    name: At,
    value: At,
}

/// What the checks on a plain request's raw head found, before the head is
/// taken off the buffer.
struct Found {
    method: Method,
    kind: Kind,
    target: At,
    body_len: u64,
    close: bool,
}

impl Found {
    fn build(self, head: &Bytes, spans: &[Span]) -> Option<Plain> {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method;
        parts.uri = Uri::from_maybe_shared(head.slice(self.target.range())).ok()?;
        parts.version = Version::HTTP_11;
        // Room for what the proxy's rewrite adds (`X-Forwarded-*`, `Host`):
        // the map is not grown and rehashed on the way. A webhook's is only
        // read; past its few headers, room costs (16 entries are above the
        // allocator's fast sizes). A webhook whose handler reads no header gets
        // none: httparse accepted only names and values the http crate takes
        // (test `the_parser_takes_only_what_the_http_crate_takes`), so nothing
        // refused on building is left unrefused.
        let room = match self.kind {
            Kind::Proxied => 4,
            Kind::Webhook { headers: false, .. } => {
                return Some(Plain {
                    parts,
                    kind: self.kind,
                    body_len: self.body_len,
                    close: self.close,
                });
            }
            Kind::Webhook { headers: true, .. } => 0,
        };
        parts.headers = http::HeaderMap::with_capacity(spans.len() + room);
        for span in spans {
            parts.headers.append(
                HeaderName::from_bytes(&head[span.name.range()]).ok()?,
                HeaderValue::from_maybe_shared(head.slice(span.value.range())).ok()?,
            );
        }
        Some(Plain {
            parts,
            kind: self.kind,
            body_len: self.body_len,
            close: self.close,
        })
    }
}

/// Checks a parsed head, and notes in `spans` where its headers lie in `buf`.
fn plain(
    req: &httparse::Request<'_, '_>,
    buf: &[u8],
    kind: &dyn Fn(&Method, &str) -> Option<Kind>,
    spans: &mut [Span; MAX_HEADERS],
) -> Option<Found> {
    // HTTP/1.0 keeps connections open differently: hyper knows it.
    if req.version? != 1 {
        return None;
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let target = req.path?;
    // A fragment: hyper's (the http crate's target drops it).
    if method == Method::CONNECT || !target.starts_with('/') || target.bytes().any(|b| b == b'#') {
        return None;
    }
    let path = target
        .bytes()
        .position(|b| b == b'?')
        .map_or(target, |q| &target[..q]);
    let kind = kind(&method, path)?;
    let mut found = Found {
        method,
        kind,
        target: At::of(target.as_bytes(), buf),
        body_len: 0,
        close: false,
    };
    let mut body_len: Option<u64> = None;
    for (h, slot) in req.headers.iter().zip(spans.iter_mut()) {
        let name = h.name.as_bytes();
        // Chunked bodies, upgrades (h2c, WebSocket) and `Expect`: hyper's.
        if ["transfer-encoding", "upgrade", "expect", "http2-settings"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            // Digits only, as hyper reads it (`parse` would take a `+`).
            if h.value.is_empty() || !h.value.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n: u64 = std::str::from_utf8(h.value).ok()?.parse().ok()?;
            if body_len.is_some() {
                return None;
            }
            body_len = Some(n);
        }
        if name.eq_ignore_ascii_case(b"connection")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            found.close = true;
        }
        *slot = Span {
            name: At::of(name, buf),
            value: At::of(h.value, buf),
        };
    }
    found.body_len = body_len.unwrap_or(0);
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How `head` is classified; a plain request's head is taken off the
    /// buffer, anything else leaves it whole for hyper.
    fn kind(head: &str) -> &'static str {
        let mut buf = BytesMut::from(head);
        let kind = |_: &Method, path: &str| (path != "/events").then_some(Kind::Proxied);
        match classify(&mut buf, &kind, u64::MAX) {
            Classified::Plain(_) => {
                let end = head.find("\r\n\r\n").unwrap() + 4;
                assert_eq!(&buf[..], &head.as_bytes()[end..], "{head:?}");
                "plain"
            }
            Classified::Other => {
                assert_eq!(&buf[..], head.as_bytes(), "{head:?}");
                "other"
            }
            Classified::Partial => {
                assert_eq!(&buf[..], head.as_bytes(), "{head:?}");
                "partial"
            }
        }
    }

    #[test]
    fn a_plain_head_is_taken_off_and_its_values_kept() {
        let mut buf = BytesMut::from(
            "POST /a/b?c=1 HTTP/1.1\r\nHost: x:1\r\nX-Custom: v, w\r\nContent-Length: 3\r\n\r\nabcGET",
        );
        let Classified::Plain(plain) = classify(&mut buf, &|_, _| Some(Kind::Proxied), u64::MAX)
        else {
            panic!("not plain");
        };
        assert_eq!(&buf[..], b"abcGET");
        assert_eq!(plain.parts.method, Method::POST);
        assert_eq!(plain.parts.uri, "/a/b?c=1");
        assert_eq!(plain.parts.headers["host"], "x:1");
        assert_eq!(plain.parts.headers["x-custom"], "v, w");
        assert_eq!(plain.body_len, 3);
        assert!(!plain.close);
    }

    #[test]
    fn a_target_the_http_crate_refuses_leaves_the_bytes_for_hyper() {
        // Targets httparse reads but the http crate refuses: found plain by
        // the checks on the raw head, then given back whole.
        let mut given_back = 0;
        for b in 0x21u8..0x7f {
            let head = format!("GET /a{}b HTTP/1.1\r\nHost: x\r\n\r\n", b as char);
            let mut headers = [httparse::EMPTY_HEADER; 4];
            let parsed = httparse::Request::new(&mut headers).parse(head.as_bytes());
            let read = matches!(parsed, Ok(httparse::Status::Complete(_)));
            if kind(&head) == "other" && read && b != b'#' {
                given_back += 1;
            }
        }
        assert!(given_back > 0);
    }

    #[test]
    fn the_parser_takes_only_what_the_http_crate_takes() {
        // A webhook whose handler reads no header gets no map built, so no
        // `HeaderName`/`HeaderValue` check: every name and value httparse
        // accepts must be one they accept too.
        for b in 0..=u8::MAX {
            for (name, value) in [
                (vec![b'a', b, b'b'], &b"v"[..]),
                (b"x".to_vec(), &[b'a', b, b'b'][..]),
            ] {
                let mut head = b"POST /a HTTP/1.1\r\n".to_vec();
                head.extend_from_slice(&name);
                head.extend_from_slice(b": ");
                head.extend_from_slice(value);
                head.extend_from_slice(b"\r\n\r\n");
                let mut headers = [httparse::EMPTY_HEADER; 4];
                let mut req = httparse::Request::new(&mut headers);
                if let Ok(httparse::Status::Complete(_)) = req.parse(&head) {
                    for h in req.headers.iter() {
                        assert!(HeaderName::from_bytes(h.name.as_bytes()).is_ok(), "{b:#x}");
                        assert!(HeaderValue::from_bytes(h.value).is_ok(), "{b:#x}");
                    }
                }
            }
        }
    }

    #[test]
    fn only_plain_requests_stay_on_the_socket() {
        assert_eq!(kind("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"), "plain");
        assert_eq!(
            kind("POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            "plain"
        );
        assert_eq!(kind("GET /a HTTP/1.1\r\nHost"), "partial");
        assert_eq!(kind("GET /events HTTP/1.1\r\n\r\n"), "other");
        assert_eq!(kind("GET /a HTTP/1.0\r\n\r\n"), "other");
        assert_eq!(
            kind("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "other"
        );
        assert_eq!(
            kind(
                "GET /a HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
            ),
            "other"
        );
        assert_eq!(
            kind("GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            "other"
        );
        assert_eq!(
            kind("POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"),
            "other"
        );
        assert_eq!(
            kind("POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            "other"
        );
        assert_eq!(kind("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "other");
        assert_eq!(kind("OPTIONS * HTTP/1.1\r\n\r\n"), "other");
        assert_eq!(kind("CONNECT a:1 HTTP/1.1\r\n\r\n"), "other");
    }
}

//! HTTP/1.x event streams served straight on the socket.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for the life of each
//! connection; an idle event stream needs neither. So the accept loop reads the
//! request head itself: a `GET {sse.path}` over HTTP/1.x is answered here, and
//! each event's chunk — one buffer, framed once at publish and shared by every
//! subscriber — is written straight to the socket, queued pieces together in one
//! `writev`. Any other request, and any head not plainly valid, goes to hyper
//! with the bytes already read, so hyper gives its usual answers.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::app::App;
use crate::reply::Body;
use crate::sse::{Chunk, EventStream};
use crate::subscribe::{self, Subscribed};

/// Longest request head read here; a longer one goes to hyper, which has its own limits.
const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// Most pieces written in one `writev`.
const BATCH: usize = 8;
/// Pieces are taken from the subscriber's queue only while fewer bytes than this
/// wait to be written, so a client that stopped reading leaves its events in the
/// queue, where `sse.subscriber_queue_bytes` bounds them (README, "Memory").
const UNWRITTEN_BYTES: usize = 64 * 1024;
/// Write rounds before the task yields, so one busy stream cannot hold a worker.
const ROUNDS_PER_POLL: usize = 4;

/// What the first bytes of a connection turned out to be.
#[derive(Debug)]
pub enum Sniffed {
    /// A request for the event stream, its head parsed.
    Stream(http::request::Parts),
    /// Anything else: hyper serves it, starting with these bytes.
    Other(Bytes),
    /// The client left before sending a request.
    Gone,
}

/// Reads until the request line rules the connection out, or the whole head is
/// in; `is_stream` says whether a path serves event streams.
pub async fn sniff(
    io: &mut TcpStream,
    is_stream: &(dyn Fn(&str) -> bool + Sync),
) -> io::Result<Sniffed> {
    let mut buf = BytesMut::new();
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(1024);
        }
        let n = io.read_buf(&mut buf).await?;
        if n == 0 && buf.is_empty() {
            return Ok(Sniffed::Gone);
        }
        match classify(&buf, is_stream) {
            Head::Stream(parts) => return Ok(Sniffed::Stream(parts)),
            Head::Partial if n != 0 && buf.len() < MAX_HEAD => {}
            Head::Partial | Head::Other => return Ok(Sniffed::Other(buf.freeze())),
        }
    }
}

/// What the bytes read so far make of a connection (public for the fuzz target).
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "short-lived, and a stream is the case to serve fast"
)]
pub enum Head {
    /// A plain stream request, its head complete.
    Stream(http::request::Parts),
    /// Not one: hyper serves it.
    Other,
    /// Too soon to tell: read more.
    Partial,
}

/// Decides on the bytes read so far; `is_stream` says whether a path serves event
/// streams. Once it says `Stream` or `Other`, more bytes would not change that.
pub fn classify(buf: &[u8], is_stream: &dyn Fn(&str) -> bool) -> Head {
    // The request line decides first: most connections are not streams.
    const GET: &[u8] = b"GET /";
    let have = buf.len().min(GET.len());
    if buf[..have] != GET[..have] {
        return Head::Other;
    }
    // A first read may end inside the request line's first bytes ("GE").
    if have < GET.len() {
        return Head::Partial;
    }
    let target = &buf[GET.len() - 1..];
    let Some(end) = target.iter().position(|&b| b == b' ' || b == b'\r') else {
        return if buf.len() < MAX_HEAD {
            Head::Partial
        } else {
            Head::Other
        };
    };
    let path = target[..end]
        .split(|&b| b == b'?')
        .next()
        .unwrap_or_default();
    match std::str::from_utf8(path) {
        Ok(path) if is_stream(path) => {}
        _ => return Head::Other,
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => parts(&req).map_or(Head::Other, Head::Stream),
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(_) => Head::Other,
    }
}

fn parts(req: &httparse::Request<'_, '_>) -> Option<http::request::Parts> {
    let version = match req.version? {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return None,
    };
    let uri: Uri = req.path?.parse().ok()?;
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .version(version);
    let headers = builder.headers_mut()?;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // A body, an upgrade or an expectation on this GET: hyper knows those.
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::EXPECT,
        ]
        .contains(&name)
        {
            return None;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(builder.body(()).ok()?.into_parts().0)
}

/// Opens a sniffed stream request on `io` (authorization may wait on the
/// network) and returns what serves it. That is a future written out by hand,
/// not an `async fn`, so that what every open stream keeps is only its writer,
/// its event stream and its span.
pub async fn open(app: &App, io: TcpStream, req: http::request::Parts) -> Serving {
    let span = tracing::info_span!("request", method = "GET", path = %req.uri.path());
    let version = req.version;
    let subscribed = subscribe::handle(app, &req).instrument(span.clone()).await;
    drop(req);
    match subscribed {
        Subscribed::Stream(resp) => {
            let status = resp.status().as_u16();
            let (parts, body) = resp.into_parts();
            // HTTP/1.0 has no chunks: its body ends with the connection.
            let chunked = version == Version::HTTP_11;
            let head = if chunked {
                head(&parts, b"transfer-encoding: chunked\r\n", false)
            } else {
                head(&parts, b"connection: close\r\n", true)
            };
            Serving::Stream(StreamTask {
                writer: Writer {
                    io,
                    chunked,
                    out: vec![head],
                    offset: 0,
                    ending: None,
                },
                body,
                span,
                status,
                started: std::time::Instant::now(),
            })
        }
        Subscribed::Other(resp) => {
            let status = resp.status().as_u16();
            let started = std::time::Instant::now();
            let run = async move {
                let result = answer(io, resp, version).await;
                answered(status, started, &result);
            };
            Serving::Other(Box::pin(run.instrument(span)))
        }
    }
}

/// The future of one stream request; see [`open`].
#[expect(
    clippy::large_enum_variant,
    reason = "the stream is the common case; boxing it would cost an allocation per stream"
)]
pub enum Serving {
    Stream(StreamTask),
    /// An error or "try later": rare, so boxed.
    Other(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Serving::Stream(task) => f.debug_tuple("Stream").field(task).finish(),
            Serving::Other(_) => f.write_str("Other"),
        }
    }
}

impl Future for Serving {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Serving::Stream(task) => task.poll_run(cx),
            Serving::Other(run) => run.as_mut().poll(cx),
        }
    }
}

#[derive(Debug)]
pub struct StreamTask {
    writer: Writer,
    body: EventStream,
    span: tracing::Span,
    status: u16,
    started: std::time::Instant,
}

impl StreamTask {
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let _entered = self.span.enter();
        let result = ready!(self.writer.poll_run(&mut self.body, cx));
        if let Ok(End::Finished) = result {
            // A clean end; the shutdown of a TCP socket does not wait.
            let _ = Pin::new(&mut self.writer.io).poll_shutdown(cx);
        }
        answered(self.status, self.started, &result);
        Poll::Ready(())
    }
}

fn answered(status: u16, started: std::time::Instant, result: &io::Result<End>) {
    tracing::debug!(
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        outcome = match result {
            Ok(end) => end.as_str(),
            Err(_) => "write failed",
        },
        "answered"
    );
}

/// How a stream ended.
#[derive(Debug, Clone, Copy)]
enum End {
    /// The stream ended cleanly (shutdown, stream lifetime).
    Finished,
    /// The client went away.
    Gone,
    /// The client fell behind and was cut.
    Cut,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Finished => "finished",
            End::Gone => "client left",
            End::Cut => "cut: client fell behind",
        }
    }
}

/// Anything but a stream (an error, "try later"): written whole, then the
/// connection closes. "Try later" is an event stream that ends at once, so it
/// keeps the stream's framing.
async fn answer(mut io: TcpStream, resp: Response<Body>, version: Version) -> io::Result<End> {
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let is_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream && version == Version::HTTP_11 {
        io.write_all(&head(&parts, b"transfer-encoding: chunked\r\n", false))
            .await?;
        io.write_all(Chunk::from_parts(&[&bytes]).wire()).await?;
        io.write_all(b"0\r\n\r\n").await?;
    } else {
        let framing = format!("content-length: {}\r\nconnection: close\r\n", bytes.len());
        io.write_all(&head(&parts, framing.as_bytes(), true))
            .await?;
        io.write_all(&bytes).await?;
    }
    io.shutdown().await?;
    Ok(End::Finished)
}

/// The status line and headers. `framing` stands for the headers hookcast sets
/// itself; with `closing`, it says `connection: close` in place of the response's own.
fn head(parts: &http::response::Parts, framing: &[u8], closing: bool) -> Bytes {
    let mut h = Vec::with_capacity(256);
    h.extend_from_slice(b"HTTP/1.1 ");
    h.extend_from_slice(parts.status.as_str().as_bytes());
    h.push(b' ');
    h.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or_default()
            .as_bytes(),
    );
    h.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [header::CONTENT_LENGTH, header::TRANSFER_ENCODING].contains(name)
            || (closing && name == header::CONNECTION)
        {
            continue;
        }
        h.extend_from_slice(name.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(b"date: ");
    h.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    h.extend_from_slice(b"\r\n");
    h.extend_from_slice(framing);
    h.extend_from_slice(b"\r\n");
    Bytes::from(h)
}

#[derive(Debug)]
struct Writer {
    io: TcpStream,
    chunked: bool,
    /// Pieces not yet written, the first from `offset` on.
    out: Vec<Bytes>,
    offset: usize,
    /// Set once the stream has ended; what is in `out` is the last of it.
    ending: Option<End>,
}

impl Writer {
    fn poll_run(&mut self, body: &mut EventStream, cx: &mut Context<'_>) -> Poll<io::Result<End>> {
        for _ in 0..ROUNDS_PER_POLL {
            if self.peer_gone(cx) {
                return Poll::Ready(Ok(End::Gone));
            }
            if self.ending.is_none() {
                self.fill(body, cx);
            }
            if self.out.is_empty() {
                return match self.ending {
                    Some(end) => Poll::Ready(Ok(end)),
                    None => Poll::Pending,
                };
            }
            match self.io.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // The client is not reading; the hub may cut it meanwhile.
                    if body.poll_cut(cx).is_ready() {
                        return Poll::Ready(Ok(End::Cut));
                    }
                    return Poll::Pending;
                }
            }
            match self.write() {
                Ok(()) => {
                    if self.out.is_empty() {
                        body.written();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Takes the pieces the stream has ready, up to a batch.
    fn fill(&mut self, body: &mut EventStream, cx: &mut Context<'_>) {
        while self.out.len() < BATCH
            && self.out.iter().map(Bytes::len).sum::<usize>() < UNWRITTEN_BYTES
        {
            match body.poll_piece(cx) {
                Poll::Ready(Some(Ok(piece))) => self.out.push(if self.chunked {
                    piece.chunk()
                } else {
                    piece.frame()
                }),
                Poll::Ready(Some(Err(_slow))) => {
                    // The connection ends without the last chunk, so the client
                    // sees an error, not a clean end.
                    self.out.clear();
                    self.ending = Some(End::Cut);
                    return;
                }
                Poll::Ready(None) => {
                    if self.chunked {
                        self.out.push(Bytes::from_static(b"0\r\n\r\n"));
                    }
                    self.ending = Some(End::Finished);
                    return;
                }
                Poll::Pending => return,
            }
        }
    }

    fn write(&mut self) -> io::Result<()> {
        let mut slices = [IoSlice::new(&[]); BATCH + 1];
        let mut n = 0;
        for (i, piece) in self.out.iter().enumerate().take(slices.len()) {
            let from = if i == 0 { self.offset } else { 0 };
            slices[i] = IoSlice::new(&piece[from..]);
            n += 1;
        }
        let mut written = self.io.try_write_vectored(&slices[..n])?;
        let mut done = 0;
        for piece in &self.out {
            let left = piece.len() - if done == 0 { self.offset } else { 0 };
            if written < left {
                break;
            }
            written -= left;
            done += 1;
            self.offset = 0;
        }
        self.out.drain(..done);
        self.offset += written;
        Ok(())
    }

    /// Whether the client closed the connection. Stray bytes after the request
    /// are read and dropped: nothing more is served on this connection.
    fn peer_gone(&self, cx: &mut Context<'_>) -> bool {
        for _ in 0..8 {
            match self.io.poll_read_ready(cx) {
                Poll::Pending => return false,
                Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(())) => {}
            }
            let mut scratch = [0u8; 64];
            match self.io.try_read(&mut scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return true,
            }
        }
        cx.waker().wake_by_ref();
        false
    }
}

/// A socket whose first bytes were already read by [`sniff`]: hyper reads them
/// again from here.
#[derive(Debug)]
pub struct Prefixed {
    prefix: Bytes,
    io: TcpStream,
}

impl Prefixed {
    pub fn new(prefix: Bytes, io: TcpStream) -> Self {
        Prefixed { prefix, io }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Free the sniffing buffer.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(path: &str) -> bool {
        path == "/events" || path == "/users/7/feed"
    }

    fn kind(buf: &str) -> &'static str {
        match classify(buf.as_bytes(), &events) {
            Head::Stream(_) => "stream",
            Head::Other => "other",
            Head::Partial => "partial",
        }
    }

    #[test]
    fn takes_only_plain_stream_requests() {
        assert_eq!(
            kind("GET /events?topic=a HTTP/1.1\r\nHost: x\r\n\r\n"),
            "stream"
        );
        assert_eq!(kind("GET /events HTTP/1.0\r\n\r\n"), "stream");
        assert_eq!(kind("GET /ev"), "partial");
        // A head cut in its first bytes, by the fuzz target (fuzz/corpus/http1_head).
        assert_eq!(kind(""), "partial");
        assert_eq!(kind("GE"), "partial");
        assert_eq!(kind("GET"), "partial");
        assert_eq!(kind("GX"), "other");
        assert_eq!(kind("GET /users/7/feed HTTP/1.1\r\n\r\n"), "stream");
        assert_eq!(kind("GET /users/8/feed HTTP/1.1\r\n\r\n"), "other");
        assert_eq!(kind("GET /events?topic=a HTTP/1.1\r\nHost"), "partial");
        assert_eq!(kind("GET /eventsx HTTP/1.1\r\n\r\n"), "other");
        assert_eq!(kind("POST /events HTTP/1.1\r\n\r\n"), "other");
        assert_eq!(kind("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "other");
        assert_eq!(kind("GET /hooks/x HTTP/1.1\r\n\r\n"), "other");
        // Left to hyper: a body on the GET, an upgrade, a malformed header.
        assert_eq!(
            kind("GET /events HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            "other"
        );
        assert_eq!(
            kind("GET /events HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"),
            "other"
        );
        assert_eq!(
            kind("GET /events HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            "other"
        );
    }

    #[test]
    fn keeps_the_request() {
        let Head::Stream(p) = classify(
            b"GET /events?topic=a&topic=b HTTP/1.1\r\nLast-Event-ID: 7\r\nX: 1\r\nX: 2\r\n\r\n",
            &events,
        ) else {
            panic!("not a stream");
        };
        assert_eq!(p.uri.query(), Some("topic=a&topic=b"));
        assert_eq!(p.version, Version::HTTP_11);
        assert_eq!(p.headers["last-event-id"], "7");
        assert_eq!(p.headers.get_all("x").iter().count(), 2);
    }
}

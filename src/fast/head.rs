//! The fast path's request head reader: the first head of a connection, read
//! once under one `header_read_timeout`, parsed here when it asks for an event
//! stream, else handed to hyper whole with the bytes already read ([`Prefixed`]).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Longest request head parsed here; a longer one goes to hyper, which has its own limits.
const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;

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

/// Reads the first request head of a connection, all under the caller's one
/// `limits.header_read_timeout`: until the request line rules a stream out, or
/// the whole head is in. A head that hyper serves is read whole here too (up to
/// `max_head` bytes), so hyper finds it complete and starts no second timeout
/// for it; bytes that cannot start an HTTP/1 head go to hyper at once.
/// `is_stream` says whether a path serves event streams.
pub async fn sniff(
    io: &mut TcpStream,
    is_stream: &(dyn Fn(&str) -> bool + Sync),
    max_head: usize,
) -> io::Result<Sniffed> {
    let mut buf = BytesMut::new();
    let mut stream_ruled_out = false;
    loop {
        if buf.capacity() - buf.len() < 512 {
            // Small steps while it may be a stream (an idle stream keeps
            // nothing of this), larger ones for a long head hyper will serve.
            buf.reserve(if stream_ruled_out {
                buf.len().max(1024)
            } else {
                1024
            });
        }
        let n = io.read_buf(&mut buf).await?;
        if n == 0 && buf.is_empty() {
            return Ok(Sniffed::Gone);
        }
        if !stream_ruled_out {
            match classify(&buf, is_stream) {
                Head::Stream(parts) => return Ok(Sniffed::Stream(parts)),
                Head::Partial if n != 0 && buf.len() < MAX_HEAD => continue,
                Head::Partial | Head::Other => stream_ruled_out = true,
            }
        }
        if n == 0 || buf.len() >= max_head || !head_incomplete(&buf) {
            return Ok(Sniffed::Other(buf.freeze()));
        }
    }
}

/// Whether `buf` starts an HTTP/1 request head whose end has not come yet
/// (public for the fuzz target). Not a head at all, or a complete one: `false`.
pub fn head_incomplete(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Partial) => true,
        Ok(httparse::Status::Complete(_)) => false,
        // More headers than parsed here: the head ends at the first empty line.
        Err(httparse::Error::TooManyHeaders) => {
            !(buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n"))
        }
        Err(_) => false,
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

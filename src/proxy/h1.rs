//! The plain HTTP/1.1 exchange: a request head the fast path has parsed (no
//! body, or a `Content-Length` one; no upgrade, no expectation) is rewritten
//! by the same rules as hyper's path ([`Upstream::rewrite`]), written to a
//! pooled upstream socket, and the response relayed as bytes: its head parsed
//! once, its body (by length, chunks or the connection's end) copied through a
//! bounded buffer without being re-framed. hyper's client and server would
//! parse, buffer and frame each message again, on two tasks.

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use http::{HeaderMap, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pool::Failure;
use super::{Error, Outcome, Upstream, headers, record};
use crate::conn::Deadline;

/// Largest upstream response head read; a longer one is a 502.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response headers parsed.
const MAX_HEADERS: usize = 100;
/// Bytes copied per read, either way.
const COPY: usize = 16 * 1024;

/// What a plain exchange came to, once its response was written.
#[derive(Debug, Clone, Copy)]
pub struct Relayed {
    /// The status the client got.
    pub status: u16,
    /// Whether the client's connection may serve its next request.
    pub keep: bool,
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// At the connection's end: the client's connection closes after it.
    Close,
}

/// A plain request, as the fast path read it.
#[derive(Debug)]
pub struct Plain {
    pub head: http::request::Parts,
    /// The client's address, for `X-Forwarded-For`.
    pub from: SocketAddr,
    /// Bytes of body after the head (`Content-Length`).
    pub body_len: u64,
    /// The client's connection closes after this exchange.
    pub close: bool,
}

impl Upstream {
    /// Passes one plain request (its body follows its head in `buf`, then on
    /// `client`) and relays the response to `client`; the wait for the
    /// response's head is bounded by `upstream.timeout` on `timer`, the
    /// connection's one timer. With `req.close`, the response says
    /// `connection: close`. `Err` means nothing was written to the client: the
    /// caller answers it ([`Error::into_response`]).
    pub async fn relay_h1(
        &self,
        client: &mut TcpStream,
        buf: &mut BytesMut,
        timer: &mut Deadline,
        req: Plain,
    ) -> Result<Relayed, Error> {
        let Plain {
            head: mut req,
            from,
            body_len,
            close,
        } = req;
        let asked = Asked {
            head_only: req.method == Method::HEAD,
            close,
        };
        self.rewrite(&mut req, false, Some(from.ip()))?;
        let head = request_head(&req);
        let mut retried = false;
        loop {
            let (mut up, mut resp, reused) = match self.pool.take_raw() {
                Some((io, buf)) => (io, buf, true),
                None => (
                    Box::pin(self.pool.dial())
                        .await
                        .map_err(Error::Unavailable)?,
                    BytesMut::new(),
                    false,
                ),
            };
            let mut sent = up.write_all(&head).await;
            if sent.is_ok() && body_len > 0 {
                sent = match pass_body(client, buf, &mut up, body_len).await {
                    Ok(()) => Ok(()),
                    Err(BodyFailure::Client) => return Err(Error::ClientBody),
                    // The upstream may have answered already: its answer is read below.
                    Err(BodyFailure::Upstream(e)) => Err(e),
                };
            }
            let mut out = Vec::with_capacity(256);
            let answered = match sent {
                Ok(()) => {
                    timer
                        .within(self.timeout, read_head(&mut up, &mut resp, asked, &mut out))
                        .await
                }
                Err(e) => Some(
                    read_head(&mut up, &mut resp, asked, &mut out)
                        .await
                        .map_err(|_| e),
                ),
            };
            let parsed = match answered {
                None => return Err(Error::Timeout(self.timeout)),
                // A kept connection the upstream closed as the request went out:
                // nothing of a bodiless request was taken, so it goes to a new one.
                Some(Err(e)) if reused && !retried && body_len == 0 && resp.is_empty() => {
                    tracing::debug!(error = %e, "kept upstream connection closed; retrying");
                    retried = true;
                    continue;
                }
                Some(Err(e)) => return Err(Error::Unavailable(Failure::Io(e))),
                Some(Ok(parsed)) => parsed,
            };
            return Ok(self.relay_response(client, up, resp, parsed, &out).await);
        }
    }

    async fn relay_response(
        &self,
        client: &mut TcpStream,
        mut up: TcpStream,
        mut resp: BytesMut,
        parsed: Parsed,
        head: &[u8],
    ) -> Relayed {
        let Parsed {
            status,
            framing,
            upstream_keeps,
            keep,
            head_len,
        } = parsed;
        resp.advance(head_len);
        record(Outcome::Answered(status));

        // The body bytes already read go out with the head.
        let mut body = Body::new(framing);
        let take = body.advance(&resp);
        let Ok(take) = take else {
            return self.cut(status, "the upstream sent a malformed chunk");
        };
        let extra = take < resp.len();
        if write_all_vectored(client, head, &resp[..take])
            .await
            .is_err()
        {
            return Relayed {
                status: status.as_u16(),
                keep: false,
            };
        }
        resp.clear();
        while !body.done() {
            if resp.capacity() < COPY {
                resp.reserve(COPY);
            }
            match up.read_buf(&mut resp).await {
                Ok(0) if framing == Framing::Close => {
                    body.finish();
                    break;
                }
                Ok(0) | Err(_) => {
                    return self.cut(
                        status,
                        "the upstream broke off its response body; the client's response is cut",
                    );
                }
                Ok(_) => {}
            }
            let Ok(take) = body.advance(&resp) else {
                return self.cut(status, "the upstream sent a malformed chunk");
            };
            if client.write_all(&resp[..take]).await.is_err() {
                return Relayed {
                    status: status.as_u16(),
                    keep: false,
                };
            }
            let more = take < resp.len();
            resp.clear();
            if more {
                // Bytes after the response: the connection is not reused.
                return Relayed {
                    status: status.as_u16(),
                    keep,
                };
            }
        }
        if upstream_keeps && !extra && framing != Framing::Close {
            self.pool.give_back_raw(up, resp);
        }
        Relayed {
            status: status.as_u16(),
            keep,
        }
    }

    /// The upstream broke off its response body: logged and recorded here; the
    /// client's connection closes without the body's end, so it sees an error.
    fn cut(&self, status: StatusCode, why: &'static str) -> Relayed {
        tracing::warn!(
            error = why,
            "the upstream broke off its response body; the client's response is cut"
        );
        record(Outcome::BodyAborted);
        Relayed {
            status: status.as_u16(),
            keep: false,
        }
    }
}

enum BodyFailure {
    Client,
    Upstream(io::Error),
}

/// Copies `len` bytes of request body: first from `buf`, then from the client.
async fn pass_body(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    up: &mut TcpStream,
    mut len: u64,
) -> Result<(), BodyFailure> {
    let now = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    if now > 0 {
        let part = buf.split_to(now);
        up.write_all(&part).await.map_err(BodyFailure::Upstream)?;
        len -= now as u64;
    }
    let mut scratch = BytesMut::new();
    while len > 0 {
        scratch.clear();
        let want = usize::try_from(len).unwrap_or(COPY).min(COPY);
        scratch.reserve(want);
        let n = (&mut *client)
            .take(want as u64)
            .read_buf(&mut scratch)
            .await
            .map_err(|_| BodyFailure::Client)?;
        if n == 0 {
            return Err(BodyFailure::Client);
        }
        up.write_all(&scratch)
            .await
            .map_err(BodyFailure::Upstream)?;
        len -= n as u64;
    }
    Ok(())
}

/// A response head, parsed, and the head the client gets written.
struct Parsed {
    status: StatusCode,
    framing: Framing,
    /// The upstream did not say `Connection: close`.
    upstream_keeps: bool,
    /// The client's connection stays open after this response.
    keep: bool,
    head_len: usize,
}

/// What the response head written to the client depends on besides the
/// upstream's head.
#[derive(Clone, Copy)]
struct Asked {
    /// A `HEAD` request: the response has no body, whatever it says.
    head_only: bool,
    /// The client's connection closes after this response.
    close: bool,
}

/// Reads response heads until a final one (1xx heads are dropped, as hyper's
/// client drops them).
async fn read_head(
    up: &mut TcpStream,
    buf: &mut BytesMut,
    asked: Asked,
    out: &mut Vec<u8>,
) -> io::Result<Parsed> {
    loop {
        if let Some(parsed) = parse_head(buf, asked, out)? {
            if parsed.status.is_informational() {
                buf.advance(parsed.head_len);
                continue;
            }
            return Ok(parsed);
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too long",
            ));
        }
        buf.reserve(4096);
        if up.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream closed the connection before a response head",
            ));
        }
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Parses the response head at the start of `buf` and writes the head the
/// client gets to `out`: the upstream's status and headers, hop-by-hop ones
/// out, as hyper's path rewrites them ([`headers::each_end_to_end`]); a
/// `date` when it sent none (as hyper's server adds one); then the framing.
fn parse_head(buf: &[u8], asked: Asked, out: &mut Vec<u8>) -> io::Result<Option<Parsed>> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(invalid("malformed response head")),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| invalid("bad status"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(invalid("a switch of protocols no request asked for"));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut dated = false;
    let mut upstream_keeps = resp.version == Some(1);
    for h in resp.headers.iter() {
        // httparse has checked the name's characters; a value's are checked
        // as the http crate checks them (`HeaderValue::from_bytes`).
        if !h.value.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t') {
            return Err(invalid("bad header"));
        }
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| invalid("bad content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("conflicting content-length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only chunked as the last coding is relayed as it is.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                return Err(invalid("a transfer coding other than chunked"));
            }
        } else if name.eq_ignore_ascii_case(b"connection")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            upstream_keeps = false;
        } else if name.eq_ignore_ascii_case(b"date") {
            dated = true;
        }
    }
    let mut framing = match (chunked, length) {
        // Transfer-Encoding wins over Content-Length, which is then dropped.
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Close,
    };
    if asked.head_only || status.is_informational() || matches!(status.as_u16(), 204 | 304) {
        framing = Framing::Length(0);
    }
    let keep = !asked.close && framing != Framing::Close;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    let te_trailers = headers::each_end_to_end(resp.headers, |h| {
        if chunked && h.name.eq_ignore_ascii_case("content-length") {
            return;
        }
        // Names lowercased, as hyper's server writes them.
        out.extend(h.name.bytes().map(|b| b.to_ascii_lowercase()));
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    });
    if te_trailers {
        out.extend_from_slice(b"te: trailers\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&crate::conn::http_date());
        out.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(Parsed {
        status,
        framing,
        upstream_keeps,
        keep,
        head_len,
    }))
}

/// The request line and headers, as hyper's client would write them.
fn request_head(req: &http::request::Parts) -> Vec<u8> {
    let mut h = Vec::with_capacity(256);
    h.extend_from_slice(req.method.as_str().as_bytes());
    h.push(b' ');
    h.extend_from_slice(
        req.uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    h.extend_from_slice(b" HTTP/1.1\r\n");
    put_headers(&mut h, &req.headers);
    h.extend_from_slice(b"\r\n");
    h
}

fn put_headers(h: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        h.extend_from_slice(name.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
}

async fn write_all_vectored(io: &mut TcpStream, a: &[u8], b: &[u8]) -> io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() || !b.is_empty() {
        let n = io
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

/// Where a response body ends, found while its bytes pass through unchanged.
#[derive(Debug)]
struct Body {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Until the connection ends.
    Close,
    /// A chunk-size line: its size so far, and whether an extension began.
    Size(u64, bool),
    SizeLf(u64),
    /// Bytes left of a chunk's data.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    LineStart,
    InLine,
    EndLf,
    Done,
}

impl Body {
    fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size(0, false),
            Framing::Close => State::Close,
        };
        Body { state }
    }

    fn done(&self) -> bool {
        self.state == State::Done
    }

    fn finish(&mut self) {
        self.state = State::Done;
    }

    /// How many of `bytes` belong to the body; `Err` on a malformed chunk.
    fn advance(&mut self, bytes: &[u8]) -> Result<usize, ()> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                State::Done => return Ok(i),
                State::Close => return Ok(bytes.len()),
                State::Length(n) | State::Data(n) => {
                    let take = n.min((bytes.len() - i) as u64);
                    i += take as usize;
                    let left = n - take;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), _) => State::Length(left),
                        (_, 0) => State::DataCr,
                        _ => State::Data(left),
                    };
                    continue;
                }
                State::Size(n, false) if b.is_ascii_hexdigit() => {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    State::Size(n.checked_mul(16).ok_or(())? + d, false)
                }
                State::Size(n, _) if b == b'\r' => State::SizeLf(n),
                State::Size(n, _) | State::SizeLf(n) if b == b'\n' => {
                    if n == 0 {
                        State::LineStart
                    } else {
                        State::Data(n)
                    }
                }
                State::Size(n, _) if matches!(b, b';' | b' ' | b'\t') => State::Size(n, true),
                State::Size(n, true) => State::Size(n, true),
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataCr | State::DataLf if b == b'\n' => State::Size(0, false),
                State::LineStart if b == b'\r' => State::EndLf,
                State::LineStart | State::EndLf if b == b'\n' => {
                    i += 1;
                    self.state = State::Done;
                    return Ok(i);
                }
                State::LineStart | State::InLine if b == b'\n' => State::LineStart,
                State::LineStart | State::InLine => State::InLine,
                _ => return Err(()),
            };
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_len(framing: Framing, pieces: &[&str]) -> Result<(usize, bool), ()> {
        let mut b = Body::new(framing);
        let mut total = 0;
        for p in pieces {
            let n = b.advance(p.as_bytes())?;
            total += n;
            if n < p.len() {
                break;
            }
        }
        Ok((total, b.done()))
    }

    #[test]
    fn chunked_bodies_end_where_their_last_chunk_and_trailers_end() {
        let whole = "5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            body_len(Framing::Chunked, &[whole]),
            Ok((whole.len(), true))
        );
        assert_eq!(
            body_len(Framing::Chunked, &[whole, "GET / HTTP/1.1"]),
            Ok((whole.len(), true))
        );
        // Split anywhere, extensions and trailers.
        let with = "a;x=1\r\n0123456789\r\n0\r\nx-sum: 7\r\n\r\n";
        for cut in 0..with.len() {
            let (a, b) = with.split_at(cut);
            assert_eq!(
                body_len(Framing::Chunked, &[a, b]),
                Ok((with.len(), true)),
                "{cut}"
            );
        }
        assert_eq!(body_len(Framing::Chunked, &["5\r\nhel"]), Ok((6, false)));
        assert!(body_len(Framing::Chunked, &["zz\r\n"]).is_err());
        assert!(body_len(Framing::Chunked, &["2\r\nabX"]).is_err());
    }

    #[test]
    fn length_bodies_end_at_their_length() {
        assert_eq!(body_len(Framing::Length(3), &["ab", "cdef"]), Ok((3, true)));
        assert_eq!(body_len(Framing::Length(0), &["x"]), Ok((0, true)));
        assert_eq!(body_len(Framing::Close, &["abc"]), Ok((3, false)));
    }
}

//! The fast path's socket writer: the response head, then each piece of the
//! stream as it comes — shared, pre-framed chunks, several in one `writev` —
//! while watching for the client leaving or falling behind.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::hub::{Direct, Feed};
use crate::ingest::Accepted;
use crate::sse::EventStream;

/// Most pieces written in one `writev`.
const BATCH: usize = 8;
/// Pieces are taken from the subscriber's queue only while fewer bytes than this
/// wait to be written, so a client that stopped reading leaves its events in the
/// queue, where `sse.subscriber_queue_bytes` bounds them (README, "Memory").
const UNWRITTEN_BYTES: usize = 64 * 1024;
/// Write rounds before the task yields, so one busy stream cannot hold a worker.
const ROUNDS_PER_POLL: usize = 4;

/// The status line and headers. `framing` stands for the headers hookcast sets
/// itself; with `closing`, it says `connection: close` in place of the response's own.
pub(super) fn head(parts: &http::response::Parts, framing: &[u8], closing: bool) -> Bytes {
    let mut h = Vec::with_capacity(256);
    head_into(&mut h, parts, framing, closing);
    Bytes::from(h)
}

/// [`head`], written at the end of `h`. A `date` is added unless the response
/// has its own (one passed on from the upstream), as hyper does.
fn head_into(h: &mut Vec<u8>, parts: &http::response::Parts, framing: &[u8], closing: bool) {
    status_line(h, parts.status);
    let mut dated = false;
    for (name, value) in &parts.headers {
        if [header::CONTENT_LENGTH, header::TRANSFER_ENCODING].contains(name)
            || (closing && name == header::CONNECTION)
        {
            continue;
        }
        dated |= name == header::DATE;
        header_line(h, name.as_str(), value.as_bytes());
    }
    head_end(h, dated, framing);
}

fn status_line(h: &mut Vec<u8>, status: http::StatusCode) {
    h.extend_from_slice(b"HTTP/1.1 ");
    h.extend_from_slice(status.as_str().as_bytes());
    h.push(b' ');
    h.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
    h.extend_from_slice(b"\r\n");
}

fn header_line(h: &mut Vec<u8>, name: &str, value: &[u8]) {
    h.extend_from_slice(name.as_bytes());
    h.extend_from_slice(b": ");
    h.extend_from_slice(value);
    h.extend_from_slice(b"\r\n");
}

/// The `date` unless `dated`, the framing headers and the blank line.
fn head_end(h: &mut Vec<u8>, dated: bool, framing: &[u8]) {
    if !dated {
        h.extend_from_slice(b"date: ");
        h.extend_from_slice(&crate::conn::http_date());
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(framing);
    h.extend_from_slice(b"\r\n");
}

/// An accepted webhook's answer, written as [`respond`] writes
/// [`Accepted::into_response`]'s, without building it.
pub(super) async fn accepted(io: &mut TcpStream, a: &Accepted, keep: bool) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut out = Vec::with_capacity(160 + a.json.len());
    status_line(&mut out, a.status);
    let (name, value) = Accepted::HEADER;
    header_line(&mut out, name.as_str(), value.as_bytes());
    head_end(&mut out, false, &length_framing(a.json.len() as u64, keep));
    out.extend_from_slice(a.json.as_bytes());
    io.write_all(&out).await
}

/// A response's head and its whole body, for an answer written at once.
pub(super) async fn collected(
    resp: http::Response<crate::reply::Body>,
) -> (http::response::Parts, Bytes) {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (parts, bytes)
}

/// A whole answer with a `content-length`, in one write; unless `keep`, it
/// says the connection closes after it.
pub(super) async fn whole(
    io: &mut TcpStream,
    parts: &http::response::Parts,
    body: &[u8],
    keep: bool,
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut out = Vec::with_capacity(256 + body.len());
    head_into(
        &mut out,
        parts,
        &length_framing(body.len() as u64, keep),
        !keep,
    );
    out.extend_from_slice(body);
    io.write_all(&out).await
}

/// `content-length`, and `connection: close` unless `keep`.
fn length_framing(len: u64, keep: bool) -> Framing {
    let mut framing = Framing::new();
    framing.push(b"content-length: ");
    framing.push(itoa::Buffer::new().format(len).as_bytes());
    framing.push(b"\r\n");
    if !keep {
        framing.push(b"connection: close\r\n");
    }
    framing
}

/// The framing headers of an answer, on the stack.
struct Framing {
    bytes: [u8; 64],
    len: usize,
}

impl Framing {
    fn new() -> Self {
        Framing {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn push(&mut self, b: &[u8]) {
        self.bytes[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
}

impl std::ops::Deref for Framing {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Bytes gathered before they are written, when a body comes in several frames.
const GATHER: usize = 16 * 1024;

/// Writes a response to an HTTP/1.1 request, framed as hyper frames it: a
/// `content-length` when the body's size is known, else chunks (trailers
/// dropped); no body for 204 and 304. Unless `keep`, it says the connection
/// closes after it. A body that is ready (every answer of hookcast's own) goes
/// out with its head in one write; one that waits (the upstream's) is
/// written as it comes. `Err`: the connection cannot go on, whether the
/// socket or the body failed.
pub(super) async fn respond(
    io: &mut TcpStream,
    resp: http::Response<crate::reply::Body>,
    keep: bool,
) -> io::Result<()> {
    use http_body::Body as _;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let (parts, mut body) = resp.into_parts();
    let close: &[u8] = if keep { b"" } else { b"connection: close\r\n" };
    let mut out = Vec::with_capacity(256);
    if matches!(
        parts.status,
        http::StatusCode::NO_CONTENT | http::StatusCode::NOT_MODIFIED
    ) || parts.status.is_informational()
    {
        head_into(&mut out, &parts, close, !keep);
        return io.write_all(&out).await;
    }
    let exact = body.size_hint().exact();
    match exact {
        Some(len) => head_into(&mut out, &parts, &length_framing(len, keep), !keep),
        None => {
            let mut framing = Framing::new();
            framing.push(b"transfer-encoding: chunked\r\n");
            framing.push(close);
            head_into(&mut out, &parts, &framing, !keep);
        }
    }
    let mut sent: u64 = 0;
    loop {
        // Polled once first: what is ready joins the bytes gathered so far.
        let polled =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    io.write_all(&out).await?;
                    out.clear();
                }
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if exact.is_none() {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        out.extend_from_slice(&data);
        if exact.is_none() {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= GATHER {
            io.write_all(&out).await?;
            out.clear();
        }
    }
    if exact.is_none() {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        io.write_all(&out).await?;
    }
    match exact {
        Some(len) if len != sent => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(()),
    }
}

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SocketEnd {
    /// The stream ended and its last bytes were written.
    Finished,
    /// The client went away.
    Gone,
    /// The client fell behind and was cut: no last chunk, so it sees an error.
    Cut,
}

/// Writes one stream's pieces straight to the socket: from the stream's task,
/// or, while that task is parked with nothing unwritten, from the fan-out
/// ([`Shared`]'s [`Direct`]).
#[derive(Debug)]
pub(super) struct Writer {
    shared: Arc<Shared>,
    /// Set once the stream has ended; what is left unwritten is the last of it.
    ending: Option<SocketEnd>,
}

/// The socket and what is left to write on it, shared by the stream's task and
/// the fan-out. The task holds the lock for each of its polls; the fan-out only
/// tries it, and leaves the stream to its task when it is taken.
#[derive(Debug)]
pub(super) struct Shared {
    chunked: bool,
    /// Whether the stream feeds `hookcast_publish_to_write_seconds`.
    sampled: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Taken when the connection is given back.
    io: Option<TcpStream>,
    out: Unwritten,
    /// The task is parked waiting for events with nothing unwritten and
    /// nothing of its own to send first: the fan-out may write.
    armed: bool,
    /// When the fan-out last wrote, for the task's heartbeat.
    wrote_at: Option<tokio::time::Instant>,
    /// Publish time of the oldest event the fan-out left unwritten (sampled streams).
    unwritten_since: Option<std::time::Instant>,
}

/// The pieces of one `writev`, the first from `offset` on.
struct Batch {
    /// `Option`s, so that an empty slot costs nothing to make or drop.
    pieces: [Option<Bytes>; BATCH],
    len: usize,
    /// Their length, the first counted whole.
    bytes: usize,
}

impl Batch {
    fn new() -> Self {
        Batch {
            pieces: [const { None }; BATCH],
            len: 0,
            bytes: 0,
        }
    }

    fn push(&mut self, piece: Bytes) {
        self.bytes += piece.len();
        self.pieces[self.len] = Some(piece);
        self.len += 1;
    }

    fn has_room(&self) -> bool {
        self.len < BATCH && self.bytes < UNWRITTEN_BYTES
    }

    fn clear(&mut self) {
        self.pieces[..self.len].fill(None);
        self.len = 0;
        self.bytes = 0;
    }
}

/// Pieces taken but not yet written, the first from `offset` on: the
/// response head, and what a full socket did not take. Empty, with nothing
/// allocated, while the socket keeps up: pieces are gathered on the stack
/// ([`Batch`]) and only what is left unwritten is kept here.
#[derive(Debug)]
struct Unwritten {
    left: Vec<Bytes>,
    offset: usize,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Writer {
    /// A writer whose first piece is the response head.
    pub(super) fn new(io: TcpStream, chunked: bool, sampled: bool, head: Bytes) -> Self {
        let state = State {
            io: Some(io),
            out: Unwritten {
                left: vec![head],
                offset: 0,
            },
            armed: false,
            wrote_at: None,
            unwritten_since: None,
        };
        Writer {
            shared: Arc::new(Shared {
                chunked,
                sampled,
                state: Mutex::new(state),
            }),
            ending: None,
        }
    }

    /// Whether the body is sent in HTTP/1.1 chunks.
    pub(super) fn chunked(&self) -> bool {
        self.shared.chunked
    }

    /// What the fan-out writes through; see [`EventStream::deliver_through`].
    pub(super) fn direct(&self) -> Arc<dyn Direct> {
        self.shared.clone()
    }

    /// The connection, given back after a clean end; the fan-out no longer
    /// writes to it (the stream is not armed once it ended).
    pub(super) fn take_io(&mut self) -> Option<TcpStream> {
        let mut st = lock(&self.shared.state);
        st.armed = false;
        st.io.take()
    }

    /// Shuts the socket's write side down, after a clean end that closes it.
    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) {
        if let Some(io) = lock(&self.shared.state).io.as_mut() {
            let _ = Pin::new(io).poll_shutdown(cx);
        }
    }

    /// Writes what `body` yields until the stream ends, the client leaves or
    /// falls behind. Whatever ends the stream, `body` has recorded why (see
    /// [`EventStream::end`]); a client that leaves is recorded when it is dropped.
    pub(super) fn poll_run(
        &mut self,
        body: &mut EventStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<SocketEnd>> {
        let chunked = self.shared.chunked;
        let mut st = lock(&self.shared.state);
        // Held for the whole poll: the fan-out leaves the stream to its task
        // meanwhile, and takes it again only once armed below.
        st.armed = false;
        if let Some(at) = st.wrote_at.take() {
            body.wrote_elsewhere(at, st.unwritten_since.take());
        }
        let st = &mut *st;
        let Some(io) = st.io.as_ref() else {
            return Poll::Ready(Ok(SocketEnd::Gone));
        };
        for _ in 0..ROUNDS_PER_POLL {
            if st.out.left.is_empty()
                && let Some(stop) = self.ending
            {
                return Poll::Ready(Ok(stop));
            }
            // Once the stream ended cleanly, what the client sends is its next
            // request, for hyper: it is no longer read and dropped here.
            if self.ending != Some(SocketEnd::Finished) && peer_gone(io, cx) {
                return Poll::Ready(Ok(SocketEnd::Gone));
            }
            let mut batch = Batch::new();
            for piece in std::mem::take(&mut st.out.left) {
                batch.push(piece);
            }
            if self.ending.is_none() {
                fill(&mut self.ending, chunked, body, cx, &mut batch);
            }
            if batch.len == 0 {
                return match self.ending {
                    Some(end) => Poll::Ready(Ok(end)),
                    None => {
                        // Parked on the queue (its waker registered), nothing
                        // unwritten: the next events may be written by the
                        // publish that queues them.
                        st.armed = body.direct_ok();
                        Poll::Pending
                    }
                };
            }
            match io.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    st.out.keep(&mut batch, 0);
                    // The client is not reading; the hub may cut it meanwhile.
                    if body.poll_cut(cx).is_ready() {
                        return Poll::Ready(Ok(SocketEnd::Cut));
                    }
                    return Poll::Pending;
                }
            }
            match st.out.write(io, &mut batch) {
                Ok(()) => {
                    if st.out.left.is_empty() {
                        body.written();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => st.out.keep(&mut batch, 0),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Writer {
    /// Closes the socket now, as dropping it did, rather than when the hub lets
    /// go of [`Shared`].
    fn drop(&mut self) {
        drop(self.take_io());
    }
}

/// Takes the pieces the stream has ready, while the batch has room.
fn fill(
    ending: &mut Option<SocketEnd>,
    chunked: bool,
    body: &mut EventStream,
    cx: &mut Context<'_>,
    batch: &mut Batch,
) {
    while batch.has_room() {
        match body.poll_piece(cx) {
            Poll::Ready(Some(Ok(piece))) => batch.push(if chunked {
                piece.chunk()
            } else {
                piece.frame()
            }),
            Poll::Ready(Some(Err(_slow))) => {
                // The connection ends without the last chunk, so the client
                // sees an error, not a clean end.
                batch.clear();
                *ending = Some(SocketEnd::Cut);
                return;
            }
            Poll::Ready(None) => {
                if chunked {
                    batch.push(Bytes::from_static(b"0\r\n\r\n"));
                }
                *ending = Some(SocketEnd::Finished);
                return;
            }
            Poll::Pending => return,
        }
    }
}

impl Unwritten {
    /// Writes `batch` in one system call; what the socket did not take is kept.
    fn write(&mut self, io: &TcpStream, batch: &mut Batch) -> io::Result<()> {
        let mut slices = [IoSlice::new(&[]); BATCH];
        for (i, piece) in batch.pieces[..batch.len].iter().flatten().enumerate() {
            let from = if i == 0 { self.offset } else { 0 };
            slices[i] = IoSlice::new(&piece[from..]);
        }
        // One piece goes by `send`: the kernel's `writev` path costs more per call.
        let mut written = match batch.len {
            1 => io.try_write(&slices[0])?,
            n => io.try_write_vectored(&slices[..n])?,
        };
        let mut done = 0;
        for piece in batch.pieces[..batch.len].iter().flatten() {
            let left = piece.len() - if done == 0 { self.offset } else { 0 };
            if written < left {
                break;
            }
            written -= left;
            done += 1;
            self.offset = 0;
        }
        self.offset += written;
        self.keep(batch, done);
        Ok(())
    }

    /// Keeps the batch's pieces from `from` on, unwritten, for the next round.
    fn keep(&mut self, batch: &mut Batch, from: usize) {
        self.left.extend(
            batch.pieces[from..batch.len]
                .iter_mut()
                .flat_map(Option::take),
        );
        batch.clear();
    }
}

impl Direct for Shared {
    /// One event a subscriber, at most a few rounds: the fan-out's deliveries
    /// share its task with many others. Whatever is left, the task writes.
    fn deliver(&self, feed: &mut Feed<'_>) -> bool {
        let Ok(mut st) = self.state.try_lock() else {
            return false;
        };
        if !st.armed {
            return false;
        }
        let st = &mut *st;
        let Some(io) = st.io.as_ref() else {
            return false;
        };
        for _ in 0..ROUNDS_PER_POLL {
            let mut batch = Batch::new();
            let mut oldest = None;
            while batch.has_room()
                && let Some(ev) = feed.take()
            {
                oldest.get_or_insert(ev.at);
                batch.push(if self.chunked {
                    ev.chunk.wire().clone()
                } else {
                    ev.frame()
                });
            }
            if batch.len == 0 {
                // Parked, or closed: the task ends the stream.
                return feed.parked();
            }
            st.wrote_at = Some(tokio::time::Instant::now());
            let oldest = oldest.filter(|_| self.sampled);
            match st.out.write(io, &mut batch) {
                Ok(()) if st.out.left.is_empty() => {
                    if let Some(at) = oldest {
                        feed.metrics().publish_to_write(at.elapsed());
                    }
                    // Parked with everything written: later pushes deliver again.
                    if feed.parked() {
                        return true;
                    }
                }
                // A full socket, or an error the task meets again on its own
                // write: either way, the task takes over what is left.
                Ok(()) | Err(_) => {
                    st.out.keep(&mut batch, 0);
                    st.unwritten_since = oldest;
                    break;
                }
            }
        }
        st.armed = false;
        feed.unpark();
        false
    }
}

/// Whether the client closed the connection. Stray bytes after the request
/// are read and dropped: nothing more is served on this connection.
fn peer_gone(io: &TcpStream, cx: &mut Context<'_>) -> bool {
    for _ in 0..8 {
        match io.poll_read_ready(cx) {
            Poll::Pending => return false,
            Poll::Ready(Err(_)) => return true,
            Poll::Ready(Ok(())) => {}
        }
        let mut scratch = [0u8; 64];
        match io.try_read(&mut scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return true,
        }
    }
    cx.waker().wake_by_ref();
    false
}

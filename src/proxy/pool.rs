//! Kept-alive HTTP/1.1 connections to the one upstream. hyper-util's pooled
//! client serves any number of hosts: it hashes a (scheme, authority) key twice
//! per request and spawns a task per response to give the connection back. One
//! upstream needs neither: a list of connections, the last used taken first.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::BytesMut;

use http::uri::Authority;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::Outgoing;

/// Largest read buffer kept with an idle raw connection.
const KEPT_BUFFER: usize = 8 * 1024;

/// Why the upstream gave no response.
#[derive(Debug)]
pub enum Failure {
    /// No connection: refused, unreachable, unresolvable, or not within `connect_timeout`.
    Connect(std::io::Error),
    /// The connection failed, or the upstream closed it, before a response head.
    Http(hyper::Error),
    /// The same, on the plain HTTP/1.1 path ([`super::h1`]).
    Io(std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(_) => f.write_str("tcp connect error"),
            Failure::Http(_) | Failure::Io(_) => f.write_str("upstream connection error"),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Connect(e) => Some(e),
            Failure::Http(e) => Some(e),
            Failure::Io(e) => Some(e),
        }
    }
}

struct Idle {
    tx: SendRequest<Outgoing>,
    since: Instant,
}

impl Idle {
    /// Closed, or idle (no response passing) for `timeout` since it was given back.
    fn expired(&self, now: Instant, timeout: Duration) -> bool {
        self.tx.is_closed() || (self.tx.is_ready() && now - self.since >= timeout)
    }
}

/// A connection of the plain path, between two exchanges, with the buffer its
/// responses are read into (kept, as hyper's pooled connections keep theirs:
/// a 4 KiB allocation per request costs more than a small one).
struct RawIdle {
    io: TcpStream,
    buf: BytesMut,
    since: Instant,
}

impl RawIdle {
    fn expired(&self, now: Instant, timeout: Duration) -> bool {
        now - self.since >= timeout
    }
}

struct Inner {
    authority: Authority,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// Connections given back after a response head, last used last. One may
    /// still be passing its response body; `take` skips it until it is done.
    idle: Mutex<Vec<Idle>>,
    /// Connections of the plain path ([`super::h1`]), between two exchanges.
    raw: Mutex<Vec<RawIdle>>,
    /// Whether the task that closes connections idle too long runs.
    reaping: std::sync::atomic::AtomicBool,
}

/// The upstream's connections; cloned, it shares them.
#[derive(Clone)]
pub(super) struct Pool(Arc<Inner>);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("authority", &self.0.authority)
            .field("max_idle", &self.0.max_idle)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(super) fn new(
        authority: Authority,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        Pool(Arc::new(Inner {
            authority,
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
            raw: Mutex::new(Vec::new()),
            reaping: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Sends `req` (origin-form target, `Host` set) on a kept-alive connection, or
    /// a new one. A request that a kept-alive connection could not take (closed
    /// by the upstream meanwhile) goes to another one, as nothing of it was sent.
    pub(super) async fn send(
        &self,
        mut req: Request<Outgoing>,
    ) -> Result<Response<Incoming>, Failure> {
        loop {
            let (mut tx, reused) = match self.take() {
                Some(tx) => (tx, true),
                // Boxed: connecting (a lookup, a handshake) is rare, and inline
                // its state would make every request's future, moved by hyper
                // at each step, several times larger.
                None => (Box::pin(self.connect()).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    // A switched connection is the tunnel's now.
                    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                        self.give_back(tx);
                    }
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(again) if reused => req = again,
                    _ => return Err(Failure::Http(e.into_error())),
                },
            }
        }
    }

    /// The last connection given back that can take a request now.
    fn take(&self) -> Option<SendRequest<Outgoing>> {
        let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let e = &idle[i];
            if e.expired(now, self.0.idle_timeout) {
                idle.swap_remove(i);
            } else if e.tx.is_ready() {
                return Some(idle.swap_remove(i).tx);
            }
        }
        None
    }

    /// Keeps `tx` for a later request, within `pool_max_idle_per_host`; dropped
    /// instead, its connection closes once its response is through.
    fn give_back(&self, tx: SendRequest<Outgoing>) {
        if self.0.max_idle == 0 {
            return;
        }
        {
            let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() >= self.0.max_idle {
                idle.retain(|e| !e.tx.is_closed());
                if idle.len() >= self.0.max_idle {
                    return;
                }
            }
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
        self.reap_later();
    }

    /// Starts the task that closes connections idle too long, once.
    fn reap_later(&self) {
        if !self
            .0
            .reaping
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tokio::spawn(reap(Arc::downgrade(&self.0)));
        }
    }

    /// The last raw connection given back that is still open, with its
    /// (empty) read buffer, for [`super::h1`].
    pub(super) fn take_raw(&self) -> Option<(TcpStream, BytesMut)> {
        let mut raw = self.0.raw.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while let Some(e) = raw.pop() {
            if !e.expired(now, self.0.idle_timeout) && still_open(&e.io) {
                return Some((e.io, e.buf));
            }
        }
        None
    }

    /// Keeps a raw connection whose exchange ended cleanly, within
    /// `pool_max_idle_per_host`; its read buffer too, unless a large body grew it.
    pub(super) fn give_back_raw(&self, io: TcpStream, mut buf: BytesMut) {
        if self.0.max_idle == 0 {
            return;
        }
        buf.clear();
        if buf.capacity() > KEPT_BUFFER {
            buf = BytesMut::new();
        }
        {
            let mut raw = self.0.raw.lock().unwrap_or_else(|p| p.into_inner());
            if raw.len() >= self.0.max_idle {
                return;
            }
            raw.push(RawIdle {
                io,
                buf,
                since: Instant::now(),
            });
        }
        self.reap_later();
    }

    async fn connect(&self) -> Result<SendRequest<Outgoing>, Failure> {
        let stream = self.dial().await?;
        let (tx, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }

    /// A new TCP connection to the upstream, within `connect_timeout`.
    pub(super) async fn dial(&self) -> Result<TcpStream, Failure> {
        let host = self.0.authority.host();
        let port = self.0.authority.port_u16().unwrap_or(80);
        // A bracketed IPv6 literal is looked up without its brackets.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let stream =
            match tokio::time::timeout(self.0.connect_timeout, TcpStream::connect((host, port)))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(Failure::Connect(e)),
                Err(_) => {
                    return Err(Failure::Connect(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no connection within upstream.connect_timeout",
                    )));
                }
            };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Whether an idle connection is still open: anything readable on it (its
/// close, or bytes no request asked for) rules it out. Readiness is looked at
/// first, so a quiet connection costs no system call.
fn still_open(io: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if io.poll_read_ready(&mut cx).is_pending() {
        return true;
    }
    let mut byte = [0u8; 1];
    matches!(io.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Closes connections idle longer than `pool_idle_timeout`, until the pool is dropped.
async fn reap(pool: Weak<Inner>) {
    let every = pool
        .upgrade()
        .map_or(Duration::from_secs(1), |p| p.idle_timeout)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        pool.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e| !e.expired(now, pool.idle_timeout));
        pool.raw
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e| !e.expired(now, pool.idle_timeout));
    }
}

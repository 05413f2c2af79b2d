//! The accept loop: event streams, plain webhooks and plain proxied requests
//! over HTTP/1.x straight on the socket ([`fast`]), everything else through
//! hyper (HTTP/1.1 and h2c), and the
//! three-step graceful shutdown (stop accepting, end streams, drain under a deadline).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tracing::Instrument;

use crate::accept::Acceptor;
use crate::admin;
use crate::app::{App, Live};
use crate::config::Config;
use crate::conn::{ClientAddr, ConnectionCut};
use crate::fast::{self, Prefixed, Sniffed};
use crate::hub::Hub;
use crate::reload;
use crate::service;

/// Largest request head (request line and headers) read; beyond it hyper
/// answers 431. Also the bound of an HTTP/2 header list.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How often expired history, idle topics and old dedupe keys are collected.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// What [`serve`] runs besides the public listener.
#[derive(Debug, Default)]
pub struct Options {
    /// The admin listener, bound by the caller to `admin.listen`.
    pub admin: Option<TcpListener>,
    /// Where the config came from; with it, SIGHUP and file changes reload it.
    pub reload: Option<reload::Source>,
}

/// Serves on `listener` until `shutdown` resolves, then drains within
/// `config.shutdown_grace` and returns. No admin listener, no reload.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(listener, config, shutdown, Options::default()).await
}

/// [`run`] with an admin listener and reloads.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
    options: Options,
) -> std::io::Result<()> {
    let hub = Hub::new(crate::broker::hub_limits(&config));
    let header_timeout = config.limits.header_read_timeout;
    let max_connections = config.limits.max_connections;
    let live = Live::new(App::new(config, hub.clone()));

    let collector = tokio::spawn(collect(Arc::downgrade(&hub)));
    // Dropped (aborted) when `serve` returns, so they outlive the drain.
    let _admin = options
        .admin
        .map(|l| AbortOnDrop(tokio::spawn(admin::serve(l, live.clone()))));
    let _reload = options
        .reload
        .map(|s| AbortOnDrop(tokio::spawn(reload::watch(live.clone(), s))));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let builder = Arc::new(builder);
    // Each open connection holds a permit; none left means new ones are closed at
    // once, which an EventSource retries (a 503 would make it give up).
    let permits = max_connections.map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    let mut at_capacity = false;
    let graceful = GracefulShutdown::new();
    // Fired when shutdown_grace has passed, to drop the connections still open.
    let kill = Arc::new(Notify::new());
    // Fired when draining begins, to close kept-alive connections of the plain
    // path between requests (hyper's graceful shutdown does that for its own).
    let draining = Arc::new(Notify::new());
    let direct = Arc::new(OpenCount::default());
    let common = Arc::new(Common {
        live: live.clone(),
        builder,
        direct: direct.clone(),
        kill: kill.clone(),
        draining: draining.clone(),
        header_timeout,
    });
    let all = Arc::new(OpenCount {
        open: live.connections.clone(),
        none_left: Notify::new(),
    });
    tracing::info!(addr = %listener.local_addr()?, "listening");

    let mut shutdown = std::pin::pin!(shutdown);
    let broker = live.load().broker.clone();
    let mut fatal = std::pin::pin!(broker.fatal());
    let mut acceptor = Acceptor::new("public");
    loop {
        let (stream, peer) = tokio::select! {
            conn = acceptor.accept(&listener) => conn,
            () = &mut shutdown => break,
            why = &mut fatal => {
                collector.abort();
                broker.stop();
                return Err(std::io::Error::other(why));
            }
        };
        let permit = match permits.as_ref().map(|p| p.clone().try_acquire_owned()) {
            Some(Err(_)) => {
                if !at_capacity {
                    tracing::warn!(
                        "limits.max_connections reached; closing new connections until some end"
                    );
                }
                at_capacity = true;
                drop(stream);
                continue;
            }
            Some(Ok(permit)) => Some(permit),
            None => None,
        };
        at_capacity = false;
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            common: common.clone(),
            _open: all.enter(),
            watcher: graceful.watcher(),
            peer,
            _permit: permit,
        };
        tokio::spawn(
            conn.serve(stream)
                .instrument(tracing::debug_span!("conn", peer = %peer)),
        );
    }

    // In this order (README, "Operate", Shutdown): not ready, stop accepting, end
    // streams, let requests finish.
    live.drain();
    draining.notify_waiters();
    let started = Instant::now();
    let grace = live.load().config.shutdown_grace;
    drop(listener);
    let streams = hub.close_all();
    tracing::info!(
        streams,
        connections = all.count(),
        grace_ms = grace.as_millis() as u64,
        "draining: readyz 503, listener closed, streams told to reconnect"
    );
    tokio::select! {
        ((), ()) = async { tokio::join!(graceful.shutdown(), direct.all_closed()) } => {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                connections_cut = 0,
                "drained"
            );
        }
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                connections_cut = all.count(),
                streams_cut = hub.subscriber_count(),
                "shutdown_grace passed; cutting the connections still open"
            );
            kill.notify_waiters();
        }
    }
    collector.abort();
    live.load().broker.stop();
    Ok(())
}

/// What every connection is served with, shared: an open stream keeps its
/// connection's [`Conn`] for its whole life, so this is one pointer there.
struct Common {
    live: Arc<Live>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// Connections served by [`fast`], for the drain to wait on.
    direct: Arc<OpenCount>,
    /// Fired when `shutdown_grace` has passed.
    kill: Arc<Notify>,
    /// Fired when draining begins.
    draining: Arc<Notify>,
    header_timeout: Duration,
}

/// One accepted connection and what serving it needs.
struct Conn {
    common: Arc<Common>,
    /// Counted in every open connection, for the drain's log.
    _open: OpenGuard,
    watcher: Watcher,
    peer: std::net::SocketAddr,
    /// A place under `limits.max_connections`, held while the connection lives.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Conn {
    /// Event streams and plain requests over HTTP/1.x are served by [`fast`];
    /// everything else by hyper.
    async fn serve(self, mut stream: TcpStream) {
        let sniffed = {
            // Scoped: a stream keeps its task for hours; this config need not stay.
            let app = self.common.live.load();
            let is_stream =
                |path: &str| path == app.config.sse.path || app.config.streams.serves(path);
            // The one `header_read_timeout` of the first head: a head hyper
            // serves is read whole within it too (see `fast::sniff`).
            let sniff = fast::sniff(&mut stream, &is_stream, MAX_HEAD_BYTES);
            tokio::time::timeout(self.common.header_timeout, sniff).await
        };
        match sniffed {
            Ok(Ok(Sniffed::Stream(mut req))) => {
                req.extensions.insert(ClientAddr(self.peer));
                let open = self.common.direct.enter();
                // Opening is boxed and done before streaming, so its state
                // (authorization may wait on the network) is not kept per stream.
                let app = self.common.live.load();
                let serving = tokio::select! {
                    serving = Box::pin(fast::open(&app, stream, req)) => serving,
                    () = self.common.kill.notified() => return,
                };
                // A stream lives for hours: it gets a task of its own, sized for
                // what streaming keeps, not for this one's sniffing and opening.
                // Its kill signal is taken now, so none is missed in between.
                let kill = Box::pin(self.common.kill.clone().notified_owned());
                let streaming = Streaming {
                    serving,
                    open: Some(open),
                    kill,
                    conn: Some(self),
                    then: None,
                };
                tokio::spawn(streaming.in_current_span());
            }
            Ok(Ok(Sniffed::Other(prefix))) => {
                // Plain webhooks and proxied requests are served on the socket
                // while they come; the first other request goes to hyper. Boxed:
                // a stream's task need not be sized for either.
                let handoff = {
                    let _open = self.common.direct.enter();
                    let plain = fast::plain::serve(
                        &self.common.live,
                        stream,
                        prefix,
                        self.peer,
                        self.common.header_timeout,
                        &self.common.draining,
                    );
                    tokio::select! {
                        handoff = Box::pin(plain) => handoff,
                        () = self.common.kill.notified() => return,
                    }
                };
                if let fast::plain::Handoff::Hyper(prefix, stream) = handoff {
                    let io = Prefixed::new(prefix, stream);
                    Box::pin(self.serve_hyper(io)).await;
                }
            }
            Ok(Ok(Sniffed::Gone)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "reading the request failed"),
            Err(_) => tracing::debug!("no request head within header_read_timeout"),
        }
    }

    async fn serve_hyper(self, io: Prefixed) {
        let live = self.common.live.clone();
        let peer = self.peer;
        let cut = ConnectionCut(Arc::new(Notify::new()));
        let svc = service_fn({
            let conn = service::Connection {
                cut: cut.clone(),
                peer: ClientAddr(peer),
            };
            move |req: hyper::Request<hyper::body::Incoming>| {
                // Each request takes the config current when it arrives.
                service::handle(live.load(), req, &conn)
            }
        });
        let conn = self
            .common
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned();
        let conn = self.watcher.watch(conn);
        tokio::select! {
            result = conn => if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            },
            () = cut.0.notified() => tracing::debug!("connection cut: its subscriber fell behind"),
            () = self.common.kill.notified() => {}
        }
    }
}

/// An open stream on the fast path, served until it ends (or `shutdown_grace`
/// cuts it); a connection kept open after it goes on to hyper. Written out by
/// hand: an `async fn` would hold its arguments twice, and every stream keeps
/// this for its whole life.
struct Streaming {
    serving: fast::Serving,
    /// Counted among the fast path's open connections while streaming.
    open: Option<OpenGuard>,
    /// Boxed to be polled in place.
    kill: Pin<Box<OwnedNotified>>,
    /// Taken to serve what comes after the stream.
    conn: Option<Conn>,
    /// Hyper, serving the connection after a stream that ended cleanly.
    then: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Future for Streaming {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.kill.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if this.then.is_none() {
            let kept = ready!(Pin::new(&mut this.serving).poll(cx));
            this.open = None;
            let (Some(stream), Some(conn)) = (kept, this.conn.take()) else {
                return Poll::Ready(());
            };
            // The stream ended cleanly: the connection goes on, to hyper.
            let io = Prefixed::new(bytes::Bytes::new(), stream);
            this.then = Some(Box::pin(conn.serve_hyper(io)));
        }
        match &mut this.then {
            Some(then) => then.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Open connections served by [`fast`], so the drain can wait for them.
#[derive(Debug, Default)]
struct OpenCount {
    open: Arc<AtomicUsize>,
    none_left: Notify,
}

struct OpenGuard(Arc<OpenCount>);

impl OpenCount {
    fn enter(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.none_left.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

async fn collect(hub: std::sync::Weak<Hub>) {
    let mut tick = tokio::time::interval(COLLECT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.collect(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task's memory is its future plus tokio's header and trailer (about
    /// 100 bytes), rounded up to 128 bytes (the cell is cache-line aligned): an
    /// idle stream's task stays within 640 bytes while its future is under 536
    /// (520 now; at 568 it took a 768-byte cell).
    #[test]
    fn a_stream_task_stays_small() {
        let size = std::mem::size_of::<tracing::instrument::Instrumented<Streaming>>();
        assert!(size <= 536, "the stream task's future grew to {size} bytes");
    }
}

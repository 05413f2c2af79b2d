//! HTTP/1.x event streams served straight on the socket.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for the life of each
//! connection; an idle event stream needs neither. So the accept loop reads the
//! request head itself ([`head`]): a `GET {sse.path}` over HTTP/1.x is answered
//! here, and each event's chunk — one buffer, framed once at publish and shared
//! by every subscriber — is written straight to the socket ([`writer`]), queued
//! pieces together in one `writev`. Plain HTTP/1.1 webhooks and proxied
//! requests are served on the socket too ([`plain`]). Any other request, and
//! any head not plainly valid, goes to hyper with the bytes already read, so
//! hyper gives its usual answers. The stream's life (its end, what is counted, what is released) is
//! the [`EventStream`]'s own, the same as under hyper.

mod head;
pub mod plain;
mod writer;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header;
use http::{Response, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::Instrument;

pub use head::{Head, Prefixed, Sniffed, classify, head_incomplete, sniff};

use crate::app::App;
use crate::conn::RequestLog;
use crate::reply::Body;
use crate::sse::{Chunk, EventStream};
use crate::subscribe::{self, Subscribed};
use writer::{SocketEnd, Writer};

/// Opens a sniffed stream request on `io` (authorization may wait on the
/// network) and returns what serves it. That is a future written out by hand,
/// not an `async fn`, so that what every open stream keeps is only its writer,
/// its event stream and its span.
pub async fn open(app: &App, io: TcpStream, req: http::request::Parts) -> Serving {
    let log = RequestLog::new(&req.method, req.uri.path());
    let version = req.version;
    let subscribed = subscribe::handle(app, &req)
        .instrument(log.span.clone())
        .await;
    drop(req);
    match subscribed {
        Subscribed::Stream(resp) => {
            let status = resp.status().as_u16();
            let (parts, body) = resp.into_parts();
            // HTTP/1.0 has no chunks: its body ends with the connection.
            let chunked = version == Version::HTTP_11;
            let head = if chunked {
                writer::head(&parts, b"transfer-encoding: chunked\r\n", false)
            } else {
                writer::head(&parts, b"connection: close\r\n", true)
            };
            let writer = Writer::new(io, chunked, body.is_sampled(), head);
            body.deliver_through(writer.direct());
            Serving::Stream(StreamTask {
                writer,
                body,
                log,
                status,
            })
        }
        Subscribed::Other(resp) => {
            let status = resp.status().as_u16();
            let span = log.span.clone();
            let run = async move {
                let outcome = match answer(io, resp, version).await {
                    Ok(()) => "answered",
                    Err(_) => "write failed",
                };
                log.answered(status, Some(outcome));
            };
            Serving::Other(Box::pin(run.instrument(span)))
        }
    }
}

/// The future of one stream request; see [`open`]. It gives the connection
/// back when an HTTP/1.1 stream ended cleanly: its response said keep-alive,
/// so the connection goes on to hyper for the client's next request.
#[expect(
    clippy::large_enum_variant,
    reason = "the stream is the common case; boxing it would cost an allocation per stream"
)]
pub enum Serving {
    Stream(StreamTask),
    /// An error or "try later": rare, so boxed.
    Other(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Served; the connection was given back.
    Done,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Serving::Stream(task) => f.debug_tuple("Stream").field(task).finish(),
            Serving::Other(_) => f.write_str("Other"),
            Serving::Done => f.write_str("Done"),
        }
    }
}

impl Future for Serving {
    /// The connection, when it stays open.
    type Output = Option<TcpStream>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TcpStream>> {
        let this = self.get_mut();
        let keep = match this {
            Serving::Stream(task) => ready!(task.poll_run(cx)),
            Serving::Other(run) => {
                ready!(run.as_mut().poll(cx));
                false
            }
            Serving::Done => false,
        };
        match std::mem::replace(this, Serving::Done) {
            Serving::Stream(mut task) if keep => Poll::Ready(task.writer.take_io()),
            _ => Poll::Ready(None),
        }
    }
}

/// One open stream: its writer and its event stream.
#[derive(Debug)]
pub struct StreamTask {
    writer: Writer,
    body: EventStream,
    log: RequestLog,
    status: u16,
}

impl StreamTask {
    /// Serves the stream; whether the connection stays open after it.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let _entered = self.log.span.enter();
        let result = ready!(self.writer.poll_run(&mut self.body, cx));
        // After a clean end, an HTTP/1.1 connection stays open as its response
        // said (keep-alive); HTTP/1.0's closes, its body ending with it. The
        // shutdown of a TCP socket does not wait.
        let keep = matches!(result, Ok(SocketEnd::Finished)) && self.writer.chunked();
        if matches!(result, Ok(SocketEnd::Finished)) && !keep {
            self.writer.poll_shutdown(cx);
        }
        let outcome = match (result, self.body.end()) {
            (Err(_), _) => "write failed",
            (Ok(_), Some(end)) => end.as_str(),
            // Recorded by the event stream when it is dropped, as under hyper.
            (Ok(_), None) => "client left",
        };
        self.log.answered(self.status, Some(outcome));
        Poll::Ready(keep)
    }
}

/// Anything but a stream (an error, "try later"): written whole, then the
/// connection closes, and the answer says so. "Try later" is an event stream
/// that ends at once, so it keeps the stream's framing.
async fn answer(mut io: TcpStream, resp: Response<Body>, version: Version) -> io::Result<()> {
    let (parts, bytes) = writer::collected(resp).await;
    let is_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream && version == Version::HTTP_11 {
        let framing = b"transfer-encoding: chunked\r\nconnection: close\r\n";
        io.write_all(&writer::head(&parts, framing, true)).await?;
        io.write_all(Chunk::from_parts(&[&bytes]).wire()).await?;
        io.write_all(b"0\r\n\r\n").await?;
    } else {
        writer::whole(&mut io, &parts, &bytes, false).await?;
    }
    io.shutdown().await
}

//! The one hyper service: sends each request to the event stream, a webhook route,
//! the demo page, or the upstream (404/405 without one) — and never returns `Err`,
//! which would drop the connection instead of answering.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::conn::{ClientAddr, ConnectionCut, RequestLog};
use crate::ingest;
use crate::reply::{self, Body};
use crate::route::Lookup;
use crate::subscribe;
use crate::{cors, demo};

/// Longest path and query served; longer ones get 414 (nginx's default buffer).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Routes the request here and now; what is left to await (a handler's future,
/// boxed) is the returned future's. Written out by hand rather than as an
/// `async fn`, which would keep the request in it: hyper moves every request's
/// future by value several times, so it is kept to a couple of hundred bytes.
pub fn handle(app: Arc<App>, req: Request<Incoming>, conn: &Connection) -> Handling {
    let log = RequestLog::new(req.method(), req.uri().path());
    let routed = log.span.in_scope(|| route(app, req, conn));
    Handling { routed, log }
}

/// What a request's handler may need of its connection. It goes into the
/// request's extensions only for the handlers that read it (streams, the
/// upstream's `X-Forwarded-For`): each insert allocates (the map, each value).
#[derive(Debug, Clone)]
pub struct Connection {
    pub cut: ConnectionCut,
    pub peer: ClientAddr,
}

impl Connection {
    /// The client's address, for the upstream.
    fn addr(&self, req: &mut Request<Incoming>) {
        req.extensions_mut().insert(self.peer);
    }

    /// The address and the cut, for a stream.
    fn all(&self, req: &mut Request<Incoming>) {
        self.addr(req);
        req.extensions_mut().insert(self.cut.clone());
    }
}

/// The future of one request (see [`handle`]); never resolves to `Err`.
pub struct Handling {
    routed: Routed,
    log: RequestLog,
}

impl std::fmt::Debug for Handling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routed = match self.routed {
            Routed::Now(_) => "Now",
            Routed::Later(_) => "Later",
        };
        f.debug_struct("Handling").field("routed", &routed).finish()
    }
}

/// A request's answer: ready, or the future of the handler that gives it.
enum Routed {
    /// Taken when polled.
    Now(Option<Response<Body>>),
    Later(Pin<Box<dyn Future<Output = Response<Body>> + Send>>),
}

impl Future for Handling {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let resp = match &mut this.routed {
            Routed::Now(resp) => resp.take().expect("polled after it resolved"),
            Routed::Later(handling) => {
                let _entered = this.log.span.enter();
                ready!(handling.as_mut().poll(cx))
            }
        };
        this.log.answered(resp.status().as_u16(), None);
        Poll::Ready(Ok(resp))
    }
}

/// Answers at once, or boxes the handler's future, which owns what it needs.
fn route(app: Arc<App>, mut req: Request<Incoming>, conn: &Connection) -> Routed {
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > MAX_URI_BYTES {
        return Routed::Now(Some(reply::error(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("The request target is longer than {MAX_URI_BYTES} bytes."),
        )));
    }
    let path = req.uri().path();
    if path == app.config.sse.path {
        if req.method() == Method::OPTIONS {
            return Routed::Now(Some(match &app.config.cors {
                Some(c) => c.preflight(req.headers()),
                None => cors::options_answer(),
            }));
        }
        conn.all(&mut req);
        return Routed::Later(Box::pin(async move { subscribe_hyper(&app, req).await }));
    }
    if app.config.streams.serves(path) {
        // Other methods go on to the routes and the upstream (README "In front of an existing app").
        if req.method() == Method::GET {
            conn.all(&mut req);
            return Routed::Later(Box::pin(async move { subscribe_hyper(&app, req).await }));
        }
        if req.method() == Method::OPTIONS
            && let Some(c) = &app.config.cors
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Routed::Now(Some(c.preflight(req.headers())));
        }
    }
    if path == "/_hookcast" || path.starts_with("/_hookcast/") {
        let resp = demo::serve(app.demo_page.as_ref(), req.method(), path);
        return Routed::Now(Some(resp));
    }
    let lookup = app.config.router.lookup(req.method(), path);
    if app.upstream.is_some() {
        // Forward-mode routes and requests no route takes go to the upstream.
        conn.addr(&mut req);
    }
    if app.upstream.is_some() && !matches!(lookup, Lookup::Candidates(_)) {
        let req = reply::streamed(req);
        return Routed::Later(Box::pin(async move { app.pass(req).await }));
    }
    Routed::Later(Box::pin(futures_util::FutureExt::map(
        ingest::handle(app, req, lookup),
        ingest::Answer::into_response,
    )))
}

/// A stream request as hyper reads it. One that declares a body is refused
/// (README "Choices hookcast makes"): its unread body would keep hyper
/// from noticing the client leave.
async fn subscribe_hyper(app: &App, req: Request<Incoming>) -> Response<Body> {
    use http_body::Body as _;
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && !body.is_end_stream() {
        return subscribe::BadRequest::Body.into_response();
    }
    drop(body);
    subscribe::handle(app, &parts).await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, F>(_: impl Fn(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper moves each request's future by value several times, so it holds
    /// no handler's state; a webhook's is boxed once, and holds no shared
    /// broker's (sizes as a test build lays them out; the broker's own publish
    /// future is checked in `broker`).
    #[test]
    fn a_request_future_stays_small() {
        let size = std::mem::size_of::<Handling>();
        assert!(size <= 256, "the request future grew to {size} bytes");
        let webhook = future_size(
            |(app, req, lookup): (Arc<App>, Request<Incoming>, Lookup)| {
                ingest::handle(app, req, lookup)
            },
        );
        assert!(
            webhook <= 3 * 1024,
            "a webhook's future grew to {webhook} bytes"
        );
    }
}

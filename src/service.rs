//! The one hyper service: sends each request to the event stream, a webhook route,
//! the demo page, or the upstream (404/405 without one) — and never returns `Err`,
//! which would drop the connection instead of answering.

use std::convert::Infallible;
use std::sync::Arc;

use http::header;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::app::App;
use crate::ingest;
use crate::reply::{self, Body};
use crate::route::Lookup;
use crate::subscribe;
use crate::{cors, demo};

/// Longest path and query served; longer ones get 414 (nginx's default buffer).
pub const MAX_URI_BYTES: usize = 8 * 1024;

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // The query is left out: it may carry tokens.
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        status = tracing::field::Empty,
        elapsed_ms = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let resp = route(&app, req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    // On the span too, so that every later line of this request carries them.
    span.record("status", status);
    span.record("elapsed_ms", elapsed_ms);
    span.in_scope(|| tracing::debug!(status, elapsed_ms, "answered"));
    Ok(resp)
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > MAX_URI_BYTES {
        return reply::error(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("The request target is longer than {MAX_URI_BYTES} bytes."),
        );
    }
    let path = req.uri().path();
    if path == app.config.sse.path {
        if req.method() == Method::OPTIONS {
            return match &app.config.cors {
                Some(c) => c.preflight(req.headers()),
                None => cors::options_answer(),
            };
        }
        return Box::pin(subscribe_hyper(app, req)).await;
    }
    if app.config.streams.serves(path) {
        // Other methods go on to the routes and the upstream (README "In front of an existing app").
        if req.method() == Method::GET {
            return Box::pin(subscribe_hyper(app, req)).await;
        }
        if req.method() == Method::OPTIONS
            && let Some(c) = &app.config.cors
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return c.preflight(req.headers());
        }
    }
    if path == "/_hookcast" || path.starts_with("/_hookcast/") {
        return demo::serve(app.demo_page.as_ref(), req.method(), path);
    }
    let lookup = app.config.router.lookup(req.method(), path);
    if app.upstream.is_some() && !matches!(lookup, Lookup::Candidates(_)) {
        return app.pass(reply::streamed(req)).await;
    }
    // Boxed, as are streams above: their futures are many times the size of the
    // proxy's, and hyper moves every request's future by value.
    Box::pin(ingest::handle(app, req, lookup)).await
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

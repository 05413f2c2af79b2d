//! The one hyper service: sends each request to the event stream, a webhook route,
//! the demo page, or the upstream (404/405 without one) — and never returns `Err`,
//! which would drop the connection instead of answering.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::config::Config;
use crate::demo;
use crate::hub::Hub;
use crate::ingest::{self, route::Lookup};
use crate::proxy::Upstream;
use crate::reply::{self, Body};
use crate::server::ConnectionCut;
use crate::subscribe::{self, Subscribed};

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub hub: Arc<Hub>,
    /// The demo page, when `demo: true`.
    pub demo_page: Option<bytes::Bytes>,
    /// The application behind hookcast, when `upstream` is configured.
    pub upstream: Option<Upstream>,
}

impl App {
    pub fn new(config: Config, hub: Arc<Hub>) -> Self {
        let demo_page = config.demo.then(|| demo::page(&config.sse.path));
        let upstream = config.upstream.as_ref().map(Upstream::new);
        App {
            config,
            hub,
            demo_page,
            upstream,
        }
    }
}

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // The query is left out: it may carry tokens.
    let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    let resp = route(&app, req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        );
    });
    Ok(resp)
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if path == app.config.sse.path {
        if req.method() != Method::GET {
            return method_not_allowed(&[Method::GET]);
        }
        let (parts, _) = req.into_parts();
        return subscribe(app, &parts).into_response();
    }
    if path == "/_hookcast" || path.starts_with("/_hookcast/") {
        return demo::serve(app.demo_page.as_ref(), req.method(), path);
    }
    match app.config.router.lookup(req.method(), path) {
        Lookup::Candidates(candidates) => ingest::handle(app, req, candidates).await,
        _ if app.upstream.is_some() => pass(app, streamed(req)).await,
        Lookup::WrongMethod(allowed) => method_not_allowed(&allowed),
        Lookup::NoRoute => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Nothing is served at {path}, and no upstream is configured."),
        ),
    }
}

/// A `GET` of the event stream path, from hyper or from [`crate::direct`].
pub fn subscribe(app: &App, parts: &http::request::Parts) -> Subscribed {
    match subscribe::parse(
        parts.uri.query(),
        &parts.headers,
        app.config.sse.max_topics_per_subscriber,
    ) {
        Ok(sub) => {
            let cut = parts.extensions.get::<ConnectionCut>().cloned();
            subscribe::open(&app.hub, &app.config, sub, parts.version, cut)
        }
        Err(bad) => Subscribed::Other(bad.into_response()),
    }
}

/// Sends a request to the upstream; 404 without one.
pub(crate) async fn pass(app: &App, req: Request<Body>) -> Response<Body> {
    match &app.upstream {
        Some(upstream) => upstream.pass(req).await,
        None => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "Nothing is served at {}, and no upstream is configured.",
                req.uri().path()
            ),
        ),
    }
}

/// A request whose body streams on as it arrives.
pub(crate) fn streamed(req: Request<Incoming>) -> Request<Body> {
    req.map(|b| b.map_err(Into::into).boxed())
}

fn method_not_allowed(allowed: &[Method]) -> Response<Body> {
    let list = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut resp = reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("This path accepts only {list}."),
    );
    if let Ok(v) = HeaderValue::from_str(&list) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

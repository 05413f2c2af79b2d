//! The one hyper service: sends each request to the event stream, a webhook route,
//! the demo page, or a 404/405 — and never returns `Err`, which would drop the
//! connection instead of answering.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::auth::{Authorizer, Decision};
use crate::config::Config;
use crate::hub::Hub;
use crate::ingest::{self, route::Lookup};
use crate::limits::{self, Held, IpSlots};
use crate::reply::{self, Body};
use crate::server::{ConnectionCut, Peer};
use crate::{cors, demo, subscribe};

/// Longest path and query served; longer ones get 414 (nginx's default buffer).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub hub: Arc<Hub>,
    /// The demo page, when `demo: true`.
    pub demo_page: Option<bytes::Bytes>,
    pub auth: Authorizer,
    /// Streams per client address, when `limits.max_subscribers_per_ip` is set.
    pub ip_slots: Option<IpSlots>,
}

impl App {
    pub fn new(config: Config, hub: Arc<Hub>) -> Self {
        let demo_page = config.demo.then(|| demo::page(&config.sse.path));
        let auth = Authorizer::new(&config.subscribers);
        let ip_slots = config.limits.max_subscribers_per_ip.map(IpSlots::new);
        App {
            config,
            hub,
            demo_page,
            auth,
            ip_slots,
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
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > MAX_URI_BYTES {
        return reply::error(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("The request target is longer than {MAX_URI_BYTES} bytes."),
        );
    }
    let path = req.uri().path();
    if path == app.config.sse.path {
        let (parts, _) = req.into_parts();
        if parts.method == Method::OPTIONS {
            return match &app.config.cors {
                Some(c) => c.preflight(&parts.headers),
                None => cors::options_answer(),
            };
        }
        let mut resp = stream(app, &parts).await;
        if let Some(c) = &app.config.cors {
            c.apply(&parts.headers, &mut resp);
        }
        return resp;
    }
    if path == "/_hookcast" || path.starts_with("/_hookcast/") {
        return demo::serve(app.demo_page.as_ref(), req.method(), path);
    }
    match app.config.router.lookup(req.method(), path) {
        Lookup::Candidates(candidates) => {
            let (parts, body) = req.into_parts();
            let result = match ingest::read_body(&parts, body, app.config.limits.max_body).await {
                Ok(bytes) => ingest::ingest(&app.hub, &parts, &bytes, candidates),
                Err(rejection) => Err(rejection),
            };
            match result {
                Ok(published) => {
                    tracing::debug!(
                        id = &*published.id,
                        duplicate = published.duplicate,
                        "published"
                    );
                    ingest::accepted(&published)
                }
                Err(rejection) => {
                    tracing::info!(?rejection, "webhook rejected");
                    rejection.into_response()
                }
            }
        }
        Lookup::WrongMethod(allowed) => method_not_allowed(&allowed),
        Lookup::NoRoute => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Nothing is served at {path}, and no upstream is configured."),
        ),
    }
}

/// `GET {sse.path}`: parse, take a per-address slot, authorize, open.
async fn stream(app: &Arc<App>, parts: &Parts) -> Response<Body> {
    if parts.method != Method::GET {
        return method_not_allowed(&[Method::GET, Method::OPTIONS]);
    }
    let sub = match subscribe::parse(
        parts.uri.query(),
        &parts.headers,
        app.config.sse.max_topics_per_subscriber,
    ) {
        Ok(sub) => sub,
        Err(bad) => return bad.into_response(),
    };
    // The slot is taken before authorizing, so one address cannot flood the auth endpoint.
    let slot = match (&app.ip_slots, parts.extensions.get::<Peer>()) {
        (Some(slots), Some(peer)) => {
            let limits = &app.config.limits;
            let ip = limits::client_ip(peer.0.ip(), &parts.headers, &limits.trusted_proxies);
            match slots.acquire(ip) {
                Some(slot) => Some(slot),
                None => {
                    tracing::info!(%ip, "subscriber refused: too many streams from one address");
                    let mut resp = reply::error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_subscribers",
                        "This address already holds as many streams as limits.max_subscribers_per_ip allows.",
                    );
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
                    return resp;
                }
            }
        }
        _ => None,
    };
    match app
        .auth
        .decide(&parts.headers, parts.uri.query(), &sub.filters)
        .await
    {
        Decision::Allow { until } => {
            let cut = parts.extensions.get::<ConnectionCut>().cloned();
            let resp = subscribe::open(&app.hub, &app.config, sub, parts.version, cut, until);
            match slot {
                Some(slot) => resp.map(|body| Held::new(body, slot).boxed()),
                None => resp,
            }
        }
        Decision::Refuse(resp) => resp,
        Decision::TryLater => {
            tracing::info!(reason = "auth_unavailable", "subscriber told to try later");
            subscribe::try_later(app.config.sse.retry, parts.version)
        }
    }
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

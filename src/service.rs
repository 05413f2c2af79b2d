//! The one hyper service: sends each request to the event stream, a webhook route,
//! the demo page, or the upstream (404/405 without one) — and never returns `Err`,
//! which would drop the connection instead of answering.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::auth::{Authorizer, Decision};
use crate::broker::Broker;
use crate::config::Config;
use crate::hub::Hub;
use crate::ingest::{self, route::Lookup};
use crate::inspect::Deliveries;
use crate::limits::{self, IpSlots};
use crate::proxy::Upstream;
use crate::reply::{self, Body};
use crate::server::{ClientAddr, ConnectionCut};
use crate::streams::{self, Resolved};
use crate::subscribe::{self, Subscribed};
use crate::{cors, demo};

/// Longest path and query served; longer ones get 414 (nginx's default buffer).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub hub: Arc<Hub>,
    /// Stores and shares events; in front of `hub`.
    pub broker: Broker,
    /// The demo page, when `demo: true`.
    pub demo_page: Option<bytes::Bytes>,
    /// The application behind hookcast, when `upstream` is configured.
    pub upstream: Option<Upstream>,
    pub auth: Authorizer,
    /// Streams per client address, when `limits.max_subscribers_per_ip` is set.
    pub ip_slots: Option<IpSlots>,
    /// The delivery log, when the admin listener can show it; kept across reloads.
    pub deliveries: Option<Arc<Deliveries>>,
}

impl App {
    /// The handlers' state for a config reloaded while `old` served: the hub, the
    /// broker and the per-address stream counts carry over, the rest is built anew.
    pub fn reloaded(config: Config, old: &App) -> Self {
        let mut app = App::with_broker(config, old.hub.clone(), old.broker.clone());
        app.deliveries = old.deliveries.clone();
        if let (Some(new), Some(old)) = (&mut app.ip_slots, &old.ip_slots) {
            *new = old.with_max(
                app.config
                    .limits
                    .max_subscribers_per_ip
                    .unwrap_or(usize::MAX),
            );
        }
        app
    }

    /// Whether the broker can take events (SPEC §6 `/readyz`).
    pub fn ready(&self) -> bool {
        self.broker.ready()
    }

    /// Must be called within the runtime: a Redis broker starts its reader task.
    pub fn new(config: Config, hub: Arc<Hub>) -> Self {
        let broker = Broker::new(&config, hub.clone());
        App::with_broker(config, hub, broker)
    }

    fn with_broker(config: Config, hub: Arc<Hub>, broker: Broker) -> Self {
        let demo_page = config.demo.then(|| demo::page(&config));
        let upstream = config.upstream.as_ref().map(Upstream::new);
        let auth = Authorizer::new(&config.subscribers);
        let ip_slots = config.limits.max_subscribers_per_ip.map(IpSlots::new);
        let deliveries = Deliveries::for_config(&config);
        App {
            config,
            hub,
            broker,
            demo_page,
            upstream,
            auth,
            ip_slots,
            deliveries,
        }
    }
}

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
        return subscribe_hyper(app, req).await;
    }
    if app.config.streams.serves(path) {
        // Other methods go on to the routes and the upstream (README "In front of an existing app").
        if req.method() == Method::GET {
            return subscribe_hyper(app, req).await;
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
        return pass(app, streamed(req)).await;
    }
    ingest::handle(app, req, lookup).await
}

/// A stream request as hyper reads it. One that declares a body is refused
/// (README "Choices where SPEC is silent"): its unread body would keep hyper
/// from noticing the client leave.
async fn subscribe_hyper(app: &App, req: Request<Incoming>) -> Response<Body> {
    use http_body::Body as _;
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && !body.is_end_stream() {
        return subscribe::BadRequest::Body.into_response();
    }
    drop(body);
    subscribe(app, &parts).await.into_response()
}

/// `GET {sse.path}` or a stream route, from hyper or from [`crate::fast`]:
/// parse, take a per-address slot, authorize, open; with CORS headers when configured.
pub async fn subscribe(app: &App, parts: &Parts) -> Subscribed {
    let mut answer = stream(app, parts).await;
    if let Some(c) = &app.config.cors {
        let headers = match &mut answer {
            Subscribed::Stream(r) => r.headers_mut(),
            Subscribed::Other(r) => r.headers_mut(),
        };
        c.apply(&parts.headers, headers);
    }
    answer
}

async fn stream(app: &App, parts: &Parts) -> Subscribed {
    if parts.method != Method::GET {
        return Subscribed::Other(method_not_allowed(&[Method::GET, Method::OPTIONS]));
    }
    let route = app.config.streams.lookup(parts.uri.path());
    let asked = match &route {
        // A stream route chooses its topics itself: `topic=` is not read there.
        Some(_) => Ok(subscribe::Request {
            filters: Vec::new(),
            last_event_id: subscribe::last_event_id(parts.uri.query(), &parts.headers),
        }),
        None => subscribe::parse(
            parts.uri.query(),
            &parts.headers,
            app.config.sse.max_topics_per_subscriber,
        ),
    };
    let mut sub = match asked {
        Ok(sub) => sub,
        Err(bad) => return Subscribed::Other(bad.into_response()),
    };
    // The slot is taken before authorizing, so one address cannot flood the auth endpoint.
    let slot = match (&app.ip_slots, parts.extensions.get::<ClientAddr>()) {
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
                    return Subscribed::Other(resp);
                }
            }
        }
        _ => None,
    };
    let resolved = match route {
        Some((route, params)) => streams::resolve(&app.auth, route, &params, parts).await,
        None => match app
            .auth
            .decide(&parts.headers, parts.uri.query(), &sub.filters)
            .await
        {
            Decision::Allow { until, .. } => Resolved::Open {
                filters: std::mem::take(&mut sub.filters),
                until,
            },
            Decision::Refuse(resp) => Resolved::Refused(resp),
            Decision::TryLater => Resolved::TryLater,
        },
    };
    match resolved {
        Resolved::Open { filters, until } => {
            sub.filters = filters;
            let cut = parts.extensions.get::<ConnectionCut>().cloned();
            match subscribe::open(&app.broker, &app.config, sub, parts.version, cut, until).await {
                Subscribed::Stream(resp) => Subscribed::Stream(resp.map(|s| s.holding(slot))),
                other => other,
            }
        }
        Resolved::Refused(resp) => Subscribed::Other(resp),
        Resolved::TryLater => {
            tracing::info!(reason = "auth_unavailable", "subscriber told to try later");
            app.hub
                .metrics()
                .dropped(crate::metrics::Dropped::AuthUnavailable);
            Subscribed::Other(subscribe::try_later(app.config.sse.retry, parts.version))
        }
    }
}

/// Sends a request to the upstream; 404 without one.
pub(crate) async fn pass(app: &App, req: Request<Body>) -> Response<Body> {
    match &app.upstream {
        Some(upstream) => {
            let resp = upstream.pass(req).await;
            app.hub.metrics().proxied(resp.status().as_u16());
            resp
        }
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

/// The sentence of a 405.
pub(crate) fn accepts_only(allowed: &[Method]) -> String {
    format!("This path accepts only {}.", allow_list(allowed))
}

fn allow_list(allowed: &[Method]) -> String {
    allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// 405 with an `Allow` header.
pub(crate) fn method_not_allowed(allowed: &[Method]) -> Response<Body> {
    let list = allow_list(allowed);
    let mut resp = reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        accepts_only(allowed),
    );
    if let Ok(v) = HeaderValue::from_str(&list) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

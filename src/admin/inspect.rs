//! What the admin listener serves for operators: the page at `/`, the delivery log
//! (`/deliveries`, its live tail `/deliveries/stream`, one delivery, redelivery),
//! and `/status` (routes, topics, subscribers) for the page.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::app::{App, Live};
use crate::ingest::{self, Decision, Received, Rejection};
use crate::inspect::{Deliveries, Delivery, Outcome, Seen};
use crate::reply::{self, Body};
use crate::route::{Lookup, Mode};
use crate::sse::{EventStream, StreamSettings};
use crate::subscribe;

/// The operator page: one file, no external resources.
const PAGE: &str = include_str!("page.html");

/// Most deliveries one `GET /deliveries` returns.
const MAX_LIST: usize = 1000;

/// Answers the operator endpoints; `None` for any other path.
pub(super) async fn answer<B>(live: &Live, req: &Request<B>) -> Option<Response<Body>> {
    let path = req.uri().path();
    let method = req.method();
    let resp = match path {
        "/" => only_get(method).unwrap_or_else(page),
        "/status" => only_get(method).unwrap_or_else(|| status(live)),
        "/deliveries" => only_get(method)
            .unwrap_or_else(|| with_log(live, |app, log| list(app, log, req.uri().query()))),
        "/deliveries/stream" => only_get(method).unwrap_or_else(|| with_log(live, tail)),
        _ => {
            let rest = path.strip_prefix("/deliveries/")?;
            match rest.split_once('/') {
                None => only_get(method).unwrap_or_else(|| with_log(live, |_, log| one(log, rest))),
                Some((id, "redeliver")) => {
                    if method != Method::POST {
                        return Some(not_allowed("POST"));
                    }
                    if !same_origin(req.headers()) {
                        return Some(reply::error(
                            StatusCode::FORBIDDEN,
                            "cross_origin",
                            "Redelivery is refused to a page of another origin than this listener.",
                        ));
                    }
                    let app = live.load();
                    match &app.deliveries {
                        Some(log) => redeliver(&app, log, id).await,
                        None => log_off(),
                    }
                }
                Some(_) => return None,
            }
        }
    };
    Some(resp)
}

/// A browser names the page's origin on a POST: one of another origin (a page
/// the operator happens to have open) must not trigger redeliveries.
fn same_origin(headers: &http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
    let authority = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    matches!((authority, host), (Some(a), Some(h)) if a.as_bytes() == h)
}

fn only_get(method: &Method) -> Option<Response<Body>> {
    (method != Method::GET && method != Method::HEAD).then(|| not_allowed("GET, HEAD"))
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("This admin endpoint accepts only {allow}."),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

fn with_log(
    live: &Live,
    f: impl FnOnce(&App, &Arc<Deliveries>) -> Response<Body>,
) -> Response<Body> {
    let app = live.load();
    match &app.deliveries {
        Some(log) => f(&app, log),
        None => log_off(),
    }
}

fn log_off() -> Response<Body> {
    reply::error(
        StatusCode::NOT_FOUND,
        "deliveries_off",
        "The delivery log is off (inspect.deliveries: 0).",
    )
}

fn page() -> Response<Body> {
    // Nothing but the page's own inline code and this listener: it may show bodies.
    let mut resp = reply::html(
        Bytes::from_static(PAGE.as_bytes()),
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'",
    );
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn no_store(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Which deliveries `?status=` selects: an exact status (`404`) or a class (`4xx`).
fn status_filter(s: &str) -> Option<Box<dyn Fn(u16) -> bool>> {
    let b = s.as_bytes();
    if b.len() == 3 && b[0].is_ascii_digit() && b[1..].eq_ignore_ascii_case(b"xx") {
        let class = u16::from(b[0] - b'0');
        return Some(Box::new(move |st| st / 100 == class));
    }
    let exact: u16 = s.parse().ok().filter(|n| (100..1000).contains(n))?;
    Some(Box::new(move |st| st == exact))
}

fn list(app: &App, log: &Deliveries, query: Option<&str>) -> Response<Body> {
    let mut route: Option<String> = None;
    let mut status: Option<Box<dyn Fn(u16) -> bool>> = None;
    let mut limit = MAX_LIST;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "route" => route = Some(v.into_owned()),
            "status" => match status_filter(&v) {
                Some(f) => status = Some(f),
                None => {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_filter",
                        format!("status={v:?} is neither a status code (404) nor a class (4xx)."),
                    );
                }
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if n > 0 => limit = n.min(MAX_LIST),
                _ => {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_filter",
                        format!("limit={v:?} is not a positive whole number."),
                    );
                }
            },
            _ => {}
        }
    }
    // `route=(none)` selects the webhooks no route took.
    let keep = |d: &Delivery| {
        route.as_deref().is_none_or(|r| {
            d.route.as_deref() == Some(r) || (r == ingest::UNROUTED && d.route.is_none())
        }) && status.as_ref().is_none_or(|f| f(d.status))
    };
    let found: Vec<Value> = log.list(keep, limit).iter().map(|d| d.to_json()).collect();
    no_store(reply::json(
        StatusCode::OK,
        &json!({
            "deliveries": found,
            "capacity": log.capacity(),
            "bodies": app.config.inspect.bodies,
        }),
    ))
}

fn parse_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

fn gone(id: &str) -> Response<Body> {
    reply::error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "Delivery {id:?} is not in the log: it never existed or was pushed out by newer ones."
        ),
    )
}

fn one(log: &Deliveries, id: &str) -> Response<Body> {
    match parse_id(id).and_then(|n| log.get(n)) {
        Some(d) => no_store(reply::json(StatusCode::OK, &d.to_json())),
        None => gone(id),
    }
}

/// The live tail: each new delivery as an event named `delivery`, through the
/// log's own hub, so it is encoded once whatever the number of watchers.
fn tail(app: &App, log: &Arc<Deliveries>) -> Response<Body> {
    let settings = StreamSettings {
        retry: app.config.sse.retry,
        heartbeat: app.config.sse.heartbeat,
        max_duration: None,
        auth_expires: None,
    };
    match log
        .tail()
        .subscribe(vec![Deliveries::tail_filter()], None, None)
    {
        Ok(sub) => subscribe::Subscribed::Stream(subscribe::stream_response(
            EventStream::new(sub, settings),
            http::Version::HTTP_11,
        ))
        .into_response(),
        Err(_) => subscribe::try_later(app.config.sse.retry, http::Version::HTTP_11),
    }
}

/// `/status`: the routes, the busiest topics and the open streams.
fn status(live: &Live) -> Response<Body> {
    let app = live.load();
    let routes: Vec<Value> = app
        .config
        .router
        .routes()
        .iter()
        .map(|r| {
            json!({
                "name": &*r.name,
                "method": r.method.as_str(),
                "path": r.path.as_str(),
                "mode": match r.mode { Mode::Publish => "publish", Mode::Forward => "forward" },
                "verify": r.verify.as_ref().map(|v| v.scheme().name()),
            })
        })
        .collect();
    let hub = &app.hub;
    no_store(reply::json(
        StatusCode::OK,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "sse_path": app.config.sse.path,
            "routes": routes,
            "stream_routes": app.config.streams.listing(),
            "subscribers": hub.subscriber_count(),
            "connections": live.connections.load(std::sync::atomic::Ordering::Relaxed),
            "topic_count": hub.topic_count(),
            "topics": hub.topics(200),
            "ready": app.ready(),
            "upstream": app.config.upstream.as_ref().map(|u| u.authority.to_string()),
            "deliveries": app.deliveries.as_ref().map(|l| json!({
                "kept": l.len(),
                "capacity": l.capacity(),
                "bodies": app.config.inspect.bodies,
            })),
        }),
    ))
}

/// Publishes a kept delivery's event again, as a new event, through the routes as
/// they are now: the same match, signature check (at the time it was received)
/// and templates as a webhook, without its dedupe key.
async fn redeliver(app: &App, log: &Deliveries, id: &str) -> Response<Body> {
    let Some(original) = parse_id(id).and_then(|n| log.get(n)) else {
        return gone(id);
    };
    let Some(replay) = &original.replay else {
        let why = if original.body_cut {
            "its body was longer than inspect.body_bytes and was cut"
        } else if original.headers_cut {
            "its headers were too long to keep"
        } else if original.body_size.is_some_and(|n| n > 0) || original.route.is_some() {
            "bodies are not kept (inspect.bodies: false)"
        } else {
            "its body was never read"
        };
        return reply::error(
            StatusCode::CONFLICT,
            "not_redeliverable",
            format!("Delivery {id} cannot be redelivered: {why}."),
        );
    };
    let started = Instant::now();
    let Ok(uri) = replay.path_and_query.parse::<http::Uri>() else {
        return gone(id);
    };
    let mut seen = Seen {
        method: replay.method.clone(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: replay.headers.clone(),
        declared_len: None,
        received: std::time::SystemTime::now(),
        redelivery_of: Some(original.id),
    };
    let mut outcome = Outcome {
        body: Some(replay.body.clone()),
        ..Outcome::default()
    };
    let answer = match app.config.router.lookup(&replay.method, uri.path()) {
        Lookup::Candidates(candidates) => {
            let received = Received {
                method: &replay.method,
                uri: &uri,
                headers: &replay.headers,
                body: &replay.body,
                verify_at: Some(replay.received),
            };
            match ingest::decide(&app.config.router, candidates, &received, &mut outcome) {
                Decision::Publish(route, mut event) => {
                    event.dedupe = None;
                    match app.broker.publish(event).await {
                        Ok(published) => {
                            app.metrics().published(&route.name);
                            let body = json!({"id": &*published.id, "topics": published.topics});
                            outcome.published = Some(published);
                            Ok(body)
                        }
                        Err(why) => Err(Rejection::BrokerUnavailable(why).describe()),
                    }
                }
                Decision::Forward(_) => Err(conflict(
                    "forward_route",
                    "The route that takes this delivery now is in forward mode; redelivery cannot call the application again.",
                )),
                Decision::NoMatch => Err(no_route()),
                Decision::Refused(rejection) => Err(rejection.describe()),
            }
        }
        _ => Err(no_route()),
    };
    seen.declared_len = Some(replay.body.len() as u64);
    let (status, mut body) = match answer {
        Ok(body) => (StatusCode::ACCEPTED, body),
        Err((status, code, message)) => {
            let body = json!({"error": code, "message": message});
            outcome.error = Some((code, message));
            (status, body)
        }
    };
    let new_id = log.record(
        &app.config,
        seen,
        outcome,
        status.as_u16(),
        started.elapsed(),
    );
    if let Some(o) = body.as_object_mut() {
        o.insert("delivery".into(), new_id.to_string().into());
    }
    let mut resp = reply::json(status, &body);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}

fn conflict(code: &'static str, message: &str) -> (StatusCode, &'static str, String) {
    (StatusCode::CONFLICT, code, message.to_owned())
}

fn no_route() -> (StatusCode, &'static str, String) {
    conflict(
        "no_route",
        "No route takes this delivery with the running configuration; fix the routes and reload first.",
    )
}

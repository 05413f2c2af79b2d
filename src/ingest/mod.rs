//! Webhooks: read the body within `limits.max_body`, pick the first route whose
//! conditions hold, render its templates, publish, and answer 202 — or a JSON error,
//! in which case nothing was published. Forward-mode routes ([`forward`]) let the
//! upstream answer instead, and publish when it accepted.

mod forward;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::app::App;
use crate::broker::Unavailable;
use crate::hub::{NewEvent, Published};
use crate::inspect::{Outcome, Seen};
use crate::proxy::body::{Prefix, read_prefix};
use crate::reply::{self, Body, BoxError};
use crate::route::{Candidate, Lookup, Mode, Route, Router, Unmet};
use crate::sse::encode;
use crate::template::{Input, RenderError, Template, json_str_len, push_json_str};
use crate::topic;
use crate::verify;

/// A webhook that could not be accepted; each maps to one status and code.
#[derive(Debug)]
pub enum Rejection {
    BodyTooLarge(u64),
    BodyUnreadable,
    NoMatch,
    Render {
        field: &'static str,
        error: RenderError,
    },
    InvalidTopic {
        topic: String,
        error: topic::TopicError,
    },
    /// The rendered event name: with a line break or NUL, or reserved (`hookcast.*`).
    InvalidEvent(String),
    Signature(verify::Failure),
    /// The broker could not store the event.
    BrokerUnavailable(Unavailable),
}

impl Rejection {
    /// Status, API code and one sentence: what the client is answered.
    pub fn describe(&self) -> (StatusCode, &'static str, String) {
        use StatusCode as S;
        match self {
            Rejection::BodyTooLarge(limit) => (
                S::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("The request body is larger than limits.max_body ({limit} bytes)."),
            ),
            Rejection::BodyUnreadable => (
                S::BAD_REQUEST,
                "body_unreadable",
                "The request body could not be read to its end.".into(),
            ),
            Rejection::NoMatch => (
                S::NOT_FOUND,
                "not_found",
                "No route matches this request's headers or body, and no upstream is configured."
                    .into(),
            ),
            Rejection::Render { field, error } => {
                let (status, code) = match error {
                    RenderError::InvalidJson => (S::BAD_REQUEST, "invalid_json"),
                    RenderError::BodyNotUtf8 => (S::UNPROCESSABLE_ENTITY, "body_not_utf8"),
                    RenderError::Unresolved(_) | RenderError::NotInIdentity(_) => {
                        (S::UNPROCESSABLE_ENTITY, "unresolved_template")
                    }
                };
                (status, code, format!("Cannot build publish.{field}: {error}."))
            }
            Rejection::InvalidTopic { topic, error } => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_topic",
                format!("The rendered topic {topic:?} is not valid: {error}."),
            ),
            Rejection::InvalidEvent(name) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_event",
                if encode::is_reserved_event(name) {
                    format!(
                        "The rendered event name {name:?} is reserved: names starting with `hookcast.` are hookcast's own."
                    )
                } else {
                    "The rendered event name contains a line break or NUL.".to_owned()
                },
            ),
            Rejection::BrokerUnavailable(why) => (
                S::SERVICE_UNAVAILABLE,
                "broker_unavailable",
                match why {
                    Unavailable::NotStored => {
                        "The event could not be stored because the broker is unreachable or did not answer in time; nothing was published, and nothing will be. Retry later."
                    }
                    Unavailable::Stalled => {
                        "The broker stopped answering, so the event was not acknowledged; it will not be published from now on, though the broker may have stored it before this answer. Retry later."
                    }
                    Unavailable::Unknown => {
                        "The connection to the broker broke while the event was being stored, so the outcome is unknown: it may have been published. Retry later."
                    }
                }
                .into(),
            ),
            Rejection::Signature(failure) => {
                let message = match failure {
                    verify::Failure::Missing(h) => {
                        format!("The {h} header is missing, so this webhook cannot be verified.")
                    }
                    verify::Failure::Invalid => {
                        "The webhook signature does not match this route's secret.".to_owned()
                    }
                    verify::Failure::TimestampOutOfTolerance => {
                        "The signed timestamp is too far from the current time; the webhook may be a replay.".to_owned()
                    }
                };
                (S::UNAUTHORIZED, failure.code(), message)
            }
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let (status, code, message) = self.describe();
        let mut resp = reply::error(status, code, message);
        if matches!(self, Rejection::BrokerUnavailable(_)) {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
        }
        resp
    }
}

/// Reads the whole body, refusing more than `limit` bytes whether or not a
/// Content-Length was sent. A webhook's body mostly comes in one frame, which is
/// kept as it is: no copy, and nothing collected around it.
pub async fn read_body<B>(parts: &Parts, body: B, limit: u64) -> Result<Bytes, Rejection>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Rejection::BodyTooLarge(limit));
    }
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut more: Option<bytes::BytesMut> = None;
    let mut len: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(Rejection::BodyUnreadable);
        };
        // Trailers carry nothing the event is made of.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len() as u64;
        if len > limit {
            return Err(Rejection::BodyTooLarge(limit));
        }
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut joined = bytes::BytesMut::with_capacity(f.len() + data.len());
                joined.extend_from_slice(f);
                joined.extend_from_slice(&data);
                more = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
        }
    }
    Ok(match (first, more) {
        (_, Some(joined)) => joined.freeze(),
        (first, None) => first.unwrap_or_default(),
    })
}

/// A request the route table selected (`lookup`): read the body if a candidate
/// needs it, pick the first route whose conditions hold, and publish it (publish
/// mode) or pass it to the upstream (forward mode, or no route holds). Without an
/// upstream, a path or method no route has is answered 404 or 405 here. What came of
/// it is counted and recorded in the delivery log here, once.
///
/// Generic over the body so that the instruction benchmark drives this very
/// function with a body already in memory; the server's is hyper's `Incoming`.
///
/// The app is taken by reference or owned (the server's `Arc`), so that a
/// boxed webhook future holds it once.
pub async fn handle<A, B>(app: A, req: Request<B>, lookup: Lookup) -> Answer
where
    A: std::borrow::Borrow<App>,
    B: HttpBody<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let app: &App = app.borrow();
    // The clock is read only for what shows the elapsed time: the delivery log, the line at info.
    let started = (app.deliveries.is_some() || tracing::enabled!(tracing::Level::INFO))
        .then(std::time::Instant::now);
    // Requests no route's path and method select are logged unless they look like page fetches.
    let logged = matches!(lookup, Lookup::Candidates(_))
        || !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Boxed: this future is moved whole on every request, with or without a delivery log.
    let seen = app
        .deliveries
        .as_ref()
        .filter(|_| logged)
        .map(|_| Box::new(Seen::of(&req)));
    let mut outcome = Outcome::default();
    let resp = match lookup {
        Lookup::Candidates(candidates) => {
            let mut published_by = None;
            // Pinned where it is built: awaited, this large future would be moved once more.
            let resp = std::pin::pin!(handle_routed(
                app,
                req,
                candidates,
                &mut outcome,
                &mut published_by
            ))
            .await;
            let route = match (&outcome.route, outcome.passed) {
                (_, true) => None,
                (Some(name), false) => Some(&**name),
                (None, false) => Some(UNROUTED),
            };
            let counters = published_by.and_then(|r| app.route_counters(r.index));
            match (route, counters) {
                (Some(name), Some(counters)) => {
                    app.metrics().route_webhook(counters, name, resp.status());
                }
                (Some(name), None) => app.metrics().webhook(name, resp.status().as_str()),
                (None, _) => {}
            }
            resp
        }
        // Not counted as webhooks.
        lookup => refused_path(app, &req, lookup, &mut outcome).into(),
    };
    // A request passed on because no route took it is proxied traffic, not a webhook.
    if !outcome.passed || outcome.publish_failed.is_some() {
        log_outcome(&outcome, resp.status(), started);
    }
    if let (Some(log), Some(seen)) = (&app.deliveries, seen) {
        let status = resp.status().as_u16();
        let elapsed = started.map_or(std::time::Duration::ZERO, |s| s.elapsed());
        log.record(&app.config, *seen, outcome, status, elapsed);
    }
    resp
}

/// Whether [`handle`] may read the request's headers when `candidates` are
/// publish-mode routes: a route's conditions, signature or templates, the
/// delivery log's record, or the upstream a request no route holds goes to.
/// (`Content-Length` is read only to refuse a body over the limit early.)
/// The plain path builds no header map for a webhook that needs none.
pub fn reads_headers(app: &App, candidates: &[Candidate]) -> bool {
    app.deliveries.is_some()
        || app.upstream.is_some()
        || candidates.iter().any(|(r, _)| r.reads_headers())
}

/// One line at info per webhook, read from the same [`Outcome`] the delivery log
/// records: route, status, result, API code, event id and elapsed time; never a
/// body, header or secret.
fn log_outcome(outcome: &Outcome, status: StatusCode, started: Option<std::time::Instant>) {
    let code = outcome
        .error
        .as_ref()
        .map(|(code, _)| *code)
        .or(outcome.publish_failed.map(|_| "publish_failed"));
    let result = match (&outcome.published, code) {
        (_, Some("publish_failed")) => "publish_failed",
        (_, Some(_)) => "refused",
        (Some(p), None) if p.duplicate => "duplicate",
        (Some(_), None) => "published",
        (None, None) => "forwarded",
    };
    tracing::info!(
        route = outcome.route.as_deref().unwrap_or(UNROUTED),
        status = status.as_u16(),
        result,
        code,
        id = outcome.published.as_ref().map(|p| &*p.id),
        // Read only when the line is written.
        elapsed_ms = started.map_or(0, |s| {
            u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX)
        }),
        "webhook"
    );
}

/// The `route` label of a webhook refused before a route was chosen (body too
/// large or unreadable, no route's conditions hold).
pub const UNROUTED: &str = "(none)";

/// 404 or 405 for a path and method that no route has (no upstream is configured).
fn refused_path<B>(
    app: &App,
    req: &Request<B>,
    lookup: Lookup,
    outcome: &mut Outcome,
) -> Response<Body> {
    let path = req.uri().path();
    let router = &app.config.router;
    outcome.unmatched = unmatched(router, req.method(), path, req.headers(), None);
    let (code, message, allowed) = match lookup {
        Lookup::WrongMethod(allowed) => (
            "method_not_allowed",
            reply::accepts_only(&allowed),
            Some(allowed),
        ),
        _ => (
            "not_found",
            format!("Nothing is served at {path}, and no upstream is configured."),
            None,
        ),
    };
    outcome.error = Some((code, message.clone()));
    match allowed {
        Some(allowed) => reply::method_not_allowed(&allowed),
        None => reply::error(StatusCode::NOT_FOUND, code, message),
    }
}

fn unmatched(
    router: &Router,
    method: &Method,
    path: &str,
    headers: &http::HeaderMap,
    json: Option<&Value>,
) -> Vec<(std::sync::Arc<str>, Unmet)> {
    router
        .explain(method, path, headers, json)
        .filter_map(|(r, unmet)| Some((r.name.clone(), unmet?)))
        .collect()
}

/// The route a webhook was published by goes to `published_by`, for its counters.
///
/// The upstream's futures (forward mode, passing on) are boxed: this future is
/// moved whole on every request, and unboxed they would add to its size for every
/// webhook, publish mode included.
async fn handle_routed<B>(
    app: &App,
    req: Request<B>,
    candidates: Vec<Candidate>,
    outcome: &mut Outcome,
    published_by: &mut Option<std::sync::Arc<Route>>,
) -> Answer
where
    B: HttpBody<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let limit = app.config.limits.max_body;
    let (parts, body) = req.into_parts();
    let reads_body = candidates
        .iter()
        .any(|(r, _)| r.mode == Mode::Publish || r.reads_body() || r.verify.is_some());
    if !reads_body {
        // Only forward routes that need nothing from the body: it streams through.
        let chosen = candidates
            .into_iter()
            .find(|(r, _)| r.accepts(&parts.headers, None));
        let req = Request::from_parts(parts, body.map_err(Into::into).boxed());
        return match chosen {
            Some(route) => {
                outcome.route = Some(route.0.name.clone());
                Box::pin(forward::forward(app, req, route, Bytes::new(), outcome))
                    .await
                    .into()
            }
            None => {
                outcome.unmatched = unmatched(
                    &app.config.router,
                    req.method(),
                    req.uri().path(),
                    req.headers(),
                    None,
                );
                outcome.passed = true;
                Box::pin(app.pass(req)).await.into()
            }
        };
    }

    let body = if candidates.iter().all(|(r, _)| r.mode == Mode::Forward) {
        // The upstream gets the request whatever its size; only the event needs it whole.
        match read_prefix(body, limit).await {
            Prefix::Whole(bytes, _) => bytes,
            Prefix::Over(replay) => {
                tracing::warn!(
                    limit,
                    "request body over limits.max_body: passed to the upstream, no event published"
                );
                trace_publish_failed();
                if let [(route, _)] = &candidates[..] {
                    app.metrics().webhook(&route.name, "publish_failed");
                }
                outcome.passed = true;
                outcome.publish_failed = Some("the request body is over limits.max_body");
                return Box::pin(app.pass(Request::from_parts(parts, replay.boxed())))
                    .await
                    .into();
            }
            Prefix::Broken(_) => return rejected(outcome, Rejection::BodyUnreadable),
        }
    } else {
        match read_body(&parts, body, limit).await {
            Ok(bytes) => bytes,
            Err(rejection) => return rejected(outcome, rejection),
        }
    };
    if app.deliveries.is_some() {
        // Only the delivery log reads it.
        outcome.body = Some(body.clone());
    }
    let received = Received {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body: &body,
        // The clock is read only for a route that checks a signature.
        verify_at: candidates
            .iter()
            .any(|(r, _)| r.verify.is_some())
            .then(unix_now),
    };
    match decide(&app.config.router, candidates, &received, outcome) {
        Decision::Publish(route, event) => match app.broker.publish(event).await {
            Ok(published) => {
                if !published.duplicate {
                    match app.route_counters(route.index) {
                        Some(c) => app.metrics().route_published(c, &route.name),
                        None => app.metrics().published(&route.name),
                    }
                }
                tracing::debug!(
                    id = &*published.id,
                    duplicate = published.duplicate,
                    "published"
                );
                let answer = Answer::Accepted(accepted(&published));
                outcome.published = Some(published);
                *published_by = Some(route);
                answer
            }
            Err(why) => rejected(outcome, Rejection::BrokerUnavailable(why)),
        },
        Decision::Forward(route) => {
            let req = Request::from_parts(parts, reply::full(body.clone()));
            Box::pin(forward::forward(app, req, route, body, outcome))
                .await
                .into()
        }
        Decision::NoMatch if app.upstream.is_some() => {
            outcome.passed = true;
            Box::pin(app.pass(Request::from_parts(parts, reply::full(body))))
                .await
                .into()
        }
        Decision::NoMatch => rejected(outcome, Rejection::NoMatch),
        Decision::Refused(rejection) => rejected(outcome, rejection),
    }
}

/// The trace of a forward route whose upstream answered but whose event was not
/// published (counted per route as `publish_failed` by the caller): a publishing
/// outcome, so traced here rather than among the proxy's.
fn trace_publish_failed() {
    tracing::trace!(outcome = "publish_failed", "forward route outcome");
}

fn rejected(outcome: &mut Outcome, rejection: Rejection) -> Answer {
    // The outcome's line at info names the API code; the detail is for debugging.
    tracing::debug!(?rejection, "webhook refused");
    let (_, code, message) = rejection.describe();
    outcome.error = Some((code, message));
    rejection.into_response().into()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A webhook whose body has been read, as [`decide`] looks at it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub method: &'a Method,
    pub uri: &'a http::Uri,
    pub headers: &'a http::HeaderMap,
    pub body: &'a Bytes,
    /// When signatures are checked (seconds since the Unix epoch); `None` skips them.
    pub verify_at: Option<i64>,
}

/// What a webhook comes to before anything is published.
#[derive(Debug)]
pub enum Decision {
    /// A publish-mode route took it; this is its event.
    Publish(std::sync::Arc<Route>, NewEvent),
    /// A forward-mode route took it: the upstream answers.
    Forward(Candidate),
    /// No candidate's headers or JSON conditions hold.
    NoMatch,
    Refused(Rejection),
}

/// Picks the first candidate whose conditions hold, checks its signature and
/// renders its event: the one decision shared by the webhook path, redelivery and
/// `hookcast route`. Fills in the route, the signature result and, when no route
/// holds, why each route did not.
pub fn decide(
    router: &Router,
    candidates: Vec<Candidate>,
    req: &Received<'_>,
    outcome: &mut Outcome,
) -> Decision {
    let json: Option<Value> = if candidates.iter().any(|(r, _)| r.needs_json()) {
        serde_json::from_slice(req.body).ok()
    } else {
        None
    };
    let chosen = candidates
        .into_iter()
        .find(|(r, _)| r.accepts(req.headers, json.as_ref()));
    let Some((route, params)) = chosen else {
        let path = req.uri.path();
        outcome.unmatched = unmatched(router, req.method, path, req.headers, json.as_ref());
        return Decision::NoMatch;
    };
    outcome.route = Some(route.name.clone());
    if let (Some(verifier), Some(now)) = (&route.verify, req.verify_at) {
        let checked = verifier.verify(&verify::Request {
            headers: req.headers,
            path_and_query: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            body: req.body,
            now,
        });
        let scheme = verifier.scheme().name();
        match checked {
            Ok(()) => outcome.verify = Some((scheme, "ok")),
            Err(failure) => {
                outcome.verify = Some((scheme, failure.code()));
                return Decision::Refused(Rejection::Signature(failure));
            }
        }
    }
    if route.mode == Mode::Forward {
        return Decision::Forward((route, params));
    }
    let input = Input {
        path_params: &params,
        query: req.uri.query(),
        headers: req.headers,
        body: req.body,
        json: json.as_ref(),
        response: None,
        identity: None,
    };
    match render(&route, &input) {
        Ok(event) => Decision::Publish(route, event),
        Err(rejection) => Decision::Refused(rejection),
    }
}

/// Renders a matched route's templates into an event; checks topics and event name.
pub fn render(route: &Route, input: &Input<'_>) -> Result<NewEvent, Rejection> {
    let p = &route.publish;
    let field = |field: &'static str, t: &Template| {
        t.render(input)
            .map_err(|error| Rejection::Render { field, error })
    };
    let mut topics: Vec<String> = Vec::with_capacity(p.topics.len());
    for t in &p.topics {
        let topic = field("topic", t)?;
        if let Err(error) = topic::validate_topic(&topic) {
            return Err(Rejection::InvalidTopic { topic, error });
        }
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    let event = match &p.event {
        Some(t) => Some(field("event", t)?).filter(|e| !e.is_empty()),
        None => None,
    };
    if let Some(e) = &event
        && (!encode::is_field_safe(e) || encode::is_reserved_event(e))
    {
        return Err(Rejection::InvalidEvent(e.clone()));
    }
    let data = p.data.render(input).map_err(|error| Rejection::Render {
        field: "data",
        error,
    })?;
    let dedupe = match &p.dedupe {
        Some(t) => Some((route.name.clone(), field("dedupe", t)?)),
        None => None,
    };
    Ok(NewEvent {
        topics,
        event,
        data,
        dedupe,
    })
}

/// What [`handle`] answers: an accepted webhook's JSON, which each path writes
/// its own way (the socket's path without building a response), or a response.
#[derive(Debug)]
pub enum Answer {
    Accepted(Accepted),
    Response(Response<Body>),
}

impl Answer {
    pub fn status(&self) -> StatusCode {
        match self {
            Answer::Accepted(a) => a.status,
            Answer::Response(r) => r.status(),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        match self {
            Answer::Accepted(a) => a.into_response(),
            Answer::Response(r) => r,
        }
    }
}

impl From<Response<Body>> for Answer {
    fn from(r: Response<Body>) -> Self {
        Answer::Response(r)
    }
}

/// The 202 (or, for a duplicate, 200) answer: its status, its one header and its body.
#[derive(Debug)]
pub struct Accepted {
    pub status: StatusCode,
    pub json: String,
}

impl Accepted {
    /// The answer's one header, whichever path writes it.
    pub const HEADER: (http::HeaderName, &'static str) =
        (http::header::CONTENT_TYPE, "application/json");

    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(reply::full(self.json));
        *resp.status_mut() = self.status;
        // Sized for its one header, rather than the eight a first insert makes room for.
        *resp.headers_mut() = http::HeaderMap::with_capacity(1);
        let (name, value) = Self::HEADER;
        resp.headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
        resp
    }
}

/// The 202 (or, for a duplicate, 200) answer. Written straight into its buffer,
/// since every accepted webhook gets one: the same bytes serde_json writes for
/// `{"id", "topics"[, "duplicate"]}` (keys in its sorted order), at a fraction
/// of the cost of building a `Value` first.
pub fn accepted(p: &Published) -> Accepted {
    let start = if p.duplicate {
        "{\"duplicate\":true,\"id\":"
    } else {
        "{\"id\":"
    };
    let len = start.len()
        + json_str_len(&p.id)
        + ",\"topics\":[".len()
        + p.topics.iter().map(|t| json_str_len(t) + 1).sum::<usize>()
        + "]}".len()
        - usize::from(!p.topics.is_empty());
    // Of the exact size: on hyper's path `Bytes` takes it over without another allocation.
    let mut out = String::with_capacity(len);
    out.push_str(start);
    push_json_str(&mut out, &p.id);
    out.push_str(",\"topics\":[");
    for (i, topic) in p.topics.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, topic);
    }
    out.push_str("]}");
    debug_assert_eq!(out.len(), len);
    let status = if p.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Accepted { status, json: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_writes_what_serde_json_writes() {
        for (id, topics, duplicate) in [
            ("1733-0", vec!["orders.eu".to_owned()], false),
            ("7", vec!["a".to_owned(), "b.c:d/e_f-g".to_owned()], true),
            ("q\"\\\n\u{1}é", vec![], false),
        ] {
            let p = Published {
                id: id.into(),
                topics: topics.clone(),
                duplicate,
            };
            let want = if duplicate {
                serde_json::json!({ "id": id, "topics": topics, "duplicate": true })
            } else {
                serde_json::json!({ "id": id, "topics": topics })
            };
            let resp = accepted(&p).into_response();
            let status = if duplicate { 200 } else { 202 };
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()["content-type"], "application/json");
            let body = futures_util::FutureExt::now_or_never(resp.into_body().collect())
                .expect("a full body is ready")
                .expect("a full body cannot fail")
                .to_bytes();
            assert_eq!(std::str::from_utf8(&body).unwrap(), want.to_string());
        }
    }
}

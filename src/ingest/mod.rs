//! Webhooks: read the body within `limits.max_body`, pick the first route whose
//! conditions hold, render its templates, publish, and answer 202 — or a JSON error,
//! in which case nothing was published. Forward-mode routes ([`forward`]) let the
//! upstream answer instead, and publish when it accepted.

mod forward;
pub mod route;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::broker::Unavailable;
use crate::hub::{NewEvent, Published};
use crate::proxy::{self, body::Prefix, body::read_prefix};
use crate::reply::{self, Body};
use crate::service::{self, App};
use crate::sse;
use crate::template::{Input, RenderError, Template};
use crate::topic;
use crate::verify;
use route::{Candidate, Mode, Route};

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
    InvalidEvent,
    Signature(verify::Failure),
    /// The broker could not store the event.
    BrokerUnavailable,
}

impl Rejection {
    /// The HTTP status and API code of this refusal.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Rejection::BodyTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "body_too_large"),
            Rejection::BodyUnreadable => (S::BAD_REQUEST, "body_unreadable"),
            Rejection::NoMatch => (S::NOT_FOUND, "not_found"),
            Rejection::Render { error, .. } => match error {
                RenderError::InvalidJson => (S::BAD_REQUEST, "invalid_json"),
                RenderError::BodyNotUtf8 => (S::UNPROCESSABLE_ENTITY, "body_not_utf8"),
                RenderError::Unresolved(_) => (S::UNPROCESSABLE_ENTITY, "unresolved_template"),
            },
            Rejection::InvalidTopic { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_topic"),
            Rejection::InvalidEvent => (S::UNPROCESSABLE_ENTITY, "invalid_event"),
            Rejection::BrokerUnavailable => (S::SERVICE_UNAVAILABLE, "broker_unavailable"),
            Rejection::Signature(failure) => (S::UNAUTHORIZED, failure.code()),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let (status, code) = self.status_code();
        let message = match self {
            Rejection::BodyTooLarge(limit) => {
                format!("The request body is larger than limits.max_body ({limit} bytes).")
            }
            Rejection::BodyUnreadable => "The request body could not be read to its end.".into(),
            Rejection::NoMatch => {
                "No route matches this request's headers or body, and no upstream is configured."
                    .into()
            }
            Rejection::Render { field, error } => {
                format!("Cannot build publish.{field}: {error}.")
            }
            Rejection::InvalidTopic { topic, error } => {
                format!("The rendered topic {topic:?} is not valid: {error}.")
            }
            Rejection::InvalidEvent => {
                "The rendered event name contains a line break or NUL.".into()
            }
            Rejection::BrokerUnavailable => {
                let mut resp = reply::error(
                    status,
                    code,
                    "The event could not be stored because the broker is unreachable; nothing was published. Retry later.",
                );
                resp.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("5"),
                );
                return resp;
            }
            Rejection::Signature(failure) => match &failure {
                verify::Failure::Missing(h) => {
                    format!("The {h} header is missing, so this webhook cannot be verified.")
                }
                verify::Failure::Invalid => {
                    "The webhook signature does not match this route's secret.".to_owned()
                }
                verify::Failure::TimestampOutOfTolerance => {
                    "The signed timestamp is too far from the current time; the webhook may be a replay.".to_owned()
                }
            },
        };
        reply::error(status, code, message)
    }
}

/// Reads the whole body, refusing more than `limit` bytes whether or not a
/// Content-Length was sent.
pub async fn read_body(parts: &Parts, body: Incoming, limit: u64) -> Result<Bytes, Rejection> {
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Rejection::BodyTooLarge(limit));
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Rejection::BodyTooLarge(limit)),
        Err(_) => Err(Rejection::BodyUnreadable),
    }
}

/// A request whose path and method match routes: read the body if a candidate
/// needs it, pick the first route whose conditions hold, and publish it (publish
/// mode) or pass it to the upstream (forward mode, or no route holds).
pub async fn handle(
    app: &App,
    req: Request<Incoming>,
    candidates: Vec<Candidate>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let mut outcome = Outcome::default();
    let resp = handle_routed(app, req, candidates, &mut outcome).await;
    if !outcome.proxied {
        outcome.finish(app, resp.status(), started.elapsed());
    }
    resp
}

/// The `route` label of a webhook refused before a route was chosen (body too
/// large or unreadable, no route's conditions hold).
pub const UNROUTED: &str = "(none)";

/// What became of one webhook, for publish and forward mode alike: recorded along
/// the way, then counted and logged once, in [`handle`].
#[derive(Debug, Default)]
pub struct Outcome {
    /// The route chosen, once one is.
    pub route: Option<std::sync::Arc<str>>,
    /// No route held and the request went to the upstream: a proxied request, not
    /// a webhook.
    pub proxied: bool,
    /// The API code of a refusal, or `publish_failed` (forward mode: the upstream
    /// accepted, but no event was published).
    pub code: Option<&'static str>,
    /// The event's id; for a duplicate, the first delivery's.
    pub id: Option<std::sync::Arc<str>>,
    pub duplicate: bool,
}

impl Outcome {
    fn refuse(&mut self, rejection: Rejection) -> Response<Body> {
        tracing::debug!(?rejection, "webhook refused");
        self.code = Some(rejection.status_code().1);
        rejection.into_response()
    }

    fn published(&mut self, p: &Published) {
        self.id = Some(p.id.clone());
        self.duplicate = p.duplicate;
    }

    /// One count and one line at info: route, status, API code, event id and
    /// elapsed time; never a body, header or secret.
    fn finish(&self, app: &App, status: StatusCode, elapsed: std::time::Duration) {
        let route = self.route.as_deref().unwrap_or(UNROUTED);
        app.hub.metrics().webhook(route, status.as_str());
        let result = match (self.code, &self.id) {
            (Some("publish_failed"), _) => "publish_failed",
            (Some(_), _) => "refused",
            (None, Some(_)) if self.duplicate => "duplicate",
            (None, Some(_)) => "published",
            (None, None) => "forwarded",
        };
        tracing::info!(
            route,
            status = status.as_u16(),
            result,
            code = self.code,
            id = self.id.as_deref(),
            elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "webhook"
        );
    }
}

async fn handle_routed(
    app: &App,
    req: Request<Incoming>,
    candidates: Vec<Candidate>,
    outcome: &mut Outcome,
) -> Response<Body> {
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
        let req = service::streamed(Request::from_parts(parts, body));
        return match chosen {
            Some(route) => {
                outcome.route = Some(route.0.name.clone());
                forward::forward(app, req, route, Bytes::new(), outcome).await
            }
            None => {
                outcome.proxied = true;
                service::pass(app, req).await
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
                proxy::record(proxy::Outcome::PublishFailed);
                if let [(route, _)] = &candidates[..] {
                    app.hub.metrics().webhook(&route.name, "publish_failed");
                }
                outcome.proxied = true;
                return service::pass(app, Request::from_parts(parts, replay.boxed())).await;
            }
            Prefix::Broken(_) => return outcome.refuse(Rejection::BodyUnreadable),
        }
    } else {
        match read_body(&parts, body, limit).await {
            Ok(bytes) => bytes,
            Err(rejection) => return outcome.refuse(rejection),
        }
    };
    let json: Option<Value> = if candidates.iter().any(|(r, _)| r.needs_json()) {
        serde_json::from_slice(&body).ok()
    } else {
        None
    };
    let chosen = candidates
        .into_iter()
        .find(|(r, _)| r.accepts(&parts.headers, json.as_ref()));
    if let Some((route, _)) = &chosen {
        outcome.route = Some(route.name.clone());
    }
    if let Some((route, _)) = &chosen
        && let Err(rejection) = check_signature(route, &parts, &body)
    {
        return outcome.refuse(rejection);
    }
    match chosen {
        Some((route, params)) if route.mode == Mode::Publish => {
            let input = Input {
                path_params: &params,
                query: parts.uri.query(),
                headers: &parts.headers,
                body: &body,
                json: json.as_ref(),
                response: None,
            };
            match render(&route, &input) {
                Ok(event) => match app.broker.publish(event).await {
                    Ok(published) => {
                        if !published.duplicate {
                            app.hub.metrics().published(&route.name);
                        }
                        outcome.published(&published);
                        accepted(&published)
                    }
                    Err(Unavailable) => outcome.refuse(Rejection::BrokerUnavailable),
                },
                Err(rejection) => outcome.refuse(rejection),
            }
        }
        Some(route) => {
            let req = Request::from_parts(parts, reply::full(body.clone()));
            forward::forward(app, req, route, body, outcome).await
        }
        None if app.upstream.is_some() => {
            outcome.proxied = true;
            service::pass(app, Request::from_parts(parts, reply::full(body))).await
        }
        None => outcome.refuse(Rejection::NoMatch),
    }
}

/// A route's `verify:` over the raw body, when it has one.
fn check_signature(route: &Route, parts: &Parts, body: &Bytes) -> Result<(), Rejection> {
    let Some(verifier) = &route.verify else {
        return Ok(());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    verifier
        .verify(&verify::Request {
            headers: &parts.headers,
            path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            body,
            now,
        })
        .map_err(Rejection::Signature)
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
    if event.as_deref().is_some_and(|e| !sse::is_field_safe(e)) {
        return Err(Rejection::InvalidEvent);
    }
    let data = field("data", &p.data)?;
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

/// The 202 (or, for a duplicate, 200) answer.
pub fn accepted(p: &Published) -> Response<Body> {
    if p.duplicate {
        reply::json(
            StatusCode::OK,
            &serde_json::json!({ "id": &*p.id, "topics": p.topics, "duplicate": true }),
        )
    } else {
        reply::json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "id": &*p.id, "topics": p.topics }),
        )
    }
}

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
    BrokerUnavailable(Unavailable),
}

impl Rejection {
    pub fn into_response(self) -> Response<Body> {
        use StatusCode as S;
        match self {
            Rejection::BodyTooLarge(limit) => reply::error(
                S::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("The request body is larger than limits.max_body ({limit} bytes)."),
            ),
            Rejection::BodyUnreadable => reply::error(
                S::BAD_REQUEST,
                "body_unreadable",
                "The request body could not be read to its end.",
            ),
            Rejection::NoMatch => reply::error(
                S::NOT_FOUND,
                "not_found",
                "No route matches this request's headers or body, and no upstream is configured.",
            ),
            Rejection::Render { field, error } => {
                let (status, code) = match error {
                    RenderError::InvalidJson => (S::BAD_REQUEST, "invalid_json"),
                    RenderError::BodyNotUtf8 => (S::UNPROCESSABLE_ENTITY, "body_not_utf8"),
                    RenderError::Unresolved(_) => (S::UNPROCESSABLE_ENTITY, "unresolved_template"),
                };
                reply::error(
                    status,
                    code,
                    format!("Cannot build publish.{field}: {error}."),
                )
            }
            Rejection::InvalidTopic { topic, error } => reply::error(
                S::UNPROCESSABLE_ENTITY,
                "invalid_topic",
                format!("The rendered topic {topic:?} is not valid: {error}."),
            ),
            Rejection::InvalidEvent => reply::error(
                S::UNPROCESSABLE_ENTITY,
                "invalid_event",
                "The rendered event name contains a line break or NUL.",
            ),
            Rejection::BrokerUnavailable(why) => {
                let message = match why {
                    Unavailable::NotStored => {
                        "The event could not be stored because the broker is unreachable or did not answer in time; nothing was published, and nothing will be. Retry later."
                    }
                    Unavailable::Stalled => {
                        "The broker stopped answering, so the event was not acknowledged; it will not be published from now on, though the broker may have stored it just before it stopped. Retry later."
                    }
                    Unavailable::Unknown => {
                        "The connection to the broker broke while the event was being stored, so the outcome is unknown: it may have been published. Retry later."
                    }
                };
                let mut resp = reply::error(S::SERVICE_UNAVAILABLE, "broker_unavailable", message);
                resp.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("5"),
                );
                resp
            }
            Rejection::Signature(failure) => {
                let message = match &failure {
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
                reply::error(S::UNAUTHORIZED, failure.code(), message)
            }
        }
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
    let mut counted = Counted::Unrouted;
    let resp = handle_routed(app, req, candidates, &mut counted).await;
    let route = match &counted {
        Counted::Route(name) => name,
        Counted::Unrouted => UNROUTED,
        Counted::NotWebhook => return resp,
    };
    app.hub.metrics().webhook(route, resp.status().as_str());
    resp
}

/// The `route` label of a webhook refused before a route was chosen (body too
/// large or unreadable, no route's conditions hold).
pub const UNROUTED: &str = "(none)";

/// Which `hookcast_webhooks_total` series a request counts in.
enum Counted {
    Route(std::sync::Arc<str>),
    Unrouted,
    /// No route holds and the request went to the upstream: a proxied request.
    NotWebhook,
}

async fn handle_routed(
    app: &App,
    req: Request<Incoming>,
    candidates: Vec<Candidate>,
    counted: &mut Counted,
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
                *counted = Counted::Route(route.0.name.clone());
                forward::forward(app, req, route, Bytes::new()).await
            }
            None => {
                *counted = Counted::NotWebhook;
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
                *counted = Counted::NotWebhook;
                return service::pass(app, Request::from_parts(parts, replay.boxed())).await;
            }
            Prefix::Broken(_) => return rejected(Rejection::BodyUnreadable),
        }
    } else {
        match read_body(&parts, body, limit).await {
            Ok(bytes) => bytes,
            Err(rejection) => return rejected(rejection),
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
        *counted = Counted::Route(route.name.clone());
    }
    if let Some((route, _)) = &chosen
        && let Err(rejection) = check_signature(route, &parts, &body)
    {
        return rejected(rejection);
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
                        tracing::debug!(
                            id = &*published.id,
                            duplicate = published.duplicate,
                            "published"
                        );
                        accepted(&published)
                    }
                    Err(why) => rejected(Rejection::BrokerUnavailable(why)),
                },
                Err(rejection) => rejected(rejection),
            }
        }
        Some(route) => {
            let req = Request::from_parts(parts, reply::full(body.clone()));
            forward::forward(app, req, route, body).await
        }
        None if app.upstream.is_some() => {
            *counted = Counted::NotWebhook;
            service::pass(app, Request::from_parts(parts, reply::full(body))).await
        }
        None => rejected(Rejection::NoMatch),
    }
}

fn rejected(rejection: Rejection) -> Response<Body> {
    tracing::info!(?rejection, "webhook rejected");
    rejection.into_response()
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

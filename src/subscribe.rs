//! `GET {sse.path}?topic=…`: check the request, open a subscription (with replay),
//! and answer with the event stream — or a JSON refusal, or "try later".

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode, Version};
use http_body_util::BodyExt;

use crate::app::App;
use crate::auth::Decision;
use crate::broker::Broker;
use crate::config::Config;
use crate::conn::{ClientAddr, ConnectionCut};
use crate::hub::Refusal;
use crate::limits;
use crate::metrics::Dropped;
use crate::reply::{self, Body};
use crate::sse::{self, EventStream, StreamSettings};
use crate::streams::{self, Resolved};
use crate::topic::{Filter, TopicError};

/// Which events the client asks for: its topic filters and where to resume.
#[derive(Debug)]
pub struct Selection {
    pub filters: Vec<Filter>,
    pub last_event_id: Option<String>,
}

/// A subscription request that cannot be served as asked.
#[derive(Debug)]
pub enum BadRequest {
    NoTopic,
    InvalidTopic(String, TopicError),
    TooManyTopics {
        asked: usize,
        max: usize,
    },
    /// A stream request that declares a body.
    Body,
}

impl BadRequest {
    pub fn into_response(self) -> Response<Body> {
        let (code, message) = match self {
            BadRequest::NoTopic => (
                "invalid_topic",
                "Name at least one topic to follow, as ?topic=NAME.".to_owned(),
            ),
            BadRequest::InvalidTopic(topic, e) => (
                "invalid_topic",
                format!("Topic {topic:?} is not valid: {e}."),
            ),
            BadRequest::TooManyTopics { asked, max } => (
                "too_many_topics",
                format!("{asked} topics were requested; at most {max} are allowed per connection."),
            ),
            BadRequest::Body => (
                "body_not_allowed",
                "A stream request carries no body: send the GET without Content-Length or Transfer-Encoding.".to_owned(),
            ),
        };
        reply::error(StatusCode::BAD_REQUEST, code, message)
    }
}

/// Reads topics and the resume point from the query and headers.
///
/// The `Last-Event-ID` header wins over the `lastEventId` query parameter, which
/// event-source-polyfill sends instead.
pub fn parse(
    query: Option<&str>,
    headers: &HeaderMap,
    max_topics: usize,
) -> Result<Selection, BadRequest> {
    let mut filters: Vec<Filter> = Vec::new();
    let mut query_last_id = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "topic" => {
                let f =
                    Filter::parse(&v).map_err(|e| BadRequest::InvalidTopic(v.to_string(), e))?;
                if !filters.contains(&f) {
                    filters.push(f);
                }
            }
            "lastEventId" => query_last_id = Some(v.into_owned()),
            _ => {}
        }
    }
    if filters.is_empty() {
        return Err(BadRequest::NoTopic);
    }
    if filters.len() > max_topics {
        return Err(BadRequest::TooManyTopics {
            asked: filters.len(),
            max: max_topics,
        });
    }
    Ok(Selection {
        filters,
        last_event_id: header_last_id(headers).or(query_last_id),
    })
}

/// The resume point alone, for a stream route, which reads no `topic=`.
pub fn last_event_id(query: Option<&str>, headers: &HeaderMap) -> Option<String> {
    header_last_id(headers).or_else(|| {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "lastEventId")
            .map(|(_, v)| v.into_owned())
    })
}

fn header_last_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The answer to a subscribe request: the event stream itself, so that the
/// HTTP/1 path of [`crate::fast`] can write it straight to the socket, or any
/// other response.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "short-lived; the stream is the common case"
)]
pub enum Subscribed {
    Stream(Response<EventStream>),
    Other(Response<Body>),
}

impl Subscribed {
    /// The response as hyper serves it.
    pub fn into_response(self) -> Response<Body> {
        match self {
            Subscribed::Stream(r) => r.map(|b| b.map_err(Into::into).boxed()),
            Subscribed::Other(r) => r,
        }
    }
}

/// Opens the stream for a parsed request; `until` is when the subscriber's
/// credentials expire, which ends the stream.
pub async fn open(
    broker: &Broker,
    config: &Config,
    asked: Selection,
    version: Version,
    cut: Option<ConnectionCut>,
    until: Option<SystemTime>,
) -> Subscribed {
    let sse = &config.sse;
    let opened = broker
        .subscribe(
            asked.filters,
            asked.last_event_id.as_deref(),
            cut.map(|c| c.0),
        )
        .await;
    match opened {
        Ok(sub) => {
            let settings = StreamSettings {
                retry: sse.retry,
                heartbeat: sse.heartbeat,
                max_duration: sse.max_stream_duration.map(jitter_down),
                auth_expires: until.map(|t| {
                    t.duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO)
                }),
            };
            Subscribed::Stream(stream_response(
                EventStream::new(sub, settings).sampling(),
                version,
            ))
        }
        Err(refusal) => {
            let why = match refusal {
                Refusal::Capacity => Dropped::Capacity,
                Refusal::ShuttingDown => Dropped::Shutdown,
                Refusal::BrokerUnavailable => Dropped::BrokerUnavailable,
            };
            broker.hub().metrics().dropped(why);
            let reason = why.as_str();
            tracing::info!(reason, "subscriber told to try later");
            Subscribed::Other(try_later(sse.retry, version))
        }
    }
}

/// A 200 stream that only says when to reconnect, then ends: browsers treat any
/// other status as final.
pub fn try_later(retry: Duration, version: Version) -> Response<Body> {
    stream_response(reply::chunk(sse::jittered_retry(retry)), version)
}

pub(crate) fn stream_response<B>(body: B, version: Version) -> Response<B> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if version == Version::HTTP_11 {
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    resp
}

/// Shortens a stream lifetime by up to 10%, so streams opened together do not all
/// end together.
fn jitter_down(d: Duration) -> Duration {
    let ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(ms - fastrand::u64(0..=ms / 10))
}

/// `GET {sse.path}` or a stream route, from hyper or from [`crate::fast`]:
/// parse, take a per-address slot, authorize, open; with CORS headers when configured.
pub async fn handle(app: &App, parts: &Parts) -> Subscribed {
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
        return Subscribed::Other(reply::method_not_allowed(&[Method::GET, Method::OPTIONS]));
    }
    let route = app.config.streams.lookup(parts.uri.path());
    let asked = match &route {
        // A stream route chooses its topics itself: `topic=` is not read there.
        Some(_) => Ok(Selection {
            filters: Vec::new(),
            last_event_id: last_event_id(parts.uri.query(), &parts.headers),
        }),
        None => parse(
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
            match open(&app.broker, &app.config, sub, parts.version, cut, until).await {
                Subscribed::Stream(resp) => Subscribed::Stream(resp.map(|s| s.holding(slot))),
                other => other,
            }
        }
        Resolved::Refused(resp) => Subscribed::Other(resp),
        Resolved::TryLater => {
            tracing::info!(reason = "auth_unavailable", "subscriber told to try later");
            app.metrics().dropped(Dropped::AuthUnavailable);
            Subscribed::Other(try_later(app.config.sse.retry, parts.version))
        }
    }
}

//! Stream routes: event streams on the application's own URLs (`GET /matches`),
//! whose topics hookcast renders per request from the path, query and headers,
//! and from who the subscriber is (`{claim:}`, `{auth:}`).
//!
//! Authorization (README "In front of an existing app"): a topic made only of
//! literal text and identity placeholders comes from the verified identity and
//! is allowed as it is; a topic the request chose passes as on `sse.path`.

use std::sync::Arc;
use std::time::SystemTime;

use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::Value;

use crate::auth::{Authorizer, Decision};
use crate::reply::{self, Body};
use crate::route::PathPattern;
use crate::template::{Input, RenderError, Template};
use crate::topic::{Filter, TopicError};

/// One `streams:` entry, checked.
#[derive(Debug, Clone)]
pub struct StreamRoute {
    pub name: Arc<str>,
    pub path: PathPattern,
    pub topics: Vec<Template>,
}

/// The stream routes, tried in order.
#[derive(Debug, Clone, Default)]
pub struct Streams {
    routes: Vec<Arc<StreamRoute>>,
}

impl Streams {
    pub fn new(routes: Vec<StreamRoute>) -> Self {
        Streams {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// Each route's name and path, as the demo and operator pages list them.
    pub fn listing(&self) -> serde_json::Value {
        self.routes
            .iter()
            .map(|r| serde_json::json!({ "name": &*r.name, "path": r.path.as_str() }))
            .collect()
    }

    pub fn routes(&self) -> &[Arc<StreamRoute>] {
        &self.routes
    }

    /// The first route whose path matches, with its `{name}` segment values.
    pub fn lookup(&self, path: &str) -> Option<(&StreamRoute, crate::route::Params)> {
        self.routes
            .iter()
            .find_map(|r| r.path.matches(path).map(|params| (&**r, params)))
    }

    /// Whether a `GET` of `path` is served by a stream route.
    pub fn serves(&self, path: &str) -> bool {
        self.routes.iter().any(|r| r.path.matches(path).is_some())
    }
}

/// What a stream route request resolves to.
#[derive(Debug)]
pub enum Resolved {
    /// Open the stream on these topics; end it at `until` if set.
    Open {
        filters: Vec<Filter>,
        until: Option<SystemTime>,
    },
    /// A JSON refusal.
    Refused(Response<Body>),
    /// The auth endpoint is unavailable.
    TryLater,
}

/// Renders the route's topics for one request and authorizes them, with one
/// auth decision: the topics the request chose first (sent to the auth endpoint
/// or checked against the token), then those that need the identity.
pub async fn resolve(
    auth: &Authorizer,
    route: &StreamRoute,
    params: &[(std::sync::Arc<str>, String)],
    parts: &Parts,
) -> Resolved {
    let input = |identity| Input {
        path_params: params,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: b"",
        json: None,
        response: None,
        identity,
    };
    let mut filters = Vec::with_capacity(route.topics.len());
    // The topics the request chose come first: the auth call is told of them.
    let chosen = match render_some(&route.topics, false, &input(None), &mut filters) {
        Ok(chosen) => chosen,
        Err(refusal) => return Resolved::Refused(refusal.into_response()),
    };
    let (until, identity) = match auth
        .decide(&parts.headers, parts.uri.query(), &chosen)
        .await
    {
        Decision::Allow { until, identity } => (until, identity),
        Decision::Refuse(resp) => return Resolved::Refused(resp),
        Decision::TryLater => return Resolved::TryLater,
    };
    let identity: Option<&Value> = identity.as_deref();
    let mixed = match render_some(&route.topics, true, &input(identity), &mut filters) {
        Ok(mixed) => mixed,
        Err(refusal) => return Resolved::Refused(refusal.into_response()),
    };
    // Part identity, part request: the identity must cover what the request chose.
    if !mixed.is_empty()
        && let Some(resp) = auth.uncovered(identity, &mixed)
    {
        return Resolved::Refused(resp);
    }
    let mut unique: Vec<Filter> = Vec::with_capacity(filters.len());
    for f in filters {
        if !unique.contains(&f) {
            unique.push(f);
        }
    }
    Resolved::Open {
        filters: unique,
        until,
    }
}

/// Why a stream route's topic could not be built for a request.
#[derive(Debug)]
enum Refusal {
    Render(RenderError),
    InvalidTopic(String, TopicError),
}

impl Refusal {
    fn into_response(self) -> Response<Body> {
        match self {
            Refusal::Render(e @ RenderError::NotInIdentity(_)) => {
                tracing::info!(reason = "identity_field_missing", "subscriber refused");
                reply::error(
                    StatusCode::FORBIDDEN,
                    "topic_forbidden",
                    format!("This stream's topic cannot be built: {e}."),
                )
            }
            Refusal::Render(e) => reply::error(
                StatusCode::BAD_REQUEST,
                "unresolved_template",
                format!("This stream's topic cannot be built: {e}."),
            ),
            Refusal::InvalidTopic(topic, e) => reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_topic",
                format!("The rendered topic {topic:?} is not valid: {e}."),
            ),
        }
    }
}

/// Renders the topics that use the identity (or those that do not) into
/// `filters`; returns those of them the request chose, at least in part.
fn render_some(
    topics: &[Template],
    identity: bool,
    input: &Input<'_>,
    filters: &mut Vec<Filter>,
) -> Result<Vec<Filter>, Refusal> {
    let mut chosen = Vec::new();
    for t in topics.iter().filter(|t| t.uses_identity() == identity) {
        let filter = render(t, input)?;
        if !t.identity_only() {
            chosen.push(filter.clone());
        }
        filters.push(filter);
    }
    Ok(chosen)
}

fn render(t: &Template, input: &Input<'_>) -> Result<Filter, Refusal> {
    let topic = t.render(input).map_err(Refusal::Render)?;
    Filter::parse(&topic).map_err(|e| Refusal::InvalidTopic(topic, e))
}

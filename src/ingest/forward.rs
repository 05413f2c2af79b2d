//! Forward mode: the upstream answers a matched request; when it answers 2xx, the
//! route's event is published. The caller gets the upstream's response unchanged.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;

use super::{Candidate, Rejection, render};
use crate::app::App;
use crate::inspect::Outcome;
use crate::proxy;
use crate::proxy::body::{Prefix, Watched, read_prefix};
use crate::reply::Body;
use crate::template::Input;

/// Passes `req` to the upstream and publishes the route's event on a 2xx answer.
/// `body` is the request body when the route reads it, else empty.
pub(super) async fn forward(
    app: &App,
    req: Request<Body>,
    route: Candidate,
    body: Bytes,
    outcome: &mut Outcome,
) -> Response<Body> {
    let resp = forward_and_publish(app, req, route, body, outcome).await;
    app.metrics().proxied(resp.status().as_u16());
    resp
}

async fn forward_and_publish(
    app: &App,
    req: Request<Body>,
    (route, params): Candidate,
    body: Bytes,
    outcome: &mut Outcome,
) -> Response<Body> {
    let Some(upstream) = app.upstream.as_ref() else {
        return app.pass(req).await;
    };
    // Kept for rendering once the upstream has answered.
    let headers = req.headers().clone();
    let uri = req.uri().clone();
    let resp = match upstream.send(req).await {
        Ok(resp) => resp,
        Err(e) => return e.into_response(),
    };
    if !resp.status().is_success() {
        tracing::debug!(
            status = resp.status().as_u16(),
            "the upstream did not accept the request; no event"
        );
        return proxy::relay(resp);
    }
    let json: Option<Value> = if route.needs_json() {
        serde_json::from_slice(&body).ok()
    } else {
        None
    };
    let input = |response| Input {
        path_params: &params,
        query: uri.query(),
        headers: &headers,
        body: &body,
        json: json.as_ref(),
        response,
        identity: None,
    };
    if !route.reads_response() {
        publish(app, &route.name, render(&route, &input(None)), outcome).await;
        return proxy::relay(resp);
    }

    // The answer is read only as far as `limits.max_body`, and sent on as it was read.
    let (head, answer) = resp.into_parts();
    let limit = app.config.limits.max_body;
    let body = match read_prefix(answer, limit).await {
        Prefix::Whole(bytes, replay) => {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(answer) => {
                    let event = render(&route, &input(Some(&answer)));
                    publish(app, &route.name, event, outcome).await;
                }
                Err(_) => failed(
                    app,
                    &route.name,
                    "the upstream's answer is not JSON",
                    outcome,
                ),
            }
            replay.boxed()
        }
        Prefix::Over(replay) => {
            failed(
                app,
                &route.name,
                "the upstream's answer is over limits.max_body",
                outcome,
            );
            Watched::new(replay).boxed()
        }
        Prefix::Broken(replay) => {
            tracing::warn!(
                route = &*route.name,
                "the upstream broke off its answer; no event published, the client's response is cut"
            );
            proxy::record(proxy::Outcome::BodyAborted);
            replay.boxed()
        }
    };
    Response::from_parts(head, body)
}

async fn publish(
    app: &App,
    route: &str,
    event: Result<crate::hub::NewEvent, Rejection>,
    outcome: &mut Outcome,
) {
    match event {
        Ok(event) => match app.broker.publish(event).await {
            Ok(published) => {
                if !published.duplicate {
                    app.metrics().published(route);
                }
                tracing::debug!(
                    id = &*published.id,
                    duplicate = published.duplicate,
                    "published"
                );
                outcome.published = Some(published);
            }
            Err(_) => failed(app, route, "the broker could not store the event", outcome),
        },
        Err(rejection) => {
            let (_, code, _) = rejection.describe();
            tracing::warn!(
                route,
                code,
                "the upstream accepted the request, but its event could not be built; none published"
            );
            super::trace_publish_failed();
            app.metrics().webhook(route, "publish_failed");
            outcome.publish_failed = Some(code);
        }
    }
}

fn failed(app: &App, route: &str, why: &'static str, outcome: &mut Outcome) {
    outcome.publish_failed = Some(why);
    tracing::warn!(
        route,
        why,
        "the upstream accepted the request, but no event was published"
    );
    super::trace_publish_failed();
    app.metrics().webhook(route, "publish_failed");
}

//! The admin listener: `/healthz`, `/readyz` and `/metrics`, and the operator
//! page with the delivery log (`inspect.rs`), only on `admin.listen`, which the
//! public listener never serves.

mod inspect;

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::app::Live;
use crate::reply::{self, Body};

/// Content type of the OpenMetrics text `prometheus-client` writes.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the admin endpoints until the task is dropped; it outlives the public
/// listener so that `/readyz` can say 503 while hookcast drains.
pub async fn serve(listener: TcpListener, live: Arc<Live>) {
    let mut acceptor = crate::accept::Acceptor::new("admin");
    loop {
        let (stream, peer) = acceptor.accept(&listener).await;
        let live = live.clone();
        let svc = service_fn(move |req| {
            let live = live.clone();
            async move {
                let resp = match inspect::answer(&live, &req).await {
                    Some(resp) => resp,
                    None => answer(&live, &req),
                };
                Ok::<_, Infallible>(resp)
            }
        });
        tokio::spawn(
            async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
            }
            .instrument(tracing::debug_span!("admin", peer = %peer)),
        );
    }
}

fn answer(live: &Live, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "The admin endpoints accept only GET and HEAD.",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if live.is_draining() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
        }
        "/readyz" if !live.load().ready() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker unavailable\n".into(),
        ),
        "/readyz" => text(StatusCode::OK, "ready\n".into()),
        "/metrics" => {
            let hub = live.load().hub.clone();
            let body = hub.metrics().render(hub.subscriber_count());
            let mut resp = text(StatusCode::OK, body);
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(METRICS_TYPE));
            resp
        }
        path => reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "The admin listener serves /, /healthz, /readyz, /metrics, /status and /deliveries, not {path}."
            ),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(reply::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

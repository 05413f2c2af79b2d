//! The upstream: one pooled HTTP/1.1 client to the application behind hookcast,
//! bodies streamed both ways, upgrades (WebSocket) passed through, and 502/504.

pub mod body;
pub mod h1;
mod headers;
mod pool;

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::conn::ClientAddr;
use crate::reply::{self, Body, BoxError};

/// How a proxied request ended, for the trace log in [`record`]. Metrics count the
/// status the client got instead (the caller does: `App::pass` and forward mode),
/// which also covers 502 and 504.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Answered(StatusCode),
    /// 502: the upstream could not be reached, or failed before answering.
    Unavailable,
    /// 504: no response headers within `upstream.timeout`.
    Timeout,
    /// The upstream broke off its response body after answering.
    BodyAborted,
    /// The client broke off its request body.
    ClientAborted,
}

/// The one place every proxy outcome passes.
pub fn record(outcome: Outcome) {
    tracing::trace!(?outcome, "proxy outcome");
}

/// Why a request got no answer from the upstream.
#[derive(Debug)]
pub enum Error {
    /// Refused, unreachable, or the connection failed before a response.
    Unavailable(pool::Failure),
    /// No response headers within `upstream.timeout`.
    Timeout(Duration),
    /// The client broke off the request body while it was being passed on.
    ClientBody,
    /// The request target cannot be expressed as an upstream URI (`CONNECT`, `OPTIONS *`).
    Target,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unavailable(pool::Failure::Connect(_)) => {
                f.write_str("cannot connect to the upstream")
            }
            Error::Unavailable(_) => f.write_str("the upstream failed before answering"),
            Error::Timeout(_) => f.write_str("the upstream sent no response headers in time"),
            Error::ClientBody => f.write_str("the client broke off the request body"),
            Error::Target => f.write_str("the request target cannot be passed to the upstream"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unavailable(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    fn outcome(&self) -> Option<Outcome> {
        match self {
            Error::Unavailable(_) => Some(Outcome::Unavailable),
            Error::Timeout(_) => Some(Outcome::Timeout),
            Error::ClientBody => Some(Outcome::ClientAborted),
            Error::Target => None,
        }
    }

    /// Logs the failure (once, here), records it, and builds the JSON answer.
    pub fn into_response(self) -> Response<Body> {
        match &self {
            Error::Unavailable(e) => {
                tracing::warn!(error = %error_chain(e), "upstream unavailable");
            }
            Error::Timeout(after) => tracing::warn!(
                timeout_ms = after.as_millis() as u64,
                "upstream timeout: no response headers in time"
            ),
            Error::ClientBody => tracing::info!("the client broke off the request body"),
            Error::Target => tracing::info!("a request target that is not a path"),
        }
        if let Some(o) = self.outcome() {
            record(o);
        }
        match self {
            Error::Unavailable(_) => reply::error(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "The application behind hookcast could not be reached.",
            ),
            Error::Timeout(after) => reply::error(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!(
                    "The application behind hookcast did not answer within {}ms (upstream.timeout).",
                    after.as_millis()
                ),
            ),
            Error::ClientBody => reply::error(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                "The request body could not be read to its end.",
            ),
            Error::Target => reply::error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "This request target cannot be passed to the application behind hookcast.",
            ),
        }
    }
}

/// Every cause, outermost first: hyper's own messages say little alone.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Marks errors of the client's request body, to tell them from upstream failures.
#[derive(Debug)]
pub(crate) struct ClientBodyError(BoxError);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client request body: {}", self.0)
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

fn caused_by_client_body(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<ClientBodyError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// How to reach the upstream: the proxy's own settings, built from the config's
/// `upstream` section by `app`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `host:port` (the port defaults to 80).
    pub authority: Authority,
    /// A path prefix put before every request's path: empty, or `/app` (no trailing slash).
    pub base_path: String,
    /// Response headers must arrive within this, counted from the end of the request body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept open; 0 turns keep-alive to the upstream off.
    pub pool_max_idle_per_host: usize,
}

/// The application behind hookcast, shared by every request.
#[derive(Debug, Clone)]
pub struct Upstream {
    pool: pool::Pool,
    authority: Authority,
    base_path: String,
    timeout: Duration,
}

impl Upstream {
    pub fn new(config: &Settings) -> Self {
        Upstream {
            pool: pool::Pool::new(
                config.authority.clone(),
                config.connect_timeout,
                config.pool_idle_timeout,
                config.pool_max_idle_per_host,
            ),
            authority: config.authority.clone(),
            base_path: config.base_path.clone(),
            timeout: config.timeout,
        }
    }

    /// Passes a request on and its answer back, or answers the failure.
    pub async fn pass(&self, req: Request<Body>) -> Response<Body> {
        match self.send(req).await {
            Ok(resp) => relay(resp),
            Err(e) => e.into_response(),
        }
    }

    /// The request as the upstream gets it, for both paths (hyper's and [`h1`]):
    /// origin-form target under `base_path`, hop-by-hop headers out,
    /// `X-Forwarded-*` in, `Host` kept (or the upstream's own name), HTTP/1.1.
    fn rewrite(
        &self,
        parts: &mut http::request::Parts,
        upgrade: bool,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<(), Error> {
        // HTTP/2 clients send no Host header, only the authority.
        let host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        // `CONNECT host:port` and `OPTIONS *` address hookcast, not a resource of the app.
        if parts.method == Method::CONNECT || !target.starts_with('/') {
            return Err(Error::Target);
        }
        // Origin-form: the connection is to the upstream already.
        let path_and_query = if self.base_path.is_empty() {
            // Shares the client's bytes: nothing to build without a prefix.
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"))
        } else {
            PathAndQuery::try_from(format!("{}{target}", self.base_path))
                .map_err(|_| Error::Target)?
        };
        parts.uri = Uri::from(path_and_query);

        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        // hyper has already answered `100 Continue` when the body is first read.
        parts.headers.remove(header::EXPECT);
        headers::add_forwarded(&mut parts.headers, client_ip, host.as_ref());
        // Without one from the client (HTTP/1.0), the upstream's own name.
        let host = host.or_else(|| {
            let a = &self.authority;
            let name = if a.port_u16() == Some(80) {
                a.host()
            } else {
                a.as_str()
            };
            HeaderValue::from_str(name).ok()
        });
        if let Some(h) = host {
            parts.headers.insert(header::HOST, h);
        }
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        Ok(())
    }

    /// Sends a request to the upstream and returns its response head with the body
    /// still streaming. An accepted upgrade is joined to the client's connection here.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Incoming>, Error> {
        let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let client_ip = parts.extensions.get::<ClientAddr>().map(|c| c.0.ip());
        self.rewrite(&mut parts, upgrade, client_ip)?;

        let (sent_tx, sent_rx) = if http_body::Body::is_end_stream(&body) {
            (None, None)
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(rx))
        };
        let mut pending = std::pin::pin!(self.pool.send(Request::from_parts(
            parts,
            body::Outgoing::new(body, sent_tx),
        )));
        // upstream.timeout counts from the end of the request body: a long upload
        // is not a slow answer. An answer that comes before the end is taken.
        let mut early = None;
        if let Some(sent) = sent_rx {
            tokio::select! {
                biased;
                r = &mut pending => early = Some(r),
                _ = sent => {}
            }
        }
        let answered = match early {
            Some(r) => Ok(r),
            None => tokio::time::timeout(self.timeout, pending).await,
        };
        let mut resp = match answered {
            Err(_) => return Err(Error::Timeout(self.timeout)),
            Ok(Err(e)) if caused_by_client_body(&e) => return Err(Error::ClientBody),
            Ok(Err(e)) => return Err(Error::Unavailable(e)),
            Ok(Ok(resp)) => resp,
        };

        let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switched && let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
        }
        headers::strip_hop_by_hop(resp.headers_mut(), switched);
        record(Outcome::Answered(resp.status()));
        Ok(resp)
    }
}

/// Relays the upstream's response, its body watched for a break-off.
pub fn relay(resp: Response<Incoming>) -> Response<Body> {
    resp.map(|b| body::Watched::new(b).boxed())
}

/// Copies bytes both ways between the two upgraded connections until either closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
    }
}

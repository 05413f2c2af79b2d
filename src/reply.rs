//! Response helpers: the body type every handler returns, and JSON errors
//! shaped `{"error":"<code>","message":"<sentence>"}`, 405 among them.

use bytes::Bytes;
use http::header::{self, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

/// Errors a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response hookcast sends.
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An HTML page under a Content-Security-Policy; never cached by the browser.
pub fn html(page: Bytes, csp: &'static str) -> Response<Body> {
    use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY};
    let mut resp = Response::new(full(page));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    resp
}

/// A JSON error: a stable machine code and one human sentence.
pub fn error(status: StatusCode, code: &str, message: impl AsRef<str>) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message.as_ref() }),
    )
}

/// A request whose body streams on as it arrives.
pub fn streamed(req: Request<Incoming>) -> Request<Body> {
    req.map(|b| b.map_err(Into::into).boxed())
}

/// The sentence of a 405.
pub fn accepts_only(allowed: &[Method]) -> String {
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
pub fn method_not_allowed(allowed: &[Method]) -> Response<Body> {
    let list = allow_list(allowed);
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        accepts_only(allowed),
    );
    if let Ok(v) = HeaderValue::from_str(&list) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

/// One chunk with no declared length, so no `Content-Length` is sent: for
/// event-stream answers, which must never carry one.
pub fn chunk(bytes: Bytes) -> Body {
    OneChunk(Some(bytes)).boxed()
}

#[derive(Debug)]
struct OneChunk(Option<Bytes>);

impl http_body::Body for OneChunk {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }
}

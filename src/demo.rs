//! The demo page at `/_hookcast/`: one self-contained HTML file, served when `demo: true`.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::reply::{self, Body};

const PAGE: &str = include_str!("demo.html");

pub fn serve(enabled: bool, method: &Method, path: &str) -> Response<Body> {
    if !enabled || !(path == "/_hookcast/" || path == "/_hookcast") {
        return reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Nothing is served at {path}."),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        return reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "The demo page accepts only GET.",
        );
    }
    if path == "/_hookcast" {
        let mut resp = Response::new(reply::full(""));
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/_hookcast/"));
        return resp;
    }
    let mut resp = Response::new(reply::full(PAGE));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        ),
    );
    resp
}

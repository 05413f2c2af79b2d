//! The demo page at `/_hookcast/`: one self-contained HTML file, served when `demo: true`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::config::Config;
use crate::reply::{self, Body};

const PAGE: &str = include_str!("demo.html");

/// The page with the configured `sse.path` and stream routes filled in; built
/// once per config.
pub fn page(config: &Config) -> Bytes {
    let streams = config.streams.listing().to_string();
    Bytes::from(
        PAGE.replace("{{SSE_PATH}}", &attribute(&config.sse.path))
            .replace("{{STREAMS}}", &attribute(&streams)),
    )
}

/// Text made safe inside a double-quoted HTML attribute.
fn attribute(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// Answers `/_hookcast` and everything under it.
pub fn serve(page: Option<&Bytes>, method: &Method, path: &str) -> Response<Body> {
    let Some(page) = page.filter(|_| path == "/_hookcast/" || path == "/_hookcast") else {
        return reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Nothing is served at {path}."),
        );
    };
    if method != Method::GET && method != Method::HEAD {
        let mut resp = reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "The demo page accepts only GET.",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if path == "/_hookcast" {
        let mut resp = Response::new(reply::full(""));
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/_hookcast/"));
        return resp;
    }
    reply::html(
        page.clone(),
        "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:",
    )
}

//! CORS for the event stream: which page origins may open it, and the preflight
//! that event-source-polyfill's custom headers trigger.

use std::fmt;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::reply::{self, Body};

/// Request headers a cross-origin subscriber may always send: a token, the
/// resume point, and what polyfills add.
const ALLOW_HEADERS: &str = "Authorization, Last-Event-ID, Cache-Control, Accept, X-Requested-With";

/// How long browsers may cache a preflight answer.
const MAX_AGE_SECS: &str = "600";

/// `cors`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Empty means any origin (`*`).
    pub origins: Vec<String>,
    pub credentials: bool,
    /// The `Access-Control-Allow-Headers` answer: [`ALLOW_HEADERS`], then
    /// `subscribers.upstream.pass_headers` and `cors.allow_headers`.
    pub allow_headers: HeaderValue,
}

impl Cors {
    /// `extra_headers` are allowed in preflights besides [`ALLOW_HEADERS`].
    pub fn new(
        origins: Vec<String>,
        credentials: bool,
        extra_headers: &[header::HeaderName],
    ) -> Self {
        let mut list = ALLOW_HEADERS.to_owned();
        for h in extra_headers {
            let known = list.split(", ").any(|k| k.eq_ignore_ascii_case(h.as_str()));
            if !known {
                list.push_str(", ");
                list.push_str(h.as_str());
            }
        }
        Cors {
            origins,
            credentials,
            allow_headers: HeaderValue::from_str(&list)
                .unwrap_or_else(|_| HeaderValue::from_static(ALLOW_HEADERS)),
        }
    }

    fn any(&self) -> bool {
        self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for this request, if its origin is allowed.
    fn allowed(&self, req: &HeaderMap) -> Option<HeaderValue> {
        let origin = req.get(header::ORIGIN)?;
        if self.any() {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(o))
            .then(|| origin.clone())
    }

    /// Adds the CORS headers of an answer to `req` (none for an origin not allowed).
    pub fn apply(&self, req: &HeaderMap, h: &mut HeaderMap) {
        let allow = self.allowed(req);
        if !self.any() {
            // The answer depends on Origin, so caches must key on it.
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(origin) = allow {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            if self.credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
    }

    /// The answer to `OPTIONS` on the stream path. An origin that is not allowed
    /// gets the same 204 without CORS headers, which the browser treats as a refusal.
    pub fn preflight(&self, req: &HeaderMap) -> Response<Body> {
        let mut resp = options_answer();
        if self.allowed(req).is_some() && req.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                self.allow_headers.clone(),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECS),
            );
        }
        self.apply(req, resp.headers_mut());
        resp
    }
}

/// `204` with `Allow`: the answer to `OPTIONS` on the stream path.
pub fn options_answer() -> Response<Body> {
    let mut resp = Response::new(reply::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, OPTIONS"));
    resp
}

/// Why a `cors.allow_origins` entry is not an origin; each variant holds the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// No `://`.
    NoScheme(String),
    /// A scheme other than http or https.
    Scheme(String),
    NoHost(String),
    /// `https://app.example.com/`: browsers send no path; `bare` is the origin meant.
    Path {
        origin: String,
        bare: String,
    },
    Wildcard(String),
    /// Characters no host or port has.
    Invalid(String),
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginError::NoScheme(s) => write!(
                f,
                "`{s}` is not an origin; write scheme://host[:port], e.g. https://app.example.com"
            ),
            OriginError::Scheme(s) => {
                write!(f, "`{s}`: an origin starts with http:// or https://")
            }
            OriginError::NoHost(s) => write!(f, "`{s}` has no host"),
            OriginError::Path { origin, bare } => write!(
                f,
                "`{origin}` is not an origin: browsers send no path, not even a trailing `/`; write `{bare}`"
            ),
            OriginError::Wildcard(s) => write!(
                f,
                "`{s}`: wildcards are not supported inside an origin; list each origin, or use \"*\" alone"
            ),
            OriginError::Invalid(s) => {
                write!(f, "`{s}` is not an origin; write scheme://host[:port]")
            }
        }
    }
}

impl std::error::Error for OriginError {}

/// Checks one configured origin: `scheme://host[:port]`, nothing after.
pub fn check_origin(s: &str) -> Result<String, OriginError> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(OriginError::NoScheme(s.to_owned()));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(OriginError::Scheme(s.to_owned()));
    }
    if rest.is_empty() {
        return Err(OriginError::NoHost(s.to_owned()));
    }
    if rest.contains('/') {
        return Err(OriginError::Path {
            origin: s.to_owned(),
            bare: format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()),
        });
    }
    if rest.contains('*') {
        return Err(OriginError::Wildcard(s.to_owned()));
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return Err(OriginError::Invalid(s.to_owned()));
    }
    Ok(s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_headers_add_the_configured_ones_once() {
        let c = Cors::new(
            vec![],
            false,
            &[
                header::HeaderName::from_static("x-access-token"),
                header::AUTHORIZATION,
            ],
        );
        assert_eq!(
            c.allow_headers,
            "Authorization, Last-Event-ID, Cache-Control, Accept, X-Requested-With, x-access-token"
        );
    }

    #[test]
    fn origins() {
        assert_eq!(
            check_origin("https://App.example.com:8443").unwrap(),
            "https://app.example.com:8443"
        );
        assert!(check_origin("http://[::1]:3000").is_ok());
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "ftp://x",
            "https://",
            "https://*.example.com",
            "https://a b",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_origin("https://app.example.com/"),
            Err(OriginError::Path {
                origin: "https://app.example.com/".into(),
                bare: "https://app.example.com".into()
            })
        );
    }
}

//! `upstream:`: the application hookcast stands in front of.

use std::fmt;
use std::time::Duration;

use super::{Checker, raw};

/// Where proxied requests go: plain HTTP to one host.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` (the port defaults to 80).
    pub authority: http::uri::Authority,
    /// A path prefix put before every request's path: empty, or `/app` (no trailing slash).
    pub base_path: String,
    /// Response headers must arrive within this.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept open; 0 turns keep-alive to the upstream off.
    pub pool_max_idle_per_host: usize,
}

impl Upstream {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 256;
}

impl Checker<'_> {
    pub(super) fn upstream(&mut self, raw: raw::Upstream) -> Option<Upstream> {
        let ms = Duration::from_millis(1);
        let timeout = self.duration(
            "upstream.timeout",
            raw.timeout,
            Upstream::DEFAULT_TIMEOUT,
            ms,
        );
        let connect_timeout = self.duration(
            "upstream.connect_timeout",
            raw.connect_timeout,
            Upstream::DEFAULT_CONNECT_TIMEOUT,
            ms,
        );
        let pool_idle_timeout = self.duration(
            "upstream.pool_idle_timeout",
            raw.pool_idle_timeout,
            Upstream::DEFAULT_POOL_IDLE_TIMEOUT,
            ms,
        );
        let pool_max_idle_per_host = raw
            .pool_max_idle_per_host
            .map_or(Upstream::DEFAULT_POOL_MAX_IDLE_PER_HOST, |v| {
                usize::try_from(v.value).unwrap_or(usize::MAX)
            });
        let (authority, base_path) = match parse_upstream_url(&raw.url.value) {
            Ok(parsed) => parsed,
            Err(msg) => {
                self.error(&raw.url.referenced, format!("upstream.url: {msg}"));
                return None;
            }
        };
        Some(Upstream {
            authority,
            base_path,
            timeout,
            connect_timeout,
            pool_idle_timeout,
            pool_max_idle_per_host,
        })
    }
}

/// Why `upstream.url` is not a plain-HTTP address; each variant holds the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlError {
    NotUrl(String),
    Https(String),
    Scheme { url: String, scheme: String },
    NoScheme(String),
    NoHost(String),
    Credentials(String),
    QueryOrFragment(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::NotUrl(url) => {
                write!(f, "`{url}` is not a URL; write e.g. http://127.0.0.1:3000")
            }
            UrlError::Https(url) => write!(
                f,
                "`{url}`: hookcast talks plain HTTP to the upstream; TLS to the upstream is left to nginx or the ingress, so use an http:// address (e.g. the application's port on localhost)"
            ),
            UrlError::Scheme { url, scheme } => write!(
                f,
                "`{url}`: scheme `{scheme}` is not supported; write http://HOST:PORT"
            ),
            UrlError::NoScheme(url) => write!(f, "`{url}` has no scheme; write http://HOST:PORT"),
            UrlError::NoHost(url) => write!(f, "`{url}` has no host; write http://HOST:PORT"),
            UrlError::Credentials(url) => write!(
                f,
                "`{url}` carries credentials; hookcast passes the client's own Authorization instead"
            ),
            UrlError::QueryOrFragment(url) => write!(
                f,
                "`{url}` has a query or fragment; requests are passed with their own query"
            ),
        }
    }
}

/// Splits `http://host[:port][/prefix]` into its authority and path prefix.
fn parse_upstream_url(url: &str) -> Result<(http::uri::Authority, String), UrlError> {
    let uri: http::Uri = url.parse().map_err(|_| UrlError::NotUrl(url.to_owned()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(UrlError::Https(url.to_owned())),
        Some(other) => {
            return Err(UrlError::Scheme {
                url: url.to_owned(),
                scheme: other.to_owned(),
            });
        }
        None => return Err(UrlError::NoScheme(url.to_owned())),
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(UrlError::NoHost(url.to_owned()));
    };
    if authority.as_str().contains('@') {
        return Err(UrlError::Credentials(url.to_owned()));
    }
    if authority.host().is_empty() {
        return Err(UrlError::NoHost(url.to_owned()));
    }
    if url.contains('?') || url.contains('#') {
        return Err(UrlError::QueryOrFragment(url.to_owned()));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok((authority, base_path))
}

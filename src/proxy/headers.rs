//! Header rewriting for proxied messages: hop-by-hop headers out, `X-Forwarded-*` in.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// Headers that describe one connection (RFC 9110 §7.6.1), plus `Proxy-Connection`
/// and `Keep-Alive`, which old clients still send. `Trailer` is not one: it announces
/// end-to-end trailer fields, and hyper sends trailers only for fields it names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The comma-separated tokens of a header value, trimmed (not lowercased:
/// compare with `eq_ignore_ascii_case`).
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Calls `f` with each token of every `name` header; stops when `f` says so.
fn each_token(headers: &HeaderMap, name: &HeaderName, mut f: impl FnMut(&[u8]) -> bool) {
    for v in headers.get_all(name) {
        for t in tokens(v.as_bytes()) {
            if !f(t) {
                return;
            }
        }
    }
}

/// Whether any `name` header has the token `token` (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    let mut found = false;
    each_token(headers, name, |t| {
        found = t.eq_ignore_ascii_case(token.as_bytes());
        !found
    });
    found
}

/// Whether `name` (any case) is one of [`HOP_BY_HOP`].
fn listed(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

/// Whether a `Connection` token takes the header `name` away: any header but
/// `Host`, which a `Connection` header must not take away.
fn named_by(token: &[u8], name: &[u8]) -> bool {
    token.eq_ignore_ascii_case(name) && !name.eq_ignore_ascii_case(b"host")
}

/// Whether the message asks to switch protocols (`Connection: upgrade` and an `Upgrade`).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && has_token(headers, &header::CONNECTION, "upgrade")
}

/// Removes hop-by-hop headers and every header that `Connection` names. With
/// `upgrade`, `Upgrade` and `Connection: upgrade` are kept so the switch reaches the
/// other side; `TE: trailers` is kept because without it the other side sends no trailers.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none: one pass over the names (cheap comparisons of
    // standard headers) spares a hashed removal per hop-by-hop name.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    each_token(headers, &header::CONNECTION, |t| {
        if let Ok(name) = HeaderName::from_bytes(t)
            && named_by(t, name.as_str().as_bytes())
        {
            named.push(name);
        }
        true
    });
    let te_trailers = has_token(headers, &header::TE, "trailers");
    let upgrade_value = upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(v) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, v);
    }
}

/// [`strip_hop_by_hop`] (no upgrade) for a head copied as bytes: calls `keep`
/// with each header it would keep, in order, and says whether `TE: trailers`
/// is to be added back.
pub(crate) fn each_end_to_end<'h>(
    headers: &'h [httparse::Header<'h>],
    mut keep: impl FnMut(&'h httparse::Header<'h>),
) -> bool {
    // As in `strip_hop_by_hop`: most messages carry none.
    if !headers.iter().any(|h| listed(h.name.as_bytes())) {
        headers.iter().for_each(keep);
        return false;
    }
    let with = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| tokens(h.value))
    };
    let te_trailers = with("te").any(|t| t.eq_ignore_ascii_case(b"trailers"));
    for h in headers {
        let name = h.name.as_bytes();
        if !listed(name) && !with("connection").any(|t| named_by(t, name)) {
            keep(h);
        }
    }
    te_trailers
}

/// Appends the client to `X-Forwarded-For`, and sets `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (the Host the client sent, port included).
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    client: Option<IpAddr>,
    host: Option<&HeaderValue>,
) {
    if let Some(ip) = client {
        let mut text = [0u8; 64];
        let ip = ip_text(ip, &mut text);
        let mut value: Vec<u8> = Vec::with_capacity(64);
        for v in headers.get_all(&X_FORWARDED_FOR) {
            if !value.is_empty() {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(v.as_bytes());
        }
        if !value.is_empty() {
            value.extend_from_slice(b", ");
        }
        value.extend_from_slice(ip);
        // Joined from valid values and an IP address, so always valid.
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

/// `ip` as text in `buf`: IPv4 by hand, as `Display` costs about ten times more
/// per request; IPv6 (at most 45 bytes) through `Display`.
fn ip_text(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    use std::io::Write;
    let mut len = 0;
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
        }
        IpAddr::V6(v6) => {
            let mut w = &mut buf[..];
            let _ = write!(w, "{v6}");
            len = 64 - w.len();
        }
    }
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Session-Hop"),
            ("connection", "x-other"),
            ("x-session-hop", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip, trailers"),
            ("upgrade", "websocket"),
            ("host", "example.com"),
            ("x-kept", "3"),
            ("trailer", "x-checksum"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["host", "te", "trailer", "x-kept"]);
        assert_eq!(h["te"], "trailers");
    }

    /// The rule on a head copied as bytes is the rule on a header map.
    #[test]
    fn a_head_copied_as_bytes_keeps_what_the_map_keeps() {
        let cases: &[&[(&str, &str)]] = &[
            &[("host", "a"), ("x-kept", "1"), ("accept", "*/*")],
            &[
                ("Connection", "keep-alive, X-Session-Hop"),
                ("connection", "x-other"),
                ("X-Session-Hop", "1"),
                ("x-other", "2"),
                ("Keep-Alive", "timeout=5"),
                ("transfer-encoding", "chunked"),
                ("TE", "gzip, trailers"),
                ("Host", "example.com"),
                ("x-kept", "3"),
                ("x-kept", "4"),
            ],
            &[("connection", "host, close"), ("host", "example.com")],
            &[
                ("te", "gzip"),
                ("upgrade", "h2c"),
                ("proxy-connection", "x"),
            ],
        ];
        for pairs in cases {
            let mut map = map(pairs);
            strip_hop_by_hop(&mut map, false);
            let raw: Vec<_> = pairs
                .iter()
                .map(|(k, v)| httparse::Header {
                    name: k,
                    value: v.as_bytes(),
                })
                .collect();
            let mut kept = HeaderMap::new();
            let te = each_end_to_end(&raw, |h| {
                kept.append(
                    HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(h.value).unwrap(),
                );
            });
            if te {
                kept.insert(header::TE, HeaderValue::from_static("trailers"));
            }
            assert_eq!(kept, map, "{pairs:?}");
        }
    }

    #[test]
    fn keeps_upgrade_when_asked() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn connection_cannot_remove_host() {
        let mut h = map(&[("connection", "host"), ("host", "example.com")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["host"], "example.com");
    }

    #[test]
    fn forwarded_headers() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let host = HeaderValue::from_static("app.example.com:8443");
        add_forwarded(&mut h, Some("127.0.0.1".parse().unwrap()), Some(&host));
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 198.51.100.1, 127.0.0.1");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.example.com:8443");
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.168.100.9",
            "::1",
            "2001:db8::ff00:42:8329",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut buf = [0u8; 64];
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_is_left_alone() {
        let mut h = map(&[("host", "example.com"), ("x-kept", "1"), ("accept", "*/*")]);
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }
}

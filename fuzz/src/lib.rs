//! What each fuzz target checks, as plain functions: the AFL binaries in
//! `fuzz_targets/` run them under the fuzzer, and `tests/corpus.rs` replays the
//! committed corpus through them with `cargo test` (no fuzzer needed).

use std::time::Duration;

use hookcast::fast::{Head, classify, head_incomplete};
use hookcast::route::PathPattern;
use hookcast::template::{Input, Template};
use hookcast::verify::timestamped::{parse_standard_signatures, parse_stripe};
use hookcast::verify::{Request, Scheme, Secret, Verifier};
use http::{HeaderMap, HeaderValue};

/// A target: it panics on an input that breaks what it checks.
pub type Target = fn(&[u8]);

/// The targets by name, as their corpus folders and binaries are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("http1_head", http1_head),
    ("route_match", route_match),
    ("signature_headers", signature_headers),
    ("template", template),
];

/// The config loader: never panics, and every error has a 1-based location.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(hookcast::config::Error::Invalid { diagnostics, .. }) =
        hookcast::config::from_yaml_with_env("f.yaml", text, &|_| None)
    {
        assert!(diagnostics.iter().all(|d| d.line >= 1 && d.column >= 1));
    }
}

/// The request head reader of the HTTP/1 fast path. The first byte picks where
/// the bytes after it are cut in two, as if they came in two reads: once the
/// first part decides (stream or not), the whole must decide the same, or the
/// answer would depend on how the client's packets fell. A head complete in the
/// first part is complete in the whole too (it is read no further for hyper).
pub fn http1_head(data: &[u8]) {
    let Some((&cut, buf)) = data.split_first() else {
        return;
    };
    let is_stream = |path: &str| path == "/events" || path.starts_with("/users/");
    let whole = classify(buf, &is_stream);
    // Whether to read on for hyper: a head taken as a stream is complete.
    let incomplete = head_incomplete(buf);
    if let Head::Stream(parts) = &whole {
        assert!(!incomplete, "a stream head taken before its end");
        assert_eq!(parts.method, http::Method::GET);
        assert!(is_stream(parts.uri.path()), "{:?}", parts.uri);
        for name in [
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
            http::header::UPGRADE,
            http::header::EXPECT,
        ] {
            assert!(!parts.headers.contains_key(&name), "{name} taken");
        }
    }
    let first = &buf[..usize::from(cut).min(buf.len())];
    match (classify(first, &is_stream), &whole) {
        (Head::Partial, _) | (Head::Other, Head::Other) => {}
        (Head::Stream(a), Head::Stream(b)) => {
            assert_eq!(a.uri, b.uri);
            assert_eq!(a.version, b.version);
            assert_eq!(a.headers, b.headers);
        }
        (a, b) => panic!("{a:?} after {} bytes, {b:?} after all", first.len()),
    }
    if !first.is_empty() && !head_incomplete(first) {
        assert!(!incomplete, "complete after {} bytes, not after all", first.len());
    }
}

/// Route paths: the first line is a route pattern, the second a request path.
pub fn route_match(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, path) = text.split_once('\n').unwrap_or((&text, "/"));
    if let Ok(p) = PathPattern::parse(pattern) {
        let _ = p.matches(path);
    }
}

/// Signature header parsers and every verifier, on arbitrary header values and bodies.
pub fn signature_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_stripe(&text);
    let _ = parse_standard_signatures(&text);
    let (head, body) = data.split_at(data.len() / 2);
    let Ok(value) = HeaderValue::from_bytes(head) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for name in [
        "x-hub-signature-256",
        "stripe-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "x-shopify-hmac-sha256",
        "authorization",
        "x-twilio-signature",
        "content-type",
    ] {
        headers.insert(name, value.clone());
    }
    for scheme in [
        Scheme::Github,
        Scheme::Stripe,
        Scheme::StandardWebhooks,
        Scheme::Slack,
        Scheme::Shopify,
        Scheme::Token {
            header: http::header::AUTHORIZATION,
        },
        Scheme::Twilio {
            public_url: "https://x.test".into(),
        },
    ] {
        let v = Verifier::new(
            scheme,
            vec![Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
            Duration::from_secs(300),
        )
        .expect("a valid secret");
        let _ = v.verify(&Request {
            headers: &headers,
            path_and_query: "/h",
            body,
            now: 1_700_000_000,
        });
    }
}

/// Template parsing and rendering: the first line is the template, the rest the body.
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (src, body) = text.split_once('\n').unwrap_or((&text, ""));
    let Ok(t) = Template::parse(src) else { return };
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let headers = HeaderMap::new();
    let params = vec![("room".into(), "a".to_owned())];
    let _ = t.render(&Input {
        path_params: &params,
        query: Some(body),
        headers: &headers,
        body: body.as_bytes(),
        json: json.as_ref(),
        response: None,
        identity: json.as_ref(),
    });
}

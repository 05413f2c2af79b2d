//! Property tests for the pure parsers that face untrusted input: signature
//! headers, the template renderer, the route matcher and the config loader. None
//! may panic; a config error always carries a location. (The SSE encoder's
//! properties are in `tests/vectors.rs`.)

use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::Value;

use hookcast::config;
use hookcast::route::{Lookup, PathPattern};
use hookcast::template::{Input, Template};
use hookcast::verify::timestamped::{parse_standard_signatures, parse_stripe};
use hookcast::verify::{Request, Scheme, Secret, Verifier};

fn schemes() -> Vec<Scheme> {
    vec![
        Scheme::Github,
        Scheme::Stripe,
        Scheme::StandardWebhooks,
        Scheme::Slack,
        Scheme::Shopify,
        Scheme::HmacSha256 {
            header: HeaderName::from_static("x-sig"),
            prefix: "sha256=".into(),
            encoding: hookcast::verify::Encoding::Hex,
        },
        Scheme::Token {
            header: http::header::AUTHORIZATION,
        },
        Scheme::Twilio {
            public_url: "https://x.test".into(),
        },
    ]
}

const SIGNATURE_HEADERS: [&str; 11] = [
    "x-hub-signature-256",
    "stripe-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "x-sig",
    "authorization",
    "x-twilio-signature",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn stripe_header_parser_never_panics(s in ".{0,200}") {
        if let Some(h) = parse_stripe(&s) {
            prop_assert!(h.timestamp >= 0);
            prop_assert!(!h.v1.is_empty());
        }
    }

    #[test]
    fn stripe_header_parser_on_near_valid_input(
        t in "[0-9]{0,12}",
        sigs in proptest::collection::vec("[0-9a-fA-F]{0,64}", 0..4),
        junk in "[,=tv01 ]{0,10}",
    ) {
        let mut s = format!("t={t}");
        for sig in &sigs {
            s.push_str(&format!(",v1={sig}"));
        }
        s.push_str(&junk);
        let _ = parse_stripe(&s);
    }

    #[test]
    fn standard_signature_parser_never_panics(s in ".{0,200}") {
        for sig in parse_standard_signatures(&s) {
            prop_assert!(sig.len() <= s.len());
        }
    }

    /// Random header values never verify, and never panic, under any scheme.
    #[test]
    fn verifiers_never_panic_and_never_accept_noise(
        values in proptest::collection::vec("[ -~]{0,80}", SIGNATURE_HEADERS.len()),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        now in any::<i64>(),
    ) {
        let mut headers = HeaderMap::new();
        for (name, v) in SIGNATURE_HEADERS.iter().zip(&values) {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.insert(*name, v);
            }
        }
        for scheme in schemes() {
            let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
            let v = Verifier::new(scheme, vec![secret], Duration::from_secs(300)).unwrap();
            let got = v.verify(&Request { headers: &headers, path_and_query: "/h?x=1", body: &body, now });
            prop_assert!(got.is_err());
        }
    }

    #[test]
    fn templates_parse_and_render_without_panicking(
        src in "[{}a-z:/0-9_. -]{0,40}",
        body in proptest::collection::vec(any::<u8>(), 0..40),
        query in proptest::option::of("[a-z=&%0-9]{0,20}"),
    ) {
        if let Ok(t) = Template::parse(&src) {
            let json: Option<Value> = serde_json::from_slice(&body).ok();
            let headers = HeaderMap::new();
            let params = vec![("room".into(), "a".to_owned())];
            let _ = t.render(&Input {
                path_params: &params,
                query: query.as_deref(),
                headers: &headers,
                body: &body,
                json: json.as_ref(),
                response: None,
                identity: None,
            });
        }
    }

    #[test]
    fn path_patterns_match_without_panicking(
        pattern in "(/([a-z]{1,3}|\\{[a-z]{1,3}\\})){0,4}/?",
        path in "(/[a-z{}%]{0,3}){0,5}/?",
    ) {
        if let Ok(p) = PathPattern::parse(&pattern)
            && let Some(params) = p.matches(&path)
        {
            let names: Vec<&str> = p.params().collect();
            prop_assert_eq!(params.len(), names.len());
        }
    }

    #[test]
    fn the_router_answers_every_path(path in "/[ -~]{0,40}", post in any::<bool>()) {
        let c = config::from_yaml(
            "p.yaml",
            "routes:\n  - name: a\n    match:\n      path: /hooks/{room}\n    publish:\n      topic: \"room.{path:room}\"\n  - name: b\n    match:\n      path: /x/y\n      method: PUT\n    publish:\n      topic: \"x.y\"\n",
        ).unwrap();
        let method = if post { Method::POST } else { Method::GET };
        match c.router.lookup(&method, &path) {
            Lookup::Candidates(c) => prop_assert!(!c.is_empty()),
            Lookup::WrongMethod(m) => prop_assert!(!m.is_empty()),
            Lookup::NoRoute => {}
        }
    }

    /// The reasons the delivery log and `hookcast route` give agree with the choice
    /// the webhook path makes: the first route without a reason is the route taken.
    #[test]
    fn explained_reasons_agree_with_the_route_chosen(
        path in prop_oneof![Just("/h/a".to_owned()), Just("/h/b/c".to_owned()), "/[a-h/]{0,6}"],
        put in any::<bool>(),
        kind in prop_oneof![Just(None), Just(Some("x")), Just(Some("y"))],
        body in prop_oneof![Just(r#"{"t":"a"}"#), Just(r#"{"t":"b"}"#), Just("{"), Just("[]")],
    ) {
        let c = config::from_yaml(
            "p.yaml",
            r#"routes:
  - { name: put, match: { path: "/h/{n}", method: PUT }, publish: { topic: t } }
  - { name: kind-x, match: { path: "/h/{n}", headers: { X-Kind: x } }, publish: { topic: t } }
  - { name: has-kind, match: { path: "/h/{n}", headers: { X-Kind: "*" }, json: { "/t": "a" } }, publish: { topic: t } }
  - { name: json-a, match: { path: "/h/{n}", json: { "/t": "a" } }, publish: { topic: t } }
  - { name: deep, match: { path: "/h/b/c" }, publish: { topic: t } }
"#,
        ).unwrap();
        let method = if put { Method::PUT } else { Method::POST };
        let mut headers = http::HeaderMap::new();
        if let Some(k) = kind {
            headers.insert("x-kind", k.parse().unwrap());
        }
        let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let explained = c
            .router
            .explain(&method, &path, &headers, json.as_ref())
            .find(|(_, unmet)| unmet.is_none())
            .map(|(r, _)| r.name.to_string());
        let chosen = match c.router.lookup(&method, &path) {
            Lookup::Candidates(cands) => cands
                .into_iter()
                .find(|(r, _)| r.accepts(&headers, json.as_ref()))
                .map(|(r, _)| r.name.to_string()),
            _ => None,
        };
        prop_assert_eq!(explained, chosen);
    }

    /// Arbitrary text as a config file: an answer, never a panic, and every error
    /// with a 1-based location.
    #[test]
    fn config_loader_always_locates_its_errors(text in "[ -~\n]{0,300}") {
        check_config(&text)?;
    }

    /// Near-valid configs, built from real keys and values, reach the semantic checks.
    #[test]
    fn config_loader_on_near_valid_files(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("listen: \"127.0.0.1:8080\"".to_owned()),
                Just("cors:\n  allow_origins: [\"*\"]\n  allow_credentials: true".to_owned()),
                Just("limits:\n  max_connections: 0\n  trusted_proxies: [\"1.2.3.4/99\"]".to_owned()),
                Just("subscribers:\n  auth: jwt\n  jwt:\n    secret_env: HOOKCAST_PROPTEST_UNSET".to_owned()),
                Just("subscribers:\n  auth: upstream\n  upstream:\n    url: \"http://127.0.0.1:1\"".to_owned()),
                Just("routes:\n  - name: r\n    match:\n      path: /h\n    publish:\n      topic: t\n    verify:\n      scheme: github\n      secret_file: /nonexistent".to_owned()),
                Just("sse:\n  heartbeat: 0s".to_owned()),
                "[a-z_]{1,12}: [a-z0-9\"{}\\[\\]]{0,12}",
            ],
            0..6,
        ),
    ) {
        check_config(&lines.join("\n"))?;
    }
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = config::from_yaml("p.yaml", text) {
        let rendered = e.to_string();
        prop_assert!(!rendered.is_empty());
        for line in rendered.lines() {
            let mut parts = line.splitn(4, ':');
            prop_assert_eq!(parts.next(), Some("p.yaml"), "{}", line);
            let l: u64 = parts
                .next()
                .unwrap_or("")
                .parse()
                .map_err(|_| TestCaseError::fail(line.to_owned()))?;
            let c: u64 = parts
                .next()
                .unwrap_or("")
                .parse()
                .map_err(|_| TestCaseError::fail(line.to_owned()))?;
            prop_assert!(l >= 1 && c >= 1, "{}", line);
        }
    }
    Ok(())
}

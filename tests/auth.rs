//! Subscriber authorization (README, "Subscriber authorization") over real sockets:
//! JWT (HS256, RS256, ES256) from each place a token may travel, every refusal with
//! its status and code, the stream ending when the token expires; and forward-auth
//! against a real HTTP endpoint started here: allow, refuse, unreachable ("try
//! later"), and the cache.

mod support;
mod upstream;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use support::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn claims(topics: &[&str], exp_in: i64) -> Value {
    json!({ "sub": "u1", "exp": unix_now() + exp_in, "hookcast": { "subscribe": topics } })
}

/// A JWT-protected hookcast; HS256 secret `jwt-secret` from a file.
async fn jwt_app(secret: &SecretFile, extra: &str) -> TestApp {
    TestApp::spawn(&config(&format!(
        "subscribers:\n  auth: jwt\n  jwt:\n    secret_file: {}\n    cookie: hookcast_token\n{extra}",
        secret.path()
    )))
    .await
}

/// Asserts an open stream (200 and the prelude).
async fn assert_streams(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> SseStream {
    let mut s = open_stream(app.addr, &format!("/events?{query}"), headers).await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(matches!(
        s.next_item_within(PATIENCE).await,
        Some(Item::Retry(_))
    ));
    assert!(matches!(
        s.next_item_within(PATIENCE).await,
        Some(Item::Comment(_))
    ));
    s
}

#[tokio::test]
async fn hs256_token_from_header_cookie_or_query() {
    let secret = SecretFile::new("jwt-secret\n");
    let app = jwt_app(&secret, "").await;
    let t = hs256(&claims(&["room.*"], 600), "jwt-secret");
    let bearer = format!("Bearer {t}");
    let cookie = format!("other=1; hookcast_token={t}");
    let mut by_header = assert_streams(&app, "topic=room.a", &[("Authorization", &bearer)]).await;
    let mut by_cookie = assert_streams(&app, "topic=room.b", &[("Cookie", &cookie)]).await;
    let mut by_query = assert_streams(&app, &format!("topic=room.a&access_token={t}"), &[]).await;
    app.publish("/hooks/a", "to a").await;
    app.publish("/hooks/b", "to b").await;
    assert_eq!(by_header.next_event().await.data, "to a");
    assert_eq!(by_cookie.next_event().await.data, "to b");
    assert_eq!(by_query.next_event().await.data, "to a");
}

#[tokio::test]
async fn jwt_refusals_have_their_status_and_code() {
    let secret = SecretFile::new("jwt-secret");
    let app = jwt_app(&secret, "").await;
    let r = app.get("/events?topic=room.a", &[]).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "token_missing");
    assert_eq!(r.headers["www-authenticate"], "Bearer");

    let forged = hs256(&claims(&["room.*"], 600), "not-the-secret");
    app.get(&format!("/events?topic=room.a&access_token={forged}"), &[])
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "token_invalid");
    app.get(
        "/events?topic=room.a",
        &[("Authorization", "Bearer garbage")],
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "token_invalid");
    let expired = hs256(&claims(&["room.*"], -120), "jwt-secret");
    app.get(
        "/events?topic=room.a",
        &[("Authorization", &format!("Bearer {expired}"))],
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "token_expired");
    // HS384 is not in the default algorithm list of an HMAC secret.
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &claims(&["room.*"], 600),
        &EncodingKey::from_secret(b"jwt-secret"),
    )
    .unwrap();
    app.get(&format!("/events?topic=room.a&access_token={hs384}"), &[])
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "token_invalid");

    let narrow = hs256(&claims(&["room.a", "tenant.7.>"], 600), "jwt-secret");
    let h = format!("Bearer {narrow}");
    assert_streams(
        &app,
        "topic=room.a&topic=tenant.7.*",
        &[("Authorization", &h)],
    )
    .await;
    for (query, outside) in [
        ("room.b", "room.b"),
        ("room.*", "room.*"),
        ("tenant.8.x", "tenant.8.x"),
        ("tenant.%3E", "tenant.>"),
    ] {
        let r = app
            .get(
                &format!("/events?topic=room.a&topic={query}"),
                &[("Authorization", &h)],
            )
            .await;
        r.assert_error(StatusCode::FORBIDDEN, "topic_forbidden");
        assert!(r.json()["message"].as_str().unwrap().contains(outside));
    }
    let no_claim = hs256(
        &json!({ "sub": "u1", "exp": unix_now() + 600 }),
        "jwt-secret",
    );
    app.get(
        "/events?topic=room.a",
        &[("Authorization", &format!("Bearer {no_claim}"))],
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "topic_forbidden");
    // Bad topics are still 400, checked before the token.
    app.get("/events?topic=a..b", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_topic");
}

#[tokio::test]
async fn issuer_audience_and_a_custom_claim() {
    let secret = SecretFile::new("jwt-secret");
    let app = jwt_app(
        &secret,
        "    issuer: https://auth.example.com\n    audience: hookcast\n    topics_claim: /topics\n",
    )
    .await;
    let good = json!({"iss": "https://auth.example.com", "aud": "hookcast", "topics": ["room.a"], "exp": unix_now() + 600});
    let t = hs256(&good, "jwt-secret");
    assert_streams(&app, &format!("topic=room.a&access_token={t}"), &[]).await;
    for (k, v) in [("iss", "https://evil.example.com"), ("aud", "other")] {
        let mut bad = good.clone();
        bad[k] = json!(v);
        let t = hs256(&bad, "jwt-secret");
        app.get(&format!("/events?topic=room.a&access_token={t}"), &[])
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "token_invalid");
    }
}

#[tokio::test]
async fn rs256_and_es256_with_public_keys() {
    let app = TestApp::spawn(&config(&format!(
        "subscribers:\n  auth: jwt\n  jwt:\n    public_key_file: [\"{FIXTURES}/rsa-public.pem\", \"{FIXTURES}/ec-public.pem\"]\n    algorithms: [RS256, ES256]\n"
    )))
    .await;
    let c = claims(&["room.>"], 600);
    let rsa = std::fs::read(format!("{FIXTURES}/rsa-private.pem")).unwrap();
    let ec = std::fs::read(format!("{FIXTURES}/ec-private.pem")).unwrap();
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &c,
        &EncodingKey::from_rsa_pem(&rsa).unwrap(),
    )
    .unwrap();
    let es = encode(
        &Header::new(Algorithm::ES256),
        &c,
        &EncodingKey::from_ec_pem(&ec).unwrap(),
    )
    .unwrap();
    for t in [&rs, &es] {
        assert_streams(
            &app,
            "topic=room.a",
            &[("Authorization", &format!("Bearer {t}"))],
        )
        .await;
    }
    // An HMAC token signed with the public key's bytes must not pass (algorithm confusion).
    let pem = std::fs::read(format!("{FIXTURES}/rsa-public.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(&pem),
    )
    .unwrap();
    app.get(
        "/events?topic=room.a",
        &[("Authorization", &format!("Bearer {confused}"))],
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "token_invalid");
    // A tampered payload fails the RSA signature.
    let mut parts: Vec<&str> = rs.split('.').collect();
    let other = encode(
        &Header::new(Algorithm::RS256),
        &claims(&[">"], 600),
        &EncodingKey::from_rsa_pem(&rsa).unwrap(),
    )
    .unwrap();
    let other_payload = other.split('.').nth(1).unwrap().to_owned();
    parts[1] = &other_payload;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        rs.split('.').nth(2).unwrap()
    );
    app.get(
        "/events?topic=room.a",
        &[("Authorization", &format!("Bearer {tampered}"))],
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "token_invalid");
}

#[tokio::test]
async fn the_stream_ends_when_the_token_expires() {
    let secret = SecretFile::new("jwt-secret");
    let app = jwt_app(&secret, "").await;
    let t = hs256(&claims(&["room.a"], 2), "jwt-secret");
    let mut s = assert_streams(&app, &format!("topic=room.a&access_token={t}"), &[]).await;
    let items = s.until_end().await;
    assert!(s.ended && !s.aborted, "ended cleanly");
    assert!(
        matches!(items.last(), Some(Item::Retry(ms)) if (3000..=6000).contains(ms)),
        "a jittered retry comes last: {items:?}"
    );
}

// ---------------------------------------------------------------- forward-auth

/// An authorization endpoint: answers `status`, records each request.
struct AuthEndpoint {
    server: upstream::Upstream,
    status: Arc<AtomicU16>,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
}

impl AuthEndpoint {
    async fn start() -> AuthEndpoint {
        let status = Arc::new(AtomicU16::new(200));
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, ca, se) = (status.clone(), calls.clone(), seen.clone());
        let server =
            upstream::Upstream::serve(move |req: hyper::Request<hyper::body::Incoming>| {
                ca.fetch_add(1, Ordering::SeqCst);
                se.lock()
                    .unwrap()
                    .push((req.uri().to_string(), req.headers().clone()));
                let mut resp = hyper::Response::new(upstream::full(Bytes::from_static(b"{}")));
                *resp.status_mut() = StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                async move { resp }
            })
            .await;
        AuthEndpoint {
            server,
            status,
            calls,
            seen,
        }
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn upstream_config(url: &str, cache: &str) -> String {
    config(&format!(
        "subscribers:\n  auth: upstream\n  upstream:\n    url: \"{url}\"\n    path: /sse-auth\n    cache: {cache}\n    timeout: 2s\n"
    ))
}

/// A "try later" answer: 200, a jittered retry, then the end.
async fn assert_try_later(app: &TestApp, query: &str, headers: &[(&str, &str)]) {
    let mut s = open_stream(app.addr, &format!("/events?{query}"), headers).await;
    assert_eq!(s.status, StatusCode::OK);
    let items = s.until_end().await;
    assert!(!s.aborted);
    assert!(
        matches!(items.as_slice(), [Item::Retry(ms)] if (3000..=6000).contains(ms)),
        "{items:?}"
    );
}

#[tokio::test]
async fn forward_auth_passes_only_the_named_headers_and_follows_the_answer() {
    let auth = AuthEndpoint::start().await;
    let app = TestApp::spawn(&upstream_config(
        &format!("http://{}", auth.server.addr),
        "0s",
    ))
    .await;
    let headers = [
        ("Cookie", "session=abc"),
        ("Authorization", "Bearer t"),
        ("X-Other", "no"),
    ];
    let mut s = assert_streams(&app, "topic=room.a&topic=room.*", &headers).await;
    {
        let seen = auth.seen.lock().unwrap();
        let (uri, h) = &seen[0];
        assert_eq!(uri, "/sse-auth?topic=room.a&topic=room.*");
        assert_eq!(h["cookie"], "session=abc");
        assert_eq!(h["authorization"], "Bearer t");
        assert!(h.get("x-other").is_none());
    }
    app.publish("/hooks/a", "hi").await;
    assert_eq!(s.next_event().await.data, "hi");

    auth.answer(401);
    let r = app.get("/events?topic=room.a", &headers).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    auth.answer(403);
    app.get("/events?topic=room.a", &headers)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    // Anything else is the endpoint's trouble, not the subscriber's: try later.
    for status in [500, 302, 404] {
        auth.answer(status);
        assert_try_later(&app, "topic=room.a", &headers).await;
    }
}

#[tokio::test]
async fn forward_auth_unreachable_is_try_later() {
    // A port that was just free: nothing listens there.
    let free = free_addr();
    let app = TestApp::spawn(&upstream_config(&format!("http://{free}"), "30s")).await;
    assert_try_later(&app, "topic=room.a", &[]).await;
    assert_try_later(&app, "topic=room.a", &[]).await;
}

#[tokio::test]
async fn forward_auth_answers_are_cached_per_topics_and_headers() {
    let auth = AuthEndpoint::start().await;
    let app = TestApp::spawn(&upstream_config(
        &format!("http://{}", auth.server.addr),
        "60s",
    ))
    .await;
    let alice = [("Cookie", "session=alice")];
    let bob = [("Cookie", "session=bob")];
    drop(assert_streams(&app, "topic=room.a", &alice).await);
    drop(assert_streams(&app, "topic=room.a", &alice).await);
    assert_eq!(auth.calls(), 1, "the second subscription used the cache");
    drop(assert_streams(&app, "topic=room.b", &alice).await);
    assert_eq!(auth.calls(), 2, "other topics are another question");
    auth.answer(403);
    app.get("/events?topic=room.a", &bob)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.get("/events?topic=room.a", &bob)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(auth.calls(), 3, "refusals are cached too");
    // "Try later" is not cached: once the endpoint recovers, the next attempt asks again.
    auth.answer(503);
    let carol = [("Cookie", "session=carol")];
    assert_try_later(&app, "topic=room.a", &carol).await;
    auth.answer(200);
    drop(assert_streams(&app, "topic=room.a", &carol).await);
    assert_eq!(auth.calls(), 5);
}

// ---------------------------------------------------------------- config

#[test]
fn subscriber_auth_config_errors() {
    let e = config_error("subscribers:\n  auth: oauth\n");
    assert!(
        e.starts_with("test.yaml:2:9: subscribers.auth `oauth` is not known"),
        "{e}"
    );
    let e = config_error("subscribers:\n  auth: jwt\n");
    assert!(e.contains("subscribers.jwt must name the keys"), "{e}");
    let e = config_error("subscribers:\n  jwt:\n    secret_env: X\n");
    assert!(
        e.contains("subscribers.jwt is set, but subscribers.auth is none"),
        "{e}"
    );
    let e = config_error(&format!(
        "subscribers:\n  auth: jwt\n  jwt:\n    public_key_file: \"{FIXTURES}/rsa-public.pem\"\n    algorithms: [ES256]\n"
    ));
    assert!(
        e.contains("test.yaml:5:18: subscribers.jwt.algorithms: ES256 needs an EC public key"),
        "{e}"
    );
    let e = config_error(&format!(
        "subscribers:\n  auth: jwt\n  jwt:\n    public_key_file: \"{FIXTURES}/README.md\"\n"
    ));
    assert!(e.contains("is not an RSA or EC public key in PEM"), "{e}");
    let e = config_error(&format!(
        "subscribers:\n  auth: jwt\n  jwt:\n    public_key_file: \"{FIXTURES}/rsa-public.pem\"\n    algorithms: [none]\n"
    ));
    assert!(e.contains("`none` is not supported"), "{e}");
    let e = config_error(&format!(
        "subscribers:\n  auth: jwt\n  jwt:\n    public_key_file: \"{FIXTURES}/rsa-public.pem\"\n    topics_claim: hookcast.subscribe\n"
    ));
    assert!(e.contains("is not a JSON Pointer"), "{e}");
    let e = config_error("subscribers:\n  auth: upstream\n  upstream:\n    path: /auth\n");
    assert!(e.contains("subscribers.upstream.url is missing"), "{e}");
    let e = config_error(
        "subscribers:\n  auth: upstream\n  upstream:\n    url: https://auth.example.com\n",
    );
    assert!(e.contains("https is not supported"), "{e}");
    let e = config_error(
        "subscribers:\n  auth: upstream\n  upstream:\n    url: http://a\n    path: auth\n",
    );
    assert!(
        e.contains("test.yaml:5:11: subscribers.upstream.path `auth` must be a path"),
        "{e}"
    );
}

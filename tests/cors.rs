//! CORS on the event stream (README, "CORS for a separate front-end origin"):
//! allowed origins get the headers (with credentials when configured), others get
//! none; `Vary: Origin` when the answer depends on it; the preflight
//! event-source-polyfill triggers; and the config errors that would make a browser
//! refuse anyway.

mod support;

use http::{Method, StatusCode};

use support::*;

const APP: &str = "https://app.example.com";

async fn options(app: &TestApp, headers: &[(&str, &str)]) -> Reply {
    request(
        app.addr,
        Method::OPTIONS,
        "/events?topic=room.a",
        headers,
        bytes::Bytes::new(),
    )
    .await
}

#[tokio::test]
async fn listed_origins_with_credentials() {
    let app = TestApp::spawn(&config(&format!(
        "cors:\n  allow_origins: [\"{APP}\", \"http://localhost:3000\"]\n  allow_credentials: true\n"
    )))
    .await;
    let s = app.subscribe("topic=room.a", &[("Origin", APP)]).await;
    assert_eq!(s.headers["access-control-allow-origin"], APP);
    assert_eq!(s.headers["access-control-allow-credentials"], "true");
    assert_eq!(s.headers["vary"], "Origin");

    let s = app
        .subscribe("topic=room.a", &[("Origin", "https://evil.example.com")])
        .await;
    assert!(s.headers.get("access-control-allow-origin").is_none());
    assert!(s.headers.get("access-control-allow-credentials").is_none());
    assert_eq!(s.headers["vary"], "Origin");

    // Refusals carry the headers too, so the page can read why.
    let r = app
        .get("/events?topic=a..b", &[("Origin", "http://localhost:3000")])
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_topic");
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "http://localhost:3000"
    );

    // Without an Origin (same-origin or curl) there is nothing to allow.
    let s = app.subscribe("topic=room.a", &[]).await;
    assert!(s.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn preflight_allows_the_headers_polyfills_send() {
    let app = TestApp::spawn(&config(&format!(
        "cors:\n  allow_origins: [\"{APP}\"]\n  allow_credentials: true\n"
    )))
    .await;
    let r = options(
        &app,
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "GET"),
            (
                "Access-Control-Request-Headers",
                "authorization, last-event-id, cache-control",
            ),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.headers["access-control-allow-origin"], APP);
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    let methods = r.headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("GET"), "{methods}");
    let allowed = r.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in ["authorization", "last-event-id", "cache-control"] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }
    assert!(r.headers.contains_key("access-control-max-age"));

    let r = options(
        &app,
        &[
            ("Origin", "https://evil.example.com"),
            ("Access-Control-Request-Method", "GET"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for h in [
        "access-control-allow-origin",
        "access-control-allow-headers",
        "access-control-allow-methods",
    ] {
        assert!(r.headers.get(h).is_none(), "{h}");
    }
}

#[tokio::test]
async fn any_origin_and_no_cors_at_all() {
    let app = TestApp::spawn(&config("cors:\n  allow_origins: [\"*\"]\n")).await;
    let s = app
        .subscribe("topic=room.a", &[("Origin", "https://anyone.example")])
        .await;
    assert_eq!(s.headers["access-control-allow-origin"], "*");
    assert!(s.headers.get("access-control-allow-credentials").is_none());
    assert!(
        s.headers.get("vary").is_none(),
        "the answer does not depend on Origin"
    );

    let app = TestApp::spawn(&config("")).await;
    let s = app.subscribe("topic=room.a", &[("Origin", APP)]).await;
    assert!(s.headers.get("access-control-allow-origin").is_none());
    let r = options(
        &app,
        &[("Origin", APP), ("Access-Control-Request-Method", "GET")],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.headers["allow"], "GET, OPTIONS");
    assert!(r.headers.get("access-control-allow-origin").is_none());
    // Webhook routes are not for browsers: no CORS headers there.
    let app = TestApp::spawn(&config("cors:\n  allow_origins: [\"*\"]\n")).await;
    let r = app.post("/hooks/a", &[("Origin", APP)], "x").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.headers.get("access-control-allow-origin").is_none());
}

#[test]
fn cors_config_errors_point_at_the_value() {
    let e = config_error("cors:\n  allow_origins: [\"*\"]\n  allow_credentials: true\n");
    assert!(
        e.starts_with("test.yaml:3:22: cors.allow_credentials cannot be true"),
        "{e}"
    );
    let e = config_error("cors:\n  allow_origins: [\"https://app.example.com/\"]\n");
    assert!(
        e.starts_with("test.yaml:2:19: ") && e.contains("trailing `/`"),
        "{e}"
    );
    let e = config_error("cors:\n  allow_origins: [\"*\", \"https://a.example\"]\n");
    assert!(e.contains("stands alone"), "{e}");
    let e = config_error("cors:\n  allow_origins: []\n");
    assert!(e.contains("lists no origin"), "{e}");
    let e = config_error("cors:\n  allow_origin: [\"*\"]\n");
    assert!(e.contains("unknown field `allow_origin`"), "{e}");
}

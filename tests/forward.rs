//! Forward mode (README, "Forward mode"): the application answers the request as if
//! hookcast were not there, and hookcast publishes it as an event only when the
//! application accepted it (2xx), with data from the request and from the
//! application's answer.

mod support;
mod upstream;

use std::net::SocketAddr;

use http::StatusCode;
use tokio::net::TcpListener;

use support::{SseStream, TestApp};
use upstream::Legacy;

/// Routes for the legacy app's comments API, and a publish route used as a marker:
/// when the marker is the next event, nothing was published before it.
fn routes(extra_routes: &str) -> String {
    format!(
        r#"limits:
  max_body: 1KiB
routes:
  - name: comments
    match: {{ path: /api/comments }}
    mode: forward
    publish:
      topic: "comments"
      event: comment.created
      data: '{{"id":{{response:/id}},"text":"{{response:/text}}","by":"{{json:/author}}"}}'
      dedupe: "{{header:Idempotency-Key}}"
{extra_routes}
  - name: marker
    match: {{ path: /hooks/marker }}
    publish: {{ topic: comments, event: marker }}
"#
    )
}

async fn start(extra_routes: &str) -> (Legacy, TestApp) {
    let legacy = Legacy::start().await;
    let app = TestApp::spawn(&upstream::config(legacy.addr, &routes(extra_routes))).await;
    (legacy, app)
}

/// Asserts that nothing was published to `comments` before this point.
async fn assert_nothing_published(app: &TestApp, sub: &mut SseStream) {
    app.publish("/hooks/marker", "marker").await;
    let e = sub.next_event().await;
    assert_eq!(e.event, "marker", "something was published: {e:?}");
}

#[tokio::test]
async fn a_comment_the_app_accepts_becomes_an_event_with_data_from_its_answer() {
    let (legacy, app) = start("").await;
    let mut sub = app.subscribe("topic=comments", &[]).await;
    let body = r#"{"text":"first!","author":"ann"}"#;
    let r = app
        .post(
            "/api/comments",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "k1"),
            ],
            body,
        )
        .await;

    // The caller gets the application's answer unchanged.
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.headers["location"], "/api/comments/1");
    assert_eq!(r.headers["x-app"], "legacy");
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["content-length"], r.body.len().to_string());
    assert_eq!(r.text(), r#"{"id": 1, "text": "first!", "author": "ann"}"#);

    let e = sub.next_event().await;
    assert_eq!(e.event, "comment.created");
    assert_eq!(e.data, r#"{"id":1,"text":"first!","by":"ann"}"#);

    // The app sees the request as it was sent: a second one is its comment 2.
    let r = app
        .post(
            "/api/comments",
            &[("idempotency-key", "k2")],
            r#"{"text":"second","author":"bo"}"#,
        )
        .await;
    assert_eq!(r.json()["id"], 2);
    assert_eq!(
        sub.next_event().await.data,
        r#"{"id":2,"text":"second","by":"bo"}"#
    );

    // A retry with the same key reaches the app (it decides), but is not published twice.
    let r = app
        .post(
            "/api/comments",
            &[("idempotency-key", "k2")],
            r#"{"text":"second","author":"bo"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_nothing_published(&app, &mut sub).await;
    drop(legacy);
}

#[tokio::test]
async fn an_answer_that_is_not_2xx_passes_back_and_publishes_nothing() {
    let (_legacy, app) = start("").await;
    let mut sub = app.subscribe("topic=comments", &[]).await;
    let r = app.post("/api/comments", &[], r#"{"author":"ann"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.text(), r#"{"error": "text is required"}"#);
    let r = app.post("/api/comments", &[], "not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.text(), r#"{"error": "not JSON"}"#);
    assert_nothing_published(&app, &mut sub).await;
}

#[tokio::test]
async fn a_publish_that_fails_after_a_2xx_still_returns_the_apps_answer() {
    let (_legacy, app) = start(
        r#"  - name: missing-field
    match: { path: /api/missing }
    mode: forward
    publish: { topic: comments, data: "{response:/no/such/field}" }
  - name: not-json
    match: { path: /api/plain, method: GET }
    mode: forward
    publish: { topic: comments, data: "{response:/x}" }
  - name: too-big
    match: { path: /api/big, method: GET }
    mode: forward
    publish: { topic: comments, data: "{response:/pad}" }
  - name: bad-topic
    match: { path: /api/bad-topic }
    mode: forward
    publish: { topic: "c.{header:X-Room}", data: "x" }
"#,
    )
    .await;
    let mut sub = app.subscribe("topic=comments", &[]).await;

    let r = app.post("/api/missing", &[], "{}").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["target"], "/api/missing");

    let r = app.get("/api/plain", &[]).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "ok, but not JSON")
    );

    // Over limits.max_body (1 KiB): the whole answer still passes, as the app sent it.
    let r = app.get("/api/big?n=5000", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), r#"{"pad": ""}"#.len() + 5000);
    assert_eq!(r.headers["content-length"], r.body.len().to_string());

    let r = app.post("/api/bad-topic", &[("x-room", "a b")], "{}").await;
    assert_eq!(r.status, StatusCode::OK);

    assert_nothing_published(&app, &mut sub).await;
}

#[tokio::test]
async fn a_request_body_over_the_limit_still_reaches_the_app_whole() {
    let (_legacy, app) = start(
        r#"  - name: with-body
    match: { path: /api/notes }
    mode: forward
    publish: { topic: comments }
  - name: without-body
    match: { path: /api/uploads }
    mode: forward
    publish: { topic: comments, event: upload, data: "{header:X-Name}" }
"#,
    )
    .await;
    let mut sub = app.subscribe("topic=comments", &[]).await;
    let big = "n".repeat(5000);

    // The route publishes the body ({body} by default), which is over 1 KiB: the app
    // gets it all, nothing is published.
    let r = app.post("/api/notes", &[], big.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["body"].as_str().unwrap().len(), 5000);
    assert_nothing_published(&app, &mut sub).await;

    // Within the limit it is published as received.
    app.post("/api/notes", &[], "a short note").await;
    assert_eq!(sub.next_event().await.data, "a short note");

    // A route that never reads the body streams it through at any size, and publishes.
    let r = app
        .post("/api/uploads", &[("x-name", "photo.jpg")], big)
        .await;
    assert_eq!(r.json()["body"].as_str().unwrap().len(), 5000);
    let e = sub.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("upload", "photo.jpg"));
}

#[tokio::test]
async fn a_forward_route_whose_conditions_fail_passes_without_publishing() {
    let (_legacy, app) = start(
        r#"  - name: orders
    match: { path: /api/orders, json: { "/kind": "order" } }
    mode: forward
    publish: { topic: comments, data: "{json:/id}" }
"#,
    )
    .await;
    let mut sub = app.subscribe("topic=comments", &[]).await;
    let r = app
        .post("/api/orders", &[], r#"{"kind":"refund","id":1}"#)
        .await;
    assert_eq!(r.json()["body"], r#"{"kind":"refund","id":1}"#);
    assert_nothing_published(&app, &mut sub).await;
    app.post("/api/orders", &[], r#"{"kind":"order","id":2}"#)
        .await;
    assert_eq!(sub.next_event().await.data, "2");
}

#[tokio::test]
async fn a_forward_route_with_the_upstream_down_gets_502_and_publishes_nothing() {
    let closed: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let app = TestApp::spawn(&upstream::config(closed, &routes(""))).await;
    let mut sub = app.subscribe("topic=comments", &[]).await;
    app.post("/api/comments", &[], r#"{"text":"lost"}"#)
        .await
        .assert_error(StatusCode::BAD_GATEWAY, "upstream_unavailable");
    assert_nothing_published(&app, &mut sub).await;
}

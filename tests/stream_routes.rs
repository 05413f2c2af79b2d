//! Stream routes over real sockets: event streams on an application's own URLs
//! (`GET /matches`, `/api/subscribe`), topics from the path, query and headers and
//! from who the subscriber is (`{claim:}`, `{auth:}` against a real auth endpoint),
//! every refusal with its status and code, and what `sse.path` does (headers,
//! prelude, replay, resync, CORS, limits, metrics, shutdown, reload) on both the
//! HTTP/1 fast path and hyper.

mod support;
mod upstream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The standard config ([`config`]) with webhook routes that publish to
/// `user.ID`, `org.ORG.matches` (event `matches`) and `room.ROOM`; `extra` is
/// appended at the top level.
fn yaml(extra: &str) -> String {
    config(&format!(
        r#"  - name: user
    match: {{ path: "/hooks/user/{{id}}" }}
    publish: {{ topic: "user.{{path:id}}" }}
  - name: org
    match: {{ path: "/hooks/org/{{org}}" }}
    publish: {{ topic: "org.{{path:org}}.matches", event: matches }}
  - name: room
    match: {{ path: "/hooks/room/{{room}}" }}
    publish: {{ topic: "room.{{path:room}}" }}
{extra}"#
    ))
}

/// Opens a stream on `path` and reads its prelude; panics unless 200.
async fn open(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> SseStream {
    let mut s = open_stream(app.addr, path, headers).await;
    assert_eq!(s.status, StatusCode::OK, "{path}");
    assert!(matches!(
        s.next_item_within(PATIENCE).await,
        Some(Item::Retry(3000))
    ));
    assert!(matches!(
        s.next_item_within(PATIENCE).await,
        Some(Item::Comment(_))
    ));
    s
}

#[tokio::test]
async fn topics_come_from_the_path_query_and_headers_and_topic_is_not_read() {
    let app = TestApp::spawn(&yaml(
        r#"
streams:
  - name: matches
    path: "/matches"
    topics: ["org.{header:org-id}.matches"]
  - name: room
    path: "/rooms/{room}/feed"
    topics: ["room.{path:room}", "room.{query:also}"]
"#,
    ))
    .await;
    let mut matches = open(&app, "/matches?topic=room.x", &[("org-id", "7")]).await;
    assert_eq!(
        matches.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(matches.headers["cache-control"], "no-cache");
    assert_eq!(matches.headers["x-accel-buffering"], "no");
    assert!(matches.headers.get("content-length").is_none());
    let mut rooms = open(&app, "/rooms/a/feed?also=b", &[]).await;

    // `topic=room.x` was not followed: the first event /matches sees is its own.
    app.publish("/hooks/room/x", "not for matches").await;
    app.publish("/hooks/org/8", "other org").await;
    let id = app.publish("/hooks/org/7", r#"{"score":1}"#).await;
    let ev = matches.next_event().await;
    assert_eq!(
        (ev.id.as_str(), ev.event.as_str()),
        (id.as_str(), "matches")
    );
    assert_eq!(ev.data, r#"{"score":1}"#);

    app.publish("/hooks/room/b", "to b").await;
    app.publish("/hooks/room/a", "to a").await;
    let got = rooms.events(2).await;
    assert_eq!(
        (got[0].data.as_str(), got[1].data.as_str()),
        ("to b", "to a")
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_route_after_another_request_on_the_connection_is_served_by_hyper() {
    let app = TestApp::spawn(&yaml(
        "streams:\n  - name: m\n    path: \"/matches\"\n    topics: [\"org.{header:org-id}.matches\"]\n",
    ))
    .await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    // A first request keeps the connection, so the stream is the second one.
    s.write_all(
        b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\nGET /matches HTTP/1.1\r\nHost: x\r\norg-id: 7\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut published = false;
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.contains("data: hyper") {
            assert!(text.starts_with("HTTP/1.1 404"), "{text}");
            assert!(text.contains("text/event-stream"), "{text}");
            assert!(text.contains("event: matches"), "{text}");
            break;
        }
        if !published && text.contains("retry: 3000") {
            app.publish("/hooks/org/7", "hyper").await;
            published = true;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("the event in time")
            .unwrap();
        assert_ne!(n, 0, "closed: {text}");
        got.extend_from_slice(&buf[..n]);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_their_code_and_other_methods_go_on() {
    let legacy =
        upstream::Upstream::serve(|req: http::Request<hyper::body::Incoming>| async move {
            http::Response::new(upstream::full(format!(
                "app: {} {}",
                req.method(),
                req.uri().path()
            )))
        })
        .await;
    let app = TestApp::spawn(&yaml(&format!(
        "upstream:\n  url: \"http://{}\"\nstreams:\n  - name: m\n    path: \"/matches\"\n    topics: [\"org.{{header:org-id}}.matches\"]\n",
        legacy.addr
    )))
    .await;
    app.get("/matches", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "unresolved_template");
    let r = app.get("/matches", &[("org-id", "a b")]).await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_topic");
    assert!(r.text().contains("org.a b.matches"), "{}", r.text());
    // A value with a `>` mid-topic is not a valid pattern.
    app.get("/matches", &[("org-id", ">")])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_topic");
    // The application keeps its own POST /matches.
    let r = app.post("/matches", &[], "x").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "app: POST /matches")
    );
    app.shutdown().await;
}

#[tokio::test]
async fn replay_with_last_event_id_or_the_query_and_resync_on_an_unknown_id() {
    let app = TestApp::spawn(&yaml(
        "streams:\n  - name: m\n    path: \"/matches\"\n    topics: [\"org.{header:org-id}.matches\"]\n",
    ))
    .await;
    let ids = [
        app.publish("/hooks/org/7", "one").await,
        app.publish("/hooks/org/7", "two").await,
        app.publish("/hooks/org/7", "three").await,
    ];
    let org = [("org-id", "7")];
    let mut by_header = open(
        &app,
        "/matches",
        &[("org-id", "7"), ("Last-Event-ID", ids[0].as_str())],
    )
    .await;
    let got = by_header.events(2).await;
    assert_eq!(
        got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [ids[1].as_str(), ids[2].as_str()]
    );
    // event-source-polyfill sends the id as `lastEventId`.
    let mut by_query = open(&app, &format!("/matches?lastEventId={}", ids[1]), &org).await;
    assert_eq!(by_query.next_event().await.data, "three");

    let mut unknown = open(&app, "/matches?lastEventId=nope", &org).await;
    let resync = unknown.next_event().await;
    assert_eq!(resync.event, "hookcast.resync");
    assert_eq!(resync.id, "", "a resync carries no id");
    let data: Value = serde_json::from_str(&resync.data).unwrap();
    assert_eq!(data["topics"], json!(["org.7.matches"]));
    assert_eq!(data["last_event_id"], "nope");
    app.publish("/hooks/org/7", "live").await;
    assert_eq!(unknown.next_event().await.data, "live");
    app.shutdown().await;
}

/// A legacy application: `/api/me` answers who the caller is by its token,
/// counting calls and keeping the URIs it was asked.
struct Me {
    app: upstream::Upstream,
    calls: Arc<AtomicUsize>,
    uris: Arc<Mutex<Vec<String>>>,
}

impl Me {
    async fn start() -> Me {
        let calls = Arc::new(AtomicUsize::new(0));
        let uris = Arc::new(Mutex::new(Vec::new()));
        let (c, u) = (calls.clone(), uris.clone());
        let app = upstream::Upstream::serve(move |req: http::Request<hyper::body::Incoming>| {
            let (c, u) = (c.clone(), u.clone());
            async move {
                if req.uri().path() != "/api/me" {
                    return http::Response::new(upstream::full(format!(
                        "app: {} {}",
                        req.method(),
                        req.uri().path()
                    )));
                }
                c.fetch_add(1, Ordering::SeqCst);
                u.lock().unwrap().push(req.uri().to_string());
                let token = req
                    .headers()
                    .get("authorization")
                    .or(req.headers().get("x-access-token"))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let (status, body) = match token.as_str() {
                    "tok-42" => (200, r#"{"id":42,"name":"ann"}"#),
                    "tok-7" => (200, r#"{"id":7}"#),
                    "tok-noid" => (200, r#"{"name":"no id"}"#),
                    "tok-text" => (200, "welcome"),
                    _ => (401, r#"{"error":"who are you"}"#),
                };
                let mut resp = http::Response::new(upstream::full(body));
                *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                resp
            }
        })
        .await;
        Me { app, calls, uris }
    }

    fn uris(&self) -> Vec<String> {
        self.uris.lock().unwrap().clone()
    }
}

/// hookcast in front of the legacy app, asking its `/api/me` (no
/// `subscribers.upstream.url`: it defaults to `upstream.url`).
async fn behind_me(me: &Me, cache: &str) -> TestApp {
    TestApp::spawn(&yaml(&format!(
        r#"
upstream:
  url: "http://{}"
subscribers:
  auth: upstream
  upstream:
    path: /api/me
    cache: {cache}
    pass_headers: [Authorization, x-access-token, org-id]
streams:
  - name: subscribe
    path: /api/subscribe
    topics: ["user.{{auth:/id}}"]
  - name: matches
    path: /matches
    topics: ["org.{{header:org-id}}.matches"]
"#,
        me.app.addr
    )))
    .await
}

#[tokio::test]
async fn auth_answer_topics_need_no_grant_and_each_user_gets_only_their_own() {
    let me = Me::start().await;
    let app = behind_me(&me, "0s").await;
    let mut ann = open(&app, "/api/subscribe", &[("Authorization", "tok-42")]).await;
    let mut bob = open(&app, "/api/subscribe", &[("Authorization", "tok-7")]).await;
    // One call each, with no topic=: the topic comes from the answer.
    assert_eq!(me.uris(), ["/api/me", "/api/me"]);
    app.publish("/hooks/user/7", "for bob").await;
    app.publish("/hooks/user/42", "for ann").await;
    assert_eq!(ann.next_event().await.data, "for ann");
    assert_eq!(bob.next_event().await.data, "for bob");

    for (token, status, code) in [
        ("tok-noid", StatusCode::FORBIDDEN, "topic_forbidden"),
        ("tok-text", StatusCode::FORBIDDEN, "topic_forbidden"),
        ("tok-wrong", StatusCode::UNAUTHORIZED, "unauthorized"),
    ] {
        app.get("/api/subscribe", &[("Authorization", token)])
            .await
            .assert_error(status, code);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_request_chosen_topic_is_sent_to_the_auth_endpoint_and_answers_are_cached() {
    let me = Me::start().await;
    let app = behind_me(&me, "30s").await;
    let headers = [("x-access-token", "tok-42"), ("org-id", "7")];
    let mut first = open(&app, "/matches", &headers).await;
    assert_eq!(me.uris(), ["/api/me?topic=org.7.matches"]);
    // The same subscriber again: answered from the cache, with its answer.
    let mut second = open(&app, "/matches", &headers).await;
    let mut own = open(&app, "/api/subscribe", &[("Authorization", "tok-42")]).await;
    let _again = open(&app, "/api/subscribe", &[("Authorization", "tok-42")]).await;
    assert_eq!(me.calls.load(Ordering::SeqCst), 2);
    app.publish("/hooks/org/7", "goal").await;
    app.publish("/hooks/user/42", "mine").await;
    assert_eq!(first.next_event().await.data, "goal");
    assert_eq!(second.next_event().await.data, "goal");
    assert_eq!(own.next_event().await.data, "mine");
    app.get("/matches", &[("x-access-token", "nope"), ("org-id", "7")])
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // The application keeps every other method on the stream route's path.
    let r = app.post("/api/subscribe", &[], "x").await;
    assert_eq!(r.text(), "app: POST /api/subscribe");
    app.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_auth_endpoint_means_try_later() {
    let closed = free_addr();
    let app = TestApp::spawn(&yaml(&format!(
        "upstream:\n  url: \"http://{closed}\"\nsubscribers:\n  auth: upstream\n  upstream:\n    path: /api/me\nstreams:\n  - name: s\n    path: /api/subscribe\n    topics: [\"user.{{auth:/id}}\"]\n"
    )))
    .await;
    let mut s = open_stream(app.addr, "/api/subscribe", &[("Authorization", "tok-42")]).await;
    assert_eq!(s.status, StatusCode::OK);
    let items = s.until_end().await;
    assert!(
        matches!(items.as_slice(), [Item::Retry(ms)] if (3000..=6000).contains(ms)),
        "{items:?}"
    );
    app.shutdown().await;
}

fn token(claims: Value) -> String {
    hs256(&claims, "jwt-secret")
}

#[tokio::test]
async fn jwt_claim_topics_need_no_grant_and_request_chosen_ones_do() {
    let secret = SecretFile::new("jwt-secret\n");
    let app = TestApp::spawn(&yaml(&format!(
        r#"
subscribers:
  auth: jwt
  jwt: {{ secret_file: {} }}
streams:
  - name: me
    path: /me
    topics: ["user.{{claim:/sub}}"]
  - name: org
    path: "/orgs/{{org}}"
    topics: ["org.{{path:org}}.matches"]
  - name: mine-in-org
    path: /mixed
    topics: ["org.{{header:org-id}}.user.{{claim:/sub}}"]
"#,
        secret.path()
    )))
    .await;
    let exp = unix_now() + 600;
    // No topics claim at all: the topic is the token's own subject.
    let plain = token(json!({"sub": "42", "exp": exp}));
    let mut me = open(&app, &format!("/me?access_token={plain}"), &[]).await;
    app.publish("/hooks/user/41", "not mine").await;
    app.publish("/hooks/user/42", "mine").await;
    assert_eq!(me.next_event().await.data, "mine");

    let no_sub = token(json!({"exp": exp}));
    app.get(&format!("/me?access_token={no_sub}"), &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "topic_forbidden");
    app.get("/me", &[])
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "token_missing");

    // A topic the request chose must lie within the token's topics claim.
    let org7 = token(json!({"sub": "42", "exp": exp, "hookcast": {"subscribe": ["org.7.>"]}}));
    let bearer = format!("Bearer {org7}");
    let auth = [("Authorization", bearer.as_str())];
    let mut org = open(&app, "/orgs/7", &auth).await;
    app.get("/orgs/8", &auth)
        .await
        .assert_error(StatusCode::FORBIDDEN, "topic_forbidden");
    app.get(&format!("/orgs/7?access_token={plain}"), &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "topic_forbidden");
    app.publish("/hooks/org/7", "kickoff").await;
    assert_eq!(org.next_event().await.data, "kickoff");

    // Part request, part identity: the claim must cover the whole topic.
    let _mixed = open(&app, "/mixed", &[auth[0], ("org-id", "7")]).await;
    app.get("/mixed", &[auth[0], ("org-id", "8")])
        .await
        .assert_error(StatusCode::FORBIDDEN, "topic_forbidden");
    app.shutdown().await;
}

#[tokio::test]
async fn a_cross_origin_polyfill_with_custom_headers_passes_the_preflight() {
    let me = Me::start().await;
    let app = TestApp::spawn(&yaml(&format!(
        r#"
upstream:
  url: "http://{}"
cors:
  allow_origins: ["http://app.test"]
  allow_headers: [X-Client-Version]
subscribers:
  auth: upstream
  upstream:
    path: /api/me
    pass_headers: [x-access-token, org-id]
streams:
  - name: matches
    path: /matches
    topics: ["org.{{header:org-id}}.matches"]
"#,
        me.app.addr
    )))
    .await;
    let r = request(
        app.addr,
        Method::OPTIONS,
        "/matches",
        &[
            ("Origin", "http://app.test"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "x-access-token, org-id"),
        ],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.headers["access-control-allow-origin"], "http://app.test");
    let allowed = r.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "authorization",
        "last-event-id",
        "cache-control",
        "x-access-token",
        "org-id",
        "x-client-version",
    ] {
        assert!(allowed.split(", ").any(|a| a == h), "{h} not in {allowed}");
    }
    let s = open(
        &app,
        "/matches",
        &[
            ("Origin", "http://app.test"),
            ("x-access-token", "tok-42"),
            ("org-id", "7"),
        ],
    )
    .await;
    assert_eq!(s.headers["access-control-allow-origin"], "http://app.test");
    assert_eq!(s.headers["vary"], "Origin");
    // An OPTIONS that is no preflight is the application's.
    let r = request(app.addr, Method::OPTIONS, "/matches", &[], Bytes::new()).await;
    assert_eq!(r.text(), "app: OPTIONS /matches");
    app.shutdown().await;
}

#[tokio::test]
async fn limits_metrics_and_shutdown_hold_on_a_stream_route() {
    let mut app = AdminApp::spawn(&yaml(
        "limits:\n  max_subscribers_per_ip: 1\nstreams:\n  - name: m\n    path: /matches\n    topics: [\"org.{header:org-id}.matches\"]\n",
    ))
    .await;
    let mut s = open(&app.app, "/matches", &[("org-id", "7")]).await;
    let r = app.app.get("/matches", &[("org-id", "7")]).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_subscribers");
    let metrics = app.admin_get("/metrics").await.text();
    assert!(
        metrics.lines().any(|l| l == "hookcast_subscribers 1"),
        "{metrics}"
    );
    app.app.publish("/hooks/org/7", "x").await;
    s.next_event().await;
    let metrics = app.admin_get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "hookcast_events_delivered_total 1"),
        "{metrics}"
    );
    let done = app.app.begin_shutdown();
    let items = s.until_end().await;
    assert!(
        matches!(items.last(), Some(Item::Retry(ms)) if (3000..=6000).contains(ms)),
        "{items:?}"
    );
    done.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_slow_subscriber_on_a_stream_route_is_cut() {
    let app = AdminApp::spawn(
        &yaml("streams:\n  - name: m\n    path: /matches\n    topics: [\"org.{header:org-id}.matches\"]\n")
            .replace("retry: 3s", "retry: 3s\n  subscriber_queue: 4\n  history_bytes: 64MiB"),
    )
    .await;
    // A client that never reads, with a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(app.app.addr).await.unwrap();
    slow.write_all(b"GET /matches HTTP/1.1\r\nHost: x\r\norg-id: 7\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    slow.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    let big = "x".repeat(64 * 1024);
    // The client never closes, so the stream count falling to 0 is the cut.
    let open = |m: String| m.lines().any(|l| l == "hookcast_subscribers 1");
    let mut published = 0;
    while open(app.admin_get("/metrics").await.text()) {
        assert!(
            published < 300,
            "never cut after {published} events: {}",
            app.admin_get("/metrics").await.text()
        );
        app.app.publish("/hooks/org/7", &big).await;
        published += 1;
    }
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, slow.read_to_end(&mut got))
        .await
        .expect("the cut connection closes")
        .ok();
    assert!(
        got.len() < published * big.len(),
        "cut, not served everything"
    );
    app.app.shutdown().await;
}

#[tokio::test]
async fn a_reload_adds_a_stream_route_and_open_streams_stay() {
    let dir = TempDir::new("streams-reload");
    let file = dir.path("hookcast.yaml");
    let first = yaml(
        "streams:\n  - name: m\n    path: /matches\n    topics: [\"org.{header:org-id}.matches\"]\n",
    );
    std::fs::write(&file, &first).unwrap();
    let app = AdminApp::spawn_file(&file).await;
    let mut kept = open(&app.app, "/matches", &[("org-id", "7")]).await;
    app.app
        .get("/me", &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    let tmp = dir.path("hookcast.yaml.tmp");
    std::fs::write(
        &tmp,
        format!("{first}  - name: me\n    path: /me\n    topics: [\"user.{{query:id}}\"]\n"),
    )
    .unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    app.reload.notify_one();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut me = loop {
        let s = open_stream(app.app.addr, "/me?id=42", &[]).await;
        if s.status == StatusCode::OK {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new stream route never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    app.app.publish("/hooks/user/42", "new route").await;
    app.app.publish("/hooks/org/7", "old stream").await;
    assert_eq!(me.next_event().await.data, "new route");
    assert_eq!(kept.next_event().await.data, "old stream");
    app.app.shutdown().await;
}

//! Webhooks served on the socket (README "Architecture", `fast`): plain
//! HTTP/1.1 webhooks on a keep-alive connection are read and answered without
//! hyper, by the same handler hyper's path calls. Over raw sockets, so that
//! every byte is seen: keep-alive and pipelining, a body in pieces, a client
//! leaving mid-body, `Connection: close`, the hand-over to hyper, and the same
//! answers and counts as hyper's path (reached with a chunked body, which the
//! plain path leaves to hyper).

mod support;

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::net::{Answer, Then, raw_upstream, read_answer, read_more};
use support::{AdminApp, PATIENCE, SecretFile, TestApp, github_signature};

const SECRET: &str = "plain-secret";

fn yaml(secret: &SecretFile, extra: &str) -> String {
    format!(
        r#"
limits:
  max_body: 64
routes:
  - name: once
    match:
      path: "/once/{{room}}"
    publish:
      topic: "room.{{path:room}}"
      dedupe: "{{header:X-Delivery}}"
  - name: json
    match:
      path: "/json"
    publish:
      topic: "ij.{{json:/t}}"
  - name: signed
    match:
      path: /signed
    publish:
      topic: signed
    verify:
      scheme: github
      secret_file: {secret}
  - name: picky
    match:
      path: /picky
      headers: {{ X-Kind: "a" }}
    publish:
      topic: picky
  - name: plain
    match:
      path: "/hooks/{{room}}"
    publish:
      topic: "room.{{path:room}}"
{extra}"#,
        secret = secret.path()
    )
}

fn secret() -> SecretFile {
    SecretFile::new(SECRET)
}

/// A client connection that keeps what it read past one answer.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Client { s, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    async fn read_more(&mut self) -> usize {
        read_more(&mut self.s, &mut self.buf).await
    }

    /// One whole answer (by `content-length`, or chunks); `None` if the
    /// connection ended first.
    async fn answer(&mut self) -> Option<Answer> {
        read_answer(&mut self.s, &mut self.buf, false).await
    }

    /// Reads until the server closes; panics if it does not within [`PATIENCE`].
    async fn closed(&mut self) -> bool {
        loop {
            if self.read_more().await == 0 {
                return true;
            }
        }
    }
}

/// A webhook with a `Content-Length` body: the plain path's.
fn post(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!("POST {path} HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r.into_bytes()
}

/// The same webhook with a chunked body: hyper's path.
fn post_chunked(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!("POST {path} HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("Transfer-Encoding: chunked\r\n\r\n");
    if !body.is_empty() {
        r.push_str(&format!("{:x}\r\n{body}\r\n", body.len()));
    }
    r.push_str("0\r\n\r\n");
    r.into_bytes()
}

/// One request on a connection of its own.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut c = Client::connect(addr).await;
    c.send(request).await;
    c.answer().await.expect("an answer")
}

/// Reads a stream's bytes until they contain `marker`; what came before it.
async fn stream_until(c: &mut Client, marker: &str) -> String {
    loop {
        let text = String::from_utf8_lossy(&c.buf).into_owned();
        if let Some(at) = text.find(marker) {
            return text[..at].to_owned();
        }
        assert_ne!(c.read_more().await, 0, "the stream ended: {text}");
    }
}

async fn metric(app: &AdminApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = app.admin_get("/metrics").await.text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn keep_alive_webhooks_then_a_stream_on_the_same_connection() {
    let secret = secret();
    let app = TestApp::spawn(&yaml(&secret, "")).await;
    let mut c = Client::connect(app.addr).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        c.send(&post("/hooks/a", &[], &format!("{{\"n\":{n}}}")))
            .await;
        let a = c.answer().await.expect("an answer");
        assert_eq!(a.status, 202, "{a:?}");
        assert!(
            !a.head.to_lowercase().contains("connection: close"),
            "{a:?}"
        );
        assert_eq!(a.json()["topics"], serde_json::json!(["room.a"]));
        ids.push(a.json()["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // A stream request after others on the connection: hyper's, on the same socket.
    c.send(b"GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    stream_until(&mut c, "\r\n\r\n").await;
    assert!(
        String::from_utf8_lossy(&c.buf).starts_with("HTTP/1.1 200 OK"),
        "{:?}",
        String::from_utf8_lossy(&c.buf)
    );
    // Opened: an event published now reaches it.
    exchange(app.addr, &post("/hooks/a", &[], "after-the-hand-over")).await;
    stream_until(&mut c, "after-the-hand-over").await;
}

#[tokio::test]
async fn a_chunked_webhook_after_plain_ones_goes_to_hyper_on_the_same_connection() {
    let secret = secret();
    let app = TestApp::spawn(&yaml(&secret, "")).await;
    let mut c = Client::connect(app.addr).await;
    c.send(&post("/hooks/a", &[], "one")).await;
    assert_eq!(c.answer().await.unwrap().status, 202);
    c.send(&post_chunked("/hooks/a", &[], "two")).await;
    let a = c.answer().await.unwrap();
    assert_eq!(a.status, 202, "{a:?}");
    // hyper serves the rest of the connection.
    c.send(&post("/hooks/a", &[], "three")).await;
    assert_eq!(c.answer().await.unwrap().status, 202);
}

#[tokio::test]
async fn pipelined_webhooks_are_answered_in_order() {
    let secret = secret();
    let app = TestApp::spawn(&yaml(&secret, "")).await;
    let mut c = Client::connect(app.addr).await;
    let mut all = Vec::new();
    for room in ["r1", "r2", "r3", "r4"] {
        all.extend(post(&format!("/hooks/{room}"), &[], room));
    }
    all.extend(post("/json", &[], "not json"));
    all.extend(post("/hooks/r5", &[], "r5"));
    c.send(&all).await;
    for room in ["r1", "r2", "r3", "r4"] {
        let a = c.answer().await.unwrap();
        assert_eq!(a.status, 202, "{a:?}");
        assert_eq!(
            a.json()["topics"],
            serde_json::json!([format!("room.{room}")])
        );
    }
    let refused = c.answer().await.unwrap();
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (400, "invalid_json")
    );
    let last = c.answer().await.unwrap();
    assert_eq!(last.json()["topics"], serde_json::json!(["room.r5"]));
}

#[tokio::test]
async fn a_body_in_pieces_is_read_whole() {
    let secret = secret();
    let app = TestApp::spawn(&yaml(&secret, "")).await;
    let mut sub = Client::connect(app.addr).await;
    sub.send(b"GET /events?topic=room.pieces HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    stream_until(&mut sub, "\r\n\r\n").await;
    let mut c = Client::connect(app.addr).await;
    let body = "{\"split\":\"over several writes\"}";
    let request = post("/hooks/pieces", &[], body);
    let head_end = request.len() - body.len();
    // The head cut in two, then the body in three pieces.
    for piece in [
        &request[..10],
        &request[10..head_end],
        &request[head_end..head_end + 5],
        &request[head_end + 5..head_end + 20],
        &request[head_end + 20..],
    ] {
        c.send(piece).await;
        c.s.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(c.answer().await.unwrap().status, 202);
    stream_until(&mut sub, body).await;
    // The connection goes on.
    c.send(&post("/hooks/pieces", &[], "next")).await;
    assert_eq!(c.answer().await.unwrap().status, 202);
}

#[tokio::test]
async fn a_body_over_max_body_is_413_as_on_hypers_path() {
    let secret = secret();
    let app = TestApp::spawn(&yaml(&secret, "")).await;
    let big = "x".repeat(100);
    let plain = exchange(app.addr, &post("/hooks/a", &[], &big)).await;
    let hyper = exchange(app.addr, &post_chunked("/hooks/a", &[], &big)).await;
    assert_eq!(
        (plain.status, plain.code().as_str()),
        (413, "body_too_large")
    );
    assert_eq!(plain.json(), hyper.json());
    // At the limit, it is taken.
    let at = "y".repeat(64);
    assert_eq!(
        exchange(app.addr, &post("/hooks/a", &[], &at)).await.status,
        202
    );
}

type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, u16, &'a str);

#[tokio::test]
async fn refusals_are_the_same_as_on_hypers_path() {
    let secret = secret();
    let app = TestApp::spawn(&yaml(&secret, "")).await;
    let body = r#"{"t":"x"}"#;
    let good = github_signature(SECRET, body);
    let bad = github_signature("another secret", body);
    // Path, headers, body, and the status and code both paths answer.
    let cases: [Case; 4] = [
        ("/json", vec![], "not json", 400, "invalid_json"),
        (
            "/signed",
            vec![("X-Hub-Signature-256", bad.as_str())],
            body,
            401,
            "signature_invalid",
        ),
        ("/signed", vec![], body, 401, "signature_missing"),
        ("/picky", vec![("X-Kind", "b")], body, 404, "not_found"),
    ];
    for (path, headers, body, status, code) in cases {
        let plain = exchange(app.addr, &post(path, &headers, body)).await;
        let hyper = exchange(app.addr, &post_chunked(path, &headers, body)).await;
        assert_eq!(plain.status, status, "{path}: {plain:?}");
        assert_eq!(plain.code(), code, "{path}: {plain:?}");
        assert_eq!(plain.normalized_head(), hyper.normalized_head(), "{path}");
        assert_eq!(plain.body, hyper.body, "{path}");
    }
    let signed = exchange(
        app.addr,
        &post("/signed", &[("X-Hub-Signature-256", good.as_str())], body),
    )
    .await;
    assert_eq!(signed.status, 202, "{signed:?}");
}

#[tokio::test]
async fn accepted_answers_are_the_same_as_on_hypers_path() {
    let secret = secret();
    let app = TestApp::spawn(&yaml(&secret, "")).await;
    let first = exchange(app.addr, &post("/once/a", &[("X-Delivery", "d1")], "{}")).await;
    let hyper_first = exchange(
        app.addr,
        &post_chunked("/once/a", &[("X-Delivery", "d2")], "{}"),
    )
    .await;
    assert_eq!(first.status, 202, "{first:?}");
    assert_eq!(first.normalized_head(), hyper_first.normalized_head());
    assert_eq!(first.json()["topics"], hyper_first.json()["topics"]);
    // A duplicate's answer names the first event: the same bytes on both paths.
    let again = exchange(app.addr, &post("/once/a", &[("X-Delivery", "d1")], "{}")).await;
    let hyper_again = exchange(
        app.addr,
        &post_chunked("/once/a", &[("X-Delivery", "d1")], "{}"),
    )
    .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.normalized_head(), hyper_again.normalized_head());
    assert_eq!(again.body, hyper_again.body);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let secret = secret();
    let app = TestApp::spawn(&yaml(&secret, "")).await;
    let mut c = Client::connect(app.addr).await;
    c.send(&post("/hooks/a", &[], "one")).await;
    assert_eq!(c.answer().await.unwrap().status, 202);
    c.send(&post("/hooks/a", &[("Connection", "close")], "two"))
        .await;
    let a = c.answer().await.unwrap();
    assert_eq!(a.status, 202);
    assert!(a.head.contains("connection: close\r\n"), "{}", a.head);
    assert!(c.closed().await);
    assert!(c.buf.is_empty(), "{:?}", c.buf);
    // As hyper's path says it.
    let hyper = exchange(
        app.addr,
        &post_chunked("/hooks/a", &[("Connection", "close")], "two"),
    )
    .await;
    assert_eq!(a.normalized_head(), hyper.normalized_head());
}

#[tokio::test]
async fn a_client_leaving_mid_body_publishes_nothing() {
    let secret = secret();
    let app = AdminApp::spawn(&yaml(&secret, "")).await;
    let addr = app.app.addr;
    let mut sub = Client::connect(addr).await;
    sub.send(b"GET /events?topic=room.cut HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    stream_until(&mut sub, "\r\n\r\n").await;
    let mut c = Client::connect(addr).await;
    c.send(b"POST /hooks/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\nonly part-of-it")
        .await;
    drop(c);
    // Refused as under hyper (an unreadable body, counted without a route)...
    let unrouted = [("route", "(none)"), ("status", "400")];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metric(&app, "hookcast_webhooks_total", &unrouted).await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cut body was not refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // ...and nothing published: the next event the stream sees is this one.
    exchange(addr, &post("/hooks/cut", &[], "the-next-one")).await;
    let before = stream_until(&mut sub, "the-next-one").await;
    assert!(!before.contains("part-of-it"), "{before}");
    assert_eq!(
        metric(
            &app,
            "hookcast_events_published_total",
            &[("route", "plain")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn both_paths_count_the_same() {
    let secret = secret();
    let app = AdminApp::spawn(&yaml(&secret, "")).await;
    let addr = app.app.addr;
    let accepted = [("route", "plain"), ("status", "202")];
    let refused = [("route", "json"), ("status", "400")];
    let mut c = Client::connect(addr).await;
    for _ in 0..2 {
        c.send(&post("/hooks/a", &[], "x")).await;
        assert_eq!(c.answer().await.unwrap().status, 202);
    }
    c.send(&post("/json", &[], "not json")).await;
    assert_eq!(c.answer().await.unwrap().status, 400);
    assert_eq!(
        metric(&app, "hookcast_webhooks_total", &accepted).await,
        2.0
    );
    assert_eq!(metric(&app, "hookcast_webhooks_total", &refused).await, 1.0);
    let published = [("route", "plain")];
    assert_eq!(
        metric(&app, "hookcast_events_published_total", &published).await,
        2.0
    );
    for _ in 0..2 {
        c.send(&post_chunked("/hooks/a", &[], "x")).await;
        assert_eq!(c.answer().await.unwrap().status, 202);
    }
    c.send(&post_chunked("/json", &[], "not json")).await;
    assert_eq!(c.answer().await.unwrap().status, 400);
    assert_eq!(
        metric(&app, "hookcast_webhooks_total", &accepted).await,
        4.0
    );
    assert_eq!(metric(&app, "hookcast_webhooks_total", &refused).await, 2.0);
    assert_eq!(
        metric(&app, "hookcast_events_published_total", &published).await,
        4.0
    );
}

#[tokio::test]
async fn a_webhook_no_route_takes_goes_to_the_upstream_and_the_connection_goes_on() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nx-app: 1\r\n\r\nfrom-app"[..],
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-app: 1\r\n\r\n4\r\nfrom\r\n4\r\n-app\r\n0\r\n\r\n"[..],
    ] {
        let up = raw_upstream(answer, Then::KeepGoing).await;
        let secret = secret();
        let app = TestApp::spawn(&yaml(
            &secret,
            &format!("upstream:\n  url: \"http://{up}\"\n"),
        ))
        .await;
        let mut c = Client::connect(app.addr).await;
        c.send(&post("/picky", &[("X-Kind", "b")], "{}")).await;
        let passed = c.answer().await.unwrap();
        assert_eq!(passed.status, 200, "{passed:?}");
        assert!(passed.head.contains("x-app: 1\r\n"), "{}", passed.head);
        let body = String::from_utf8_lossy(&passed.body).replace("\r\n", "");
        assert!(body.contains("from") && body.contains("app"), "{body}");
        c.send(&post("/picky", &[("X-Kind", "a")], "{}")).await;
        assert_eq!(c.answer().await.unwrap().status, 202);
        let hyper = exchange(app.addr, &post_chunked("/picky", &[("X-Kind", "b")], "{}")).await;
        assert_eq!(passed.normalized_head(), hyper.normalized_head());
        assert_eq!(passed.body, hyper.body);
    }
}

#[tokio::test]
async fn an_http_1_0_webhook_is_answered() {
    let secret = secret();
    let app = TestApp::spawn(&yaml(&secret, "")).await;
    let mut c = Client::connect(app.addr).await;
    c.send(b"POST /hooks/a HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
        .await;
    let a = c.answer().await.unwrap();
    assert_eq!(a.status, 202, "{a:?}");
    assert!(a.head.starts_with("HTTP/1.0 202"), "{}", a.head);
    assert!(c.closed().await);
}

#[tokio::test]
async fn draining_closes_an_idle_kept_alive_connection() {
    let secret = secret();
    let mut app = TestApp::spawn(&yaml(&secret, "shutdown_grace: 10m\n")).await;
    let mut c = Client::connect(app.addr).await;
    c.send(&post("/hooks/a", &[], "one")).await;
    assert_eq!(c.answer().await.unwrap().status, 202);
    let handle = app.begin_shutdown();
    // Closed between requests, so it does not hold the drain for its grace.
    assert!(c.closed().await);
    tokio::time::timeout(PATIENCE, handle)
        .await
        .expect("run returns")
        .unwrap()
        .unwrap();
}

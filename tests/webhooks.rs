//! Webhooks (README, "Routes"), over real sockets: the 202 answer and its event id,
//! route matching, templates, errors (and that a rejected webhook publishes
//! nothing), dedupe, and per-topic order under concurrent publishers.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::*;

/// Request headers as the support client takes them.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// How long a subscriber waits to be sure that nothing was published.
const QUIET: Duration = Duration::from_millis(300);

/// The numeric part of an event id, after its last `-`.
fn seq_of(id: &str) -> u64 {
    let (_, n) = id
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("id {id:?} has no `-`"));
    n.parse()
        .unwrap_or_else(|_| panic!("id {id:?} does not end in a number"))
}

/// An event id: at most 128 bytes of `A-Z a-z 0-9 . _ ~ -`.
fn assert_id_format(id: &str) {
    assert!(!id.is_empty(), "empty id");
    assert!(id.len() <= 128, "id longer than 128 bytes: {id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')),
        "id has a byte outside A-Z a-z 0-9 . _ ~ -: {id:?}"
    );
}

/// Asserts a `202 {"id":…,"topics":[…]}` answer and returns its id and topics.
fn accepted(r: &Reply) -> (String, Vec<String>) {
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/json");
    let j = r.json();
    let obj = j
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {j}"));
    let keys: HashSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["id", "topics"]), "{j}");
    let id = j["id"].as_str().expect("id is a string").to_owned();
    assert_id_format(&id);
    let topics = j["topics"]
        .as_array()
        .expect("topics is a list")
        .iter()
        .map(|t| t.as_str().expect("a topic is a string").to_owned())
        .collect();
    (id, topics)
}

/// Asserts that no event arrives within [`QUIET`].
async fn assert_quiet(s: &mut SseStream, after: &str) {
    if let Some(e) = s.next_event_within(QUIET).await {
        panic!("after {after}, an event arrived: {e:?}");
    }
}

async fn send(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(app.addr, method, path, headers, Bytes::from_static(b"{}")).await
}

/// Posts and returns the single topic the answer names (which route matched).
async fn matched_topic(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let r = app.post(path, headers, body.to_owned()).await;
    let (_, topics) = accepted(&r);
    assert_eq!(topics.len(), 1, "{topics:?}");
    topics.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------
// The 202 answer and event ids
// ---------------------------------------------------------------------------

#[tokio::test]
async fn accepted_answer_carries_the_id_the_subscriber_receives() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: basic
    match: { path: "/hooks/basic" }
    publish: { topic: "basic" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=basic", &[]).await;
    let mut last = 0;
    for i in 0..5 {
        let body = format!("event {i}");
        let r = app.post("/hooks/basic", &[], body.clone()).await;
        let (id, topics) = accepted(&r);
        assert_eq!(topics, ["basic"]);
        let e = s.next_event().await;
        assert_eq!(e.id, id, "the stream carries the id of the 202");
        assert_eq!(e.data, body);
        assert_eq!(e.event, "message", "no event: template, no event name");
        let n = seq_of(&id);
        assert!(n > last, "ids increase in publish order: {n} after {last}");
        last = n;
    }
    assert_quiet(&mut s, "five publishes").await;
}

// ---------------------------------------------------------------------------
// Route matching
// ---------------------------------------------------------------------------

#[tokio::test]
async fn literal_path_and_named_segments() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: literal
    match: { path: "/hooks/literal" }
    publish: { topic: "lit" }
  - name: orders
    match: { path: "/hooks/{tenant}/orders" }
    publish: { topic: "orders.{path:tenant}", data: "tenant={path:tenant}" }
"#,
    )
    .await;
    let mut acme = app.subscribe("topic=orders.acme", &[]).await;
    let mut lit = app.subscribe("topic=lit", &[]).await;

    assert_eq!(matched_topic(&app, "/hooks/literal", &[], "x").await, "lit");
    assert_eq!(lit.next_event().await.data, "x");

    let r = app.post("/hooks/acme/orders", &[], "{}").await;
    let (id, topics) = accepted(&r);
    assert_eq!(topics, ["orders.acme"]);
    let e = acme.next_event().await;
    assert_eq!(
        (e.id.as_str(), e.data.as_str()),
        (id.as_str(), "tenant=acme")
    );

    assert_eq!(
        matched_topic(&app, "/hooks/globex/orders", &[], "{}").await,
        "orders.globex"
    );

    for path in [
        "/hooks/literal/more",
        "/hooks/literall",
        "/hooks",
        "/hooks/acme/orders/more",
        "/hooks/acme",
        "/hooks//orders",
        "/other/acme/orders",
    ] {
        app.post(path, &[], "{}")
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert_quiet(&mut acme, "unmatched paths").await;
    assert_quiet(&mut lit, "unmatched paths").await;
}

#[tokio::test]
async fn method_defaults_to_post_and_other_methods_get_405() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: posted
    match: { path: "/hooks/post" }
    publish: { topic: "m.post" }
  - name: put
    match: { path: "/hooks/put", method: PUT }
    publish: { topic: "m.put" }
  - name: both-put
    match: { path: "/hooks/both", method: PUT }
    publish: { topic: "m.both.put" }
  - name: both-post
    match: { path: "/hooks/both" }
    publish: { topic: "m.both.post" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=m.put&topic=m.post", &[]).await;

    let (_, topics) = accepted(&send(&app, Method::PUT, "/hooks/put", &[]).await);
    assert_eq!(topics, ["m.put"]);
    assert_eq!(s.next_event().await.data, "{}");
    let (_, topics) = accepted(&send(&app, Method::POST, "/hooks/post", &[]).await);
    assert_eq!(topics, ["m.post"]);
    s.next_event().await;

    let allow = |r: &Reply| -> HashSet<String> {
        let v = r
            .headers
            .get("allow")
            .unwrap_or_else(|| panic!("405 without Allow: {:?}", r.headers))
            .to_str()
            .unwrap();
        v.split(',').map(|m| m.trim().to_owned()).collect()
    };

    let r = send(&app, Method::POST, "/hooks/put", &[]).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(allow(&r), HashSet::from(["PUT".to_owned()]));

    for m in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let r = send(&app, m.clone(), "/hooks/post", &[]).await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert_eq!(allow(&r), HashSet::from(["POST".to_owned()]), "{m}");
    }

    let r = send(&app, Method::DELETE, "/hooks/both", &[]).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(
        allow(&r),
        HashSet::from(["POST".to_owned(), "PUT".to_owned()])
    );
    let (_, topics) = accepted(&send(&app, Method::PUT, "/hooks/both", &[]).await);
    assert_eq!(topics, ["m.both.put"]);
    let (_, topics) = accepted(&send(&app, Method::POST, "/hooks/both", &[]).await);
    assert_eq!(topics, ["m.both.post"]);

    assert_quiet(&mut s, "405 answers").await;
}

#[tokio::test]
async fn header_conditions_exact_and_present() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: exact
    match: { path: "/hooks/h", headers: { X-Kind: "push" } }
    publish: { topic: "h.exact" }
  - name: present
    match: { path: "/hooks/h", headers: { X-Signature: "*" } }
    publish: { topic: "h.present" }
  - name: both
    match: { path: "/hooks/h", headers: { X-Kind: "pull", X-Extra: "*" } }
    publish: { topic: "h.both" }
  - name: fallback
    match: { path: "/hooks/h" }
    publish: { topic: "h.fallback" }
"#,
    )
    .await;
    let cases: &[(Headers, &str)] = &[
        (&[("X-Kind", "push")], "h.exact"),
        (&[("x-kind", "push")], "h.exact"),
        (&[("X-Kind", "push"), ("X-Signature", "s")], "h.exact"),
        (&[("X-Kind", "pull")], "h.fallback"),
        (&[("X-Kind", "pushed")], "h.fallback"),
        (&[("X-Kind", "Push")], "h.fallback"),
        (&[("X-Kind", "pull"), ("X-Signature", "abc")], "h.present"),
        (&[("X-Signature", "")], "h.present"),
        (&[("X-Kind", "pull"), ("X-Extra", "1")], "h.both"),
        (&[("X-Extra", "1")], "h.fallback"),
        (&[], "h.fallback"),
    ];
    for (headers, want) in cases {
        assert_eq!(
            matched_topic(&app, "/hooks/h", headers, "{}").await,
            *want,
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn json_pointer_conditions() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: created
    match: { path: "/hooks/j", json: { "/type": "order.created" } }
    publish: { topic: "j.created" }
  - name: nested
    match:
      path: "/hooks/j"
      json: { "/a/b/flag": true, "/a/n": 3, "/a/list/1": "y" }
    publish: { topic: "j.nested" }
  - name: private
    match: { path: "/hooks/j", json: { "/repository/private": false } }
    publish: { topic: "j.private" }
  - name: other
    match: { path: "/hooks/j" }
    publish: { topic: "j.other" }
"#,
    )
    .await;
    let cases = [
        (json!({"type": "order.created"}), "j.created"),
        (
            json!({"type": "order.created", "more": [1, 2]}),
            "j.created",
        ),
        (json!({"type": "order.deleted"}), "j.other"),
        (json!({"type": ["order.created"]}), "j.other"),
        (json!({"kind": "order.created"}), "j.other"),
        (
            json!({"a": {"b": {"flag": true}, "n": 3, "list": ["x", "y"]}}),
            "j.nested",
        ),
        (
            json!({"a": {"b": {"flag": "true"}, "n": 3, "list": ["x", "y"]}}),
            "j.other",
        ),
        (
            json!({"a": {"b": {"flag": true}, "n": 4, "list": ["x", "y"]}}),
            "j.other",
        ),
        (
            json!({"a": {"b": {"flag": true}, "n": "3", "list": ["x", "y"]}}),
            "j.other",
        ),
        (json!({"a": {"b": {"flag": true}, "n": 3}}), "j.other"),
        (json!({"repository": {"private": false}}), "j.private"),
        (json!({"repository": {"private": true}}), "j.other"),
        (json!({"repository": {}}), "j.other"),
        (json!([1, 2]), "j.other"),
    ];
    for (body, want) in cases {
        assert_eq!(
            matched_topic(&app, "/hooks/j", &[], &body.to_string()).await,
            want,
            "{body}"
        );
    }
}

#[tokio::test]
async fn skipped_route_lets_the_next_matching_route_win() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: needs-header
    match: { path: "/hooks/{x}", headers: { X-A: "*" } }
    publish: { topic: "first" }
  - name: needs-json
    match: { path: "/hooks/{x}", json: { "/pick": "second" } }
    publish: { topic: "second" }
  - name: any
    match: { path: "/hooks/{x}" }
    publish: { topic: "third" }
  - name: also-any
    match: { path: "/hooks/{x}" }
    publish: { topic: "fourth" }
"#,
    )
    .await;
    let mut s = app
        .subscribe("topic=first&topic=second&topic=third&topic=fourth", &[])
        .await;
    let cases: &[(Headers, &str, &str)] = &[
        (&[("X-A", "1")], r#"{"pick":"second"}"#, "first"),
        (&[], r#"{"pick":"second"}"#, "second"),
        (&[], r#"{"pick":"other"}"#, "third"),
        (&[], "plain", "third"),
    ];
    for (headers, body, want) in cases {
        let r = app.post("/hooks/x", headers, body.to_string()).await;
        let (id, topics) = accepted(&r);
        assert_eq!(topics, [*want], "{headers:?} {body}");
        let e = s.next_event().await;
        assert_eq!(e.id, id);
        assert_eq!(e.data, *body);
    }
    assert_quiet(&mut s, "each webhook matched one route").await;
}

#[tokio::test]
async fn non_json_body_never_matches_a_json_condition() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: json-only
    match: { path: "/hooks/nj", json: { "/x": 1 } }
    publish: { topic: "nj.json" }
  - name: fallback
    match: { path: "/hooks/nj" }
    publish: { topic: "nj.fallback" }
  - name: json-alone
    match: { path: "/hooks/alone", json: { "": {"x": 1} } }
    publish: { topic: "nj.alone" }
  - name: json-alone-2
    match: { path: "/hooks/alone2", json: { "/x": 1 } }
    publish: { topic: "nj.alone2" }
"#,
    )
    .await;
    let mut s = app
        .subscribe("topic=nj.json&topic=nj.fallback&topic=nj.alone2", &[])
        .await;
    assert_eq!(
        matched_topic(&app, "/hooks/nj", &[], r#"{"x":1}"#).await,
        "nj.json"
    );
    s.next_event().await;
    for body in ["x=1", r#"{"x":1"#, "", r#"{"x":1} trailing"#, "{'x':1}"] {
        let r = app.post("/hooks/nj", &[], body.to_owned()).await;
        let (id, topics) = accepted(&r);
        assert_eq!(topics, ["nj.fallback"], "{body:?}");
        let e = s.next_event().await;
        assert_eq!((e.id.as_str(), e.data.as_str()), (id.as_str(), body));
    }
    // Only json routes on the path: a non-JSON body matches none of them.
    assert_eq!(
        matched_topic(&app, "/hooks/alone", &[], r#"{"x":1}"#).await,
        "nj.alone"
    );
    for body in ["x=1", "", "{\"x\":1,}", "null"] {
        app.post("/hooks/alone2", &[], body.to_owned())
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    for body in ["x=1", "[1]"] {
        app.post("/hooks/alone", &[], body.to_owned())
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert_quiet(&mut s, "404 answers").await;
}

#[tokio::test]
async fn no_matching_route_is_404_json() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: one
    match: { path: "/hooks/one", headers: { X-Need: "yes" } }
    publish: { topic: "one" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=one", &[]).await;
    for (path, headers) in [
        ("/hooks/two", &[][..]),
        ("/", &[][..]),
        ("/hooks/one", &[][..]),
        ("/hooks/one", &[("X-Need", "no")][..]),
    ] {
        app.post(path, headers, "{}")
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert_quiet(&mut s, "404 answers").await;
    let (id, _) = accepted(&app.post("/hooks/one", &[("X-Need", "yes")], "ok").await);
    assert_eq!(s.next_event().await.id, id);
}

// ---------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------

#[tokio::test]
async fn placeholders_render_path_query_header_json_and_body() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: all
    match: { path: "/t/{tenant}/{kind}" }
    publish:
      topic: "t.{path:tenant}.{json:/s}"
      event: "{header:X-Kind}"
      data: "{path:tenant}|{path:kind}|{query:q}|{query:e}|{header:X-Kind}|{json:/s}|{json:/n}|{json:/f}|{json:/b}|{json:/nul}|{json:/o}|{json:/a}|{json:/u}"
  - name: shaped
    match: { path: "/shaped" }
    publish:
      topic: "shaped"
      data: '{"s":"{json:/s}","o":{json:/o},"lit":"{{x}","h":"{header:X-Kind}"}'
  - name: body
    match: { path: "/body" }
    publish:
      topic: "body"
      event: "ev-{query:kind}"
      data: "<{body}>"
"#,
    )
    .await;
    let mut t = app.subscribe("topic=t.acme.sv", &[]).await;
    let body = json!({
        "s": "sv",
        "n": 42,
        "f": 1.5,
        "b": true,
        "nul": null,
        "o": {"a": [1, 2], "k": "v"},
        "a": ["x", 1],
        "u": "é ✓ \"q\"",
    });
    let r = app
        .post(
            "/t/acme/created?q=a%20b%2Fc%C3%A9&e=&x=1",
            &[("X-Kind", "order.created")],
            body.to_string(),
        )
        .await;
    let (id, topics) = accepted(&r);
    assert_eq!(topics, ["t.acme.sv"]);
    let e = t.next_event().await;
    assert_eq!(e.id, id);
    assert_eq!(e.event, "order.created");
    assert_eq!(
        e.data,
        r#"acme|created|a b/cé||order.created|sv|42|1.5|true|null|{"a":[1,2],"k":"v"}|["x",1]|é ✓ "q""#
    );

    let mut shaped = app.subscribe("topic=shaped", &[]).await;
    let r = app
        .post(
            "/shaped",
            &[("X-Kind", "k")],
            r#"{"s": "text", "o": { "z": [ 1, {"y": null} ] }}"#,
        )
        .await;
    accepted(&r);
    let e = shaped.next_event().await;
    assert_eq!(
        e.data,
        r#"{"s":"text","o":{"z":[1,{"y":null}]},"lit":"{x}","h":"k"}"#
    );
    let v: Value = serde_json::from_str(&e.data).expect("renders as JSON");
    assert_eq!(v["o"]["z"][1], json!({"y": null}));

    let mut b = app.subscribe("topic=body", &[]).await;
    let r = app.post("/body?kind=a", &[], "raw {not json} \u{e9}").await;
    let (id, _) = accepted(&r);
    let e = b.next_event().await;
    assert_eq!(e.id, id);
    assert_eq!(e.event, "ev-a");
    assert_eq!(e.data, "<raw {not json} \u{e9}>");
}

#[tokio::test]
async fn a_topic_list_publishes_one_event_on_several_topics() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: multi
    match: { path: "/hooks/{x}" }
    publish:
      topic: ["multi.a", "multi.{path:x}", "other.{json:/t}"]
      event: "multi"
"#,
    )
    .await;
    let mut a = app.subscribe("topic=multi.a", &[]).await;
    let mut b = app.subscribe("topic=multi.b", &[]).await;
    let mut o = app.subscribe("topic=other.z", &[]).await;
    let mut ab = app.subscribe("topic=multi.a&topic=multi.b", &[]).await;
    let mut all = app
        .subscribe(
            "topic=multi.a&topic=multi.b&topic=other.z&topic=multi.*",
            &[],
        )
        .await;
    let mut pat = app.subscribe("topic=multi.*", &[]).await;

    let r = app.post("/hooks/b", &[], r#"{"t":"z"}"#).await;
    let (id, topics) = accepted(&r);
    assert_eq!(topics, ["multi.a", "multi.b", "other.z"]);
    for (name, s) in [
        ("multi.a", &mut a),
        ("multi.b", &mut b),
        ("other.z", &mut o),
        ("multi.a+multi.b", &mut ab),
        ("all", &mut all),
        ("multi.*", &mut pat),
    ] {
        let e = s.next_event().await;
        assert_eq!(e.id, id, "{name}: one event, one id");
        assert_eq!(e.event, "multi");
        assert_eq!(e.data, r#"{"t":"z"}"#);
        assert_quiet(s, &format!("{name}: the event once")).await;
    }

    // The next event is received once too, and after the first.
    let r = app.post("/hooks/b", &[], r#"{"t":"z"}"#).await;
    let (id2, _) = accepted(&r);
    assert!(seq_of(&id2) > seq_of(&id));
    let e = ab.next_event().await;
    assert_eq!(e.id, id2);
    assert_quiet(&mut ab, "the second event once").await;
}

#[tokio::test]
async fn default_data_is_the_body_as_received() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: raw
    match: { path: "/hooks/raw" }
    publish: { topic: "raw" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=raw", &[]).await;
    for body in [
        "line one\nline two\n\nline four",
        "trailing newline\n",
        "\nleading newline",
        " leading space and: colon",
        "data: not a field\nid: 7\nevent: nope\n\nretry: 1",
        "unicode é ✓ 𝄞",
        r#"{"pretty": {
  "nested": [1, 2]
}}"#,
        "x",
    ] {
        let r = app.post("/hooks/raw", &[], body.to_owned()).await;
        let (id, _) = accepted(&r);
        let e = s.next_event().await;
        assert_eq!(e.id, id, "{body:?}");
        assert_eq!(e.event, "message", "{body:?}");
        assert_eq!(e.data, body);
    }
    assert_quiet(&mut s, "one event per body").await;
}

// ---------------------------------------------------------------------------
// Errors; a rejected webhook publishes nothing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn json_template_on_non_json_body_is_400_invalid_json() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: uses-json
    match: { path: "/hooks/j" }
    publish:
      topic: "ij"
      data: "{json:/a}"
      dedupe: "{header:X-Id}"
  - name: json-topic
    match: { path: "/hooks/jt" }
    publish:
      topic: "ij.{json:/t}"
"#,
    )
    .await;
    let mut s = app.subscribe("topic=ij&topic=ij.x", &[]).await;
    for body in ["a=1", "", "{\"a\":", "{'a':1}"] {
        app.post("/hooks/j", &[("X-Id", "k1")], body.to_owned())
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
        app.post("/hooks/jt", &[], body.to_owned())
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    }
    assert_quiet(&mut s, "400 invalid_json").await;
    // The rejected requests left no dedupe key behind.
    let (id, _) = accepted(
        &app.post("/hooks/j", &[("X-Id", "k1")], r#"{"a":"ok"}"#)
            .await,
    );
    let e = s.next_event().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), (id.as_str(), "ok"));
    let (id, _) = accepted(&app.post("/hooks/jt", &[], r#"{"t":"x"}"#).await);
    assert_eq!(s.next_event().await.id, id);
}

/// `max_body: 1KiB` and one route, `/hooks/big`, publishing to `big`.
const BIG: &str = r#"
limits: { max_body: 1KiB }
routes:
  - name: big
    match: { path: "/hooks/big" }
    publish: { topic: "big" }
"#;

#[tokio::test]
async fn body_over_max_body_with_content_length_is_413() {
    let app = TestApp::spawn(BIG).await;
    let mut s = app.subscribe("topic=big", &[]).await;
    for n in [1025, 4096, 200_000] {
        app.post("/hooks/big", &[], "x".repeat(n))
            .await
            .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    }
    assert_quiet(&mut s, "413 body_too_large").await;

    let exact = "y".repeat(1024);
    let (id, _) = accepted(&app.post("/hooks/big", &[], exact.clone()).await);
    let e = s.next_event().await;
    assert_eq!(e.id, id, "a body of exactly max_body is accepted");
    assert_eq!(e.data, exact);
}

/// Sends a chunked POST (no Content-Length) over a raw socket and returns status
/// and body. `paced`: one chunk at a time with pauses, else everything in one write;
/// `finish`: send the final zero-length chunk.
async fn post_chunked(
    addr: SocketAddr,
    path: &str,
    chunks: &[Vec<u8>],
    paced: bool,
    finish: bool,
) -> (u16, Vec<u8>) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    for c in chunks {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
        if paced {
            sock.write_all(&out).await.unwrap();
            out.clear();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if finish {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        sock.write_all(&out).await.unwrap();
    }
    let r = read_response(&mut sock, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (r.status, r.body)
}

#[tokio::test]
async fn chunked_body_over_max_body_is_413() {
    let app = TestApp::spawn(BIG).await;
    let mut s = app.subscribe("topic=big", &[]).await;

    // 3 x 400 bytes, complete with the final chunk.
    let chunks = vec![vec![b'a'; 400]; 3];
    let (status, body) = post_chunked(app.addr, "/hooks/big", &chunks, false, true).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let j: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["error"], "body_too_large", "{j}");
    assert!(j["message"].as_str().is_some_and(|m| m.len() > 10), "{j}");

    // The limit holds while the body is still arriving: no need to wait for its end.
    let chunks = vec![vec![b'b'; 300]; 4];
    let (status, body) = post_chunked(app.addr, "/hooks/big", &chunks, true, false).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let j: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["error"], "body_too_large", "{j}");

    assert_quiet(&mut s, "413 on chunked bodies").await;

    // Exactly max_body in four chunks is accepted.
    let chunks: Vec<Vec<u8>> = (b'c'..=b'f').map(|c| vec![c; 256]).collect();
    let (status, body) = post_chunked(app.addr, "/hooks/big", &chunks, true, true).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let j: Value = serde_json::from_slice(&body).unwrap();
    let e = s.next_event().await;
    assert_eq!(e.id, j["id"].as_str().unwrap());
    assert_eq!(e.data, String::from_utf8(chunks.concat()).unwrap());
}

#[tokio::test]
async fn unresolvable_placeholder_is_422_unresolved_template() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: header
    match: { path: "/hooks/header" }
    publish: { topic: "u", data: "h={header:X-Need}" }
  - name: query
    match: { path: "/hooks/query" }
    publish: { topic: "u", data: "q={query:need}" }
  - name: json
    match: { path: "/hooks/json" }
    publish: { topic: "u", data: "j={json:/need/deep}" }
  - name: topic
    match: { path: "/hooks/topic" }
    publish: { topic: ["u", "u.{header:X-Topic}"] }
  - name: event
    match: { path: "/hooks/event" }
    publish: { topic: "u", event: "{json:/kind}" }
  - name: dedupe
    match: { path: "/hooks/dedupe" }
    publish: { topic: "u", dedupe: "{header:X-Delivery}" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=u", &[]).await;
    let rejected: &[(&str, Headers, &str)] = &[
        ("/hooks/header", &[("X-Other", "1")], "{}"),
        ("/hooks/query", &[], "{}"),
        ("/hooks/query?needed=1&nee=2", &[], "{}"),
        ("/hooks/json", &[], r#"{"need":{"shallow":1}}"#),
        ("/hooks/json", &[], r#"{"need":"deep"}"#),
        ("/hooks/topic", &[], "{}"),
        ("/hooks/event", &[], r#"{"type":"x"}"#),
        ("/hooks/dedupe", &[], "{}"),
    ];
    for (path, headers, body) in rejected {
        app.post(path, headers, body.to_string())
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "unresolved_template");
    }
    assert_quiet(&mut s, "422 unresolved_template").await;

    let ok: &[(&str, Headers, &str, &str)] = &[
        ("/hooks/header", &[("X-Need", "v")], "{}", "h=v"),
        ("/hooks/query?need=v%26w", &[], "{}", "q=v&w"),
        ("/hooks/query?need=", &[], "{}", "q="),
        ("/hooks/json", &[], r#"{"need":{"deep":[1]}}"#, "j=[1]"),
        ("/hooks/topic", &[("X-Topic", "t")], "tt", "tt"),
        ("/hooks/event", &[], r#"{"kind":"k"}"#, r#"{"kind":"k"}"#),
        ("/hooks/dedupe", &[("X-Delivery", "d")], "dd", "dd"),
    ];
    for (path, headers, body, data) in ok {
        let (id, _) = accepted(&app.post(path, headers, body.to_string()).await);
        let e = s.next_event().await;
        assert_eq!(
            (e.id.as_str(), e.data.as_str()),
            (id.as_str(), *data),
            "{path}"
        );
    }
}

#[tokio::test]
async fn rendered_topic_that_is_not_a_topic_is_422_invalid_topic() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: t
    match: { path: "/hooks/t" }
    publish: { topic: ["it.all", "it.{json:/t}"] }
  - name: whole
    match: { path: "/hooks/whole" }
    publish: { topic: ["it.all", "{json:/t}"] }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=it.all", &[]).await;
    for t in [
        "a b",
        "",
        "x..y",
        "x.",
        ".x",
        "a*",
        ">",
        "é",
        "a\nb",
        &"z".repeat(300),
    ] {
        let body = json!({ "t": t }).to_string();
        app.post("/hooks/t", &[], body.clone())
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_topic");
        app.post("/hooks/whole", &[], body)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_topic");
    }
    assert_quiet(&mut s, "422 invalid_topic").await;

    let r = app.post("/hooks/t", &[], r#"{"t":"ok_1:x/y-z"}"#).await;
    let (id, topics) = accepted(&r);
    assert_eq!(topics, ["it.all", "it.ok_1:x/y-z"]);
    assert_eq!(s.next_event().await.id, id);
}

#[tokio::test]
async fn body_not_utf8_is_422_only_when_the_body_is_used_as_text() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: text
    match: { path: "/hooks/text" }
    publish: { topic: "bin", data: "got {body}" }
  - name: fixed
    match: { path: "/hooks/fixed" }
    publish: { topic: "bin", data: "fixed {header:X-A} {query:q}" }
  - name: event-uses-body
    match: { path: "/hooks/event" }
    publish: { topic: "bin", event: "e-{body}", data: "no body here" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=bin", &[]).await;
    let bad: &[&[u8]] = &[b"\xff\xfe", b"ok then \xc3", b"\xed\xa0\x80 surrogate"];
    for bytes in bad {
        for path in ["/hooks/text", "/hooks/event"] {
            app.post(path, &[], Bytes::copy_from_slice(bytes))
                .await
                .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "body_not_utf8");
        }
    }
    assert_quiet(&mut s, "422 body_not_utf8").await;

    for bytes in bad {
        let r = app
            .post(
                "/hooks/fixed?q=1",
                &[("X-A", "a")],
                Bytes::copy_from_slice(bytes),
            )
            .await;
        let (id, _) = accepted(&r);
        let e = s.next_event().await;
        assert_eq!((e.id.as_str(), e.data.as_str()), (id.as_str(), "fixed a 1"));
    }
    let (id, _) = accepted(&app.post("/hooks/text", &[], "fine").await);
    let e = s.next_event().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), (id.as_str(), "got fine"));
}

#[tokio::test]
async fn every_rejection_publishes_nothing() {
    let app = TestApp::spawn(
        r#"
limits: { max_body: 1KiB }
routes:
  - name: r
    match: { path: "/hooks/r", headers: { X-Go: "*" } }
    publish:
      topic: ["rej", "rej.{json:/t}"]
      event: "{query:ev}"
      data: "{body}"
"#,
    )
    .await;
    let mut s = app.subscribe("topic=rej&topic=rej.%3E", &[]).await;
    let go = [("X-Go", "1")];
    let attempts: Vec<(&str, Reply, StatusCode, &str)> = vec![
        (
            "no route",
            app.post("/hooks/r?ev=e", &[], r#"{"t":"a"}"#).await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "wrong method",
            request(
                app.addr,
                Method::PUT,
                "/hooks/r?ev=e",
                &go,
                Bytes::from_static(br#"{"t":"a"}"#),
            )
            .await,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "invalid json",
            app.post("/hooks/r?ev=e", &go, "t=a").await,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "too large",
            app.post(
                "/hooks/r?ev=e",
                &go,
                format!(r#"{{"t":"a","p":"{}"}}"#, "p".repeat(1100)),
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "unresolved",
            app.post("/hooks/r", &go, r#"{"t":"a"}"#).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unresolved_template",
        ),
        (
            "invalid topic",
            app.post("/hooks/r?ev=e", &go, r#"{"t":"a b"}"#).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_topic",
        ),
    ];
    for (what, reply, status, code) in &attempts {
        assert_eq!(reply.status, *status, "{what}: {}", reply.text());
        reply.assert_error(*status, code);
    }
    assert_quiet(&mut s, "six kinds of rejection").await;

    let r = app.post("/hooks/r?ev=e", &go, r#"{"t":"a"}"#).await;
    let (id, topics) = accepted(&r);
    assert_eq!(topics, ["rej", "rej.a"]);
    let e = s.next_event().await;
    assert_eq!(e.id, id, "the valid webhook is the next event");
    assert_eq!(e.event, "e");
    assert_eq!(e.data, r#"{"t":"a"}"#);
    assert_quiet(&mut s, "one valid webhook").await;
}

// ---------------------------------------------------------------------------
// Dedupe
// ---------------------------------------------------------------------------

fn assert_duplicate(r: &Reply, first_id: &str, topics: &[&str]) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.json(),
        json!({ "id": first_id, "topics": topics, "duplicate": true })
    );
}

#[tokio::test]
async fn dedupe_same_key_is_answered_with_the_first_id_and_not_published() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: d
    match: { path: "/hooks/d" }
    publish:
      topic: ["dd", "dd.{json:/t}"]
      dedupe: "{header:X-Delivery}"
"#,
    )
    .await;
    let mut s = app.subscribe("topic=dd", &[]).await;
    let r = app
        .post("/hooks/d", &[("X-Delivery", "k1")], r#"{"t":"a"}"#)
        .await;
    let (first, topics) = accepted(&r);
    assert_eq!(topics, ["dd", "dd.a"]);
    // The retry names the first event's topics, even with another body.
    for body in [r#"{"t":"a"}"#, r#"{"t":"b"}"#] {
        let r = app.post("/hooks/d", &[("X-Delivery", "k1")], body).await;
        assert_duplicate(&r, &first, &["dd", "dd.a"]);
    }
    let e = s.next_event().await;
    assert_eq!(
        (e.id.as_str(), e.data.as_str()),
        (first.as_str(), r#"{"t":"a"}"#)
    );
    assert_quiet(&mut s, "duplicates").await;

    let r = app
        .post("/hooks/d", &[("X-Delivery", "k2")], r#"{"t":"c"}"#)
        .await;
    let (second, topics) = accepted(&r);
    assert_ne!(second, first);
    assert_eq!(topics, ["dd", "dd.c"]);
    let e = s.next_event().await;
    assert_eq!(
        (e.id.as_str(), e.data.as_str()),
        (second.as_str(), r#"{"t":"c"}"#)
    );
    let r = app
        .post("/hooks/d", &[("X-Delivery", "k1")], r#"{"t":"a"}"#)
        .await;
    assert_duplicate(&r, &first, &["dd", "dd.a"]);
    assert_quiet(&mut s, "a duplicate of the first key").await;
}

#[tokio::test]
async fn dedupe_keys_are_per_route() {
    let app = TestApp::spawn(
        r#"
routes:
  - name: one
    match: { path: "/hooks/one" }
    publish: { topic: "pr", dedupe: "{header:X-Delivery}" }
  - name: two
    match: { path: "/hooks/two" }
    publish: { topic: "pr", dedupe: "{header:X-Delivery}" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=pr", &[]).await;
    let (a, _) = accepted(&app.post("/hooks/one", &[("X-Delivery", "same")], "1").await);
    let (b, _) = accepted(&app.post("/hooks/two", &[("X-Delivery", "same")], "2").await);
    assert_ne!(a, b);
    let got: Vec<_> = s
        .events(2)
        .await
        .into_iter()
        .map(|e| (e.id, e.data))
        .collect();
    assert_eq!(
        got,
        [(a.clone(), "1".to_owned()), (b.clone(), "2".to_owned())]
    );
    assert_duplicate(
        &app.post("/hooks/one", &[("X-Delivery", "same")], "1").await,
        &a,
        &["pr"],
    );
    assert_duplicate(
        &app.post("/hooks/two", &[("X-Delivery", "same")], "2").await,
        &b,
        &["pr"],
    );
    assert_quiet(&mut s, "duplicates on both routes").await;
}

#[tokio::test]
async fn dedupe_key_is_forgotten_after_the_window() {
    let app = TestApp::spawn(
        r#"
dedupe: { window: 300ms }
routes:
  - name: w
    match: { path: "/hooks/w" }
    publish: { topic: "win", dedupe: "{query:key}" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=win", &[]).await;
    let (first, _) = accepted(&app.post("/hooks/w?key=k", &[], "1").await);
    assert_duplicate(
        &app.post("/hooks/w?key=k", &[], "1").await,
        &first,
        &["win"],
    );
    assert_eq!(s.next_event().await.id, first);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (second, _) = accepted(&app.post("/hooks/w?key=k", &[], "1").await);
    assert!(seq_of(&second) > seq_of(&first));
    let e = s.next_event().await;
    assert_eq!(e.id, second, "published again after the window");
    assert_duplicate(
        &app.post("/hooks/w?key=k", &[], "1").await,
        &second,
        &["win"],
    );
    assert_quiet(&mut s, "a duplicate within the new window").await;
}

#[tokio::test]
async fn dedupe_forgets_the_oldest_key_past_max_keys() {
    let app = TestApp::spawn(
        r#"
dedupe: { max_keys: 2 }
routes:
  - name: m
    match: { path: "/hooks/m" }
    publish: { topic: "mk", dedupe: "{json:/key}" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=mk", &[]).await;
    let post = |k: &str| app.post("/hooks/m", &[], json!({ "key": k }).to_string());
    let mut ids = HashMap::new();
    for k in ["a", "b", "c"] {
        let (id, _) = accepted(&post(k).await);
        assert_eq!(s.next_event().await.id, id);
        ids.insert(k, id);
    }
    // "a" was the oldest of three with room for two: forgotten, so published again.
    let (a2, _) = accepted(&post("a").await);
    assert_ne!(a2, ids["a"]);
    assert_eq!(s.next_event().await.id, a2);
    // Remembered now: "c" and the new "a" ("b" went when "a" came back).
    assert_duplicate(&post("c").await, &ids["c"], &["mk"]);
    assert_duplicate(&post("a").await, &a2, &["mk"]);
    assert_quiet(&mut s, "duplicates of remembered keys").await;
    let (b2, _) = accepted(&post("b").await);
    assert_eq!(s.next_event().await.id, b2);
}

// ---------------------------------------------------------------------------
// Order under concurrent publishers
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Sent {
    task: usize,
    seq: usize,
    id: String,
    sent_at: Instant,
    acked_at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_keep_per_topic_order() {
    const TASKS: usize = 8;
    const EACH: usize = 50;
    let app = TestApp::spawn(
        r#"
routes:
  - name: load
    match: { path: "/hooks/load" }
    publish: { topic: "load" }
"#,
    )
    .await;
    let mut s = app.subscribe("topic=load", &[]).await;
    let addr = app.addr;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::with_capacity(EACH);
            for seq in 0..EACH {
                let sent_at = Instant::now();
                let r = request(
                    addr,
                    Method::POST,
                    "/hooks/load",
                    &[],
                    Bytes::from(format!("{task}-{seq}")),
                )
                .await;
                let acked_at = Instant::now();
                let (id, _) = accepted(&r);
                sent.push(Sent {
                    task,
                    seq,
                    id,
                    sent_at,
                    acked_at,
                });
            }
            sent
        }));
    }
    let received = tokio::time::timeout(Duration::from_secs(60), s.events(TASKS * EACH))
        .await
        .expect("all events in time");
    let mut sent = Vec::new();
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    assert_quiet(&mut s, "all events").await;

    // Every acknowledged event arrives once, with the acknowledged id.
    let by_id: HashMap<&str, &Sent> = sent.iter().map(|x| (x.id.as_str(), x)).collect();
    assert_eq!(by_id.len(), TASKS * EACH, "ids are unique");
    let mut position = HashMap::new();
    let mut next_seq = [0usize; TASKS];
    let mut last = 0;
    for (i, e) in received.iter().enumerate() {
        assert_id_format(&e.id);
        let n = seq_of(&e.id);
        assert!(n > last, "ids strictly increase: {} after {last}", e.id);
        last = n;
        let x = by_id
            .get(e.id.as_str())
            .unwrap_or_else(|| panic!("unacknowledged id {}", e.id));
        assert_eq!(e.data, format!("{}-{}", x.task, x.seq), "data of {}", e.id);
        assert_eq!(
            x.seq, next_seq[x.task],
            "task {} events arrive in its order",
            x.task
        );
        next_seq[x.task] += 1;
        assert!(
            position.insert(e.id.as_str(), i).is_none(),
            "received twice"
        );
    }
    assert_eq!(next_seq, [EACH; TASKS]);

    // An event whose 202 came back before another was sent arrives first.
    let mut pairs = 0;
    for a in &sent {
        for b in &sent {
            if a.acked_at < b.sent_at {
                pairs += 1;
                assert!(
                    position[a.id.as_str()] < position[b.id.as_str()],
                    "{}-{} was acknowledged before {}-{} was sent, but arrived after it",
                    a.task,
                    a.seq,
                    b.task,
                    b.seq
                );
                assert!(seq_of(&a.id) < seq_of(&b.id));
            }
        }
    }
    assert!(pairs > 0);
}

//! The delivery log on the admin listener: `/deliveries` (fields, filters, the
//! reason each route did not match, the bound), the live tail, redelivery, and the
//! `inspect:` config errors.

mod support;
mod upstream;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use support::{
    AdminApp, PATIENCE, Reply, SecretFile, TempDir, config_error, github_signature, open_stream,
    request,
};

const SECRET: &str = "inspect-secret-Hq72";

/// The standard routes (`named`, `plain` on `/hooks/{room}`), then `signed` on
/// `/signed` with a GitHub signature, an admin listener and `inspect`.
fn yaml(secret: &SecretFile, inspect: &str) -> String {
    // Continues the `routes:` list of support::config, then adds top-level keys.
    support::config(&format!(
        r#"  - name: signed
    match: {{ path: /signed }}
    verify: {{ scheme: github, secret_file: {} }}
    publish: {{ topic: signed }}
admin: {{ listen: "127.0.0.1:0" }}
{inspect}
"#,
        secret.path()
    ))
}

async fn deliveries(app: &AdminApp, query: &str) -> Vec<Value> {
    let r = app.admin_get(&format!("/deliveries{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["deliveries"].as_array().unwrap().clone()
}

async fn admin_post(app: &AdminApp, path: &str) -> Reply {
    request(app.admin, Method::POST, path, &[], Bytes::new()).await
}

#[tokio::test]
async fn each_webhook_is_logged_newest_first_with_route_event_and_signature_result() {
    let secret = SecretFile::new(SECRET);
    let app = AdminApp::spawn(&yaml(&secret, "")).await;
    let body = r#"{"n":1}"#;
    let id = app
        .app
        .publish("/hooks/lobby?token=q-secret-Zz", body)
        .await;
    let r = app
        .app
        .post(
            "/signed",
            &[("x-hub-signature-256", &github_signature(SECRET, body))],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let forged = github_signature("wrong", body);
    let r = app
        .app
        .post("/signed", &[("x-hub-signature-256", &forged)], body)
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "signature_invalid");

    let log = deliveries(&app, "").await;
    assert_eq!(log.len(), 3, "{log:?}");
    let (refused, signed, plain) = (&log[0], &log[1], &log[2]);
    assert_eq!(plain["route"], "plain");
    assert_eq!(plain["method"], "POST");
    assert_eq!(plain["path"], "/hooks/lobby", "the query is never shown");
    assert_eq!(plain["status"], 202);
    assert_eq!(plain["event_id"], id.as_str());
    assert_eq!(plain["topics"], serde_json::json!(["room.lobby"]));
    assert_eq!(plain["body_size"], body.len());
    assert!(plain["elapsed_ms"].as_f64().unwrap() >= 0.0);
    assert!(plain.get("body").is_none(), "bodies are off by default");
    assert!(!plain.to_string().contains("q-secret-Zz"));

    assert_eq!(signed["verify"]["scheme"], "github");
    assert_eq!(signed["verify"]["result"], "ok");
    assert_eq!(refused["route"], "signed");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["code"], "signature_invalid");
    assert_eq!(refused["verify"]["result"], "signature_invalid");
    assert!(refused["message"].as_str().unwrap().len() > 10);
    let headers = refused["headers"].as_array().unwrap();
    assert!(
        headers.contains(&serde_json::json!(["x-hub-signature-256", "[redacted]"])),
        "{headers:?}"
    );
    assert!(!refused.to_string().contains(&forged[7..]));

    // One delivery by id; an id that is not there is 404 JSON.
    let one = app
        .admin_get(&format!("/deliveries/{}", plain["id"].as_str().unwrap()))
        .await;
    assert_eq!(one.json(), *plain);
    app.admin_get("/deliveries/999")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    // The public listener never serves the log or the page.
    for path in ["/deliveries", "/"] {
        let r = app.app.get(path, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!r.text().contains("deliveries\":"), "{}", r.text());
    }
}

#[tokio::test]
async fn a_webhook_no_route_takes_shows_why_each_route_did_not() {
    let app = AdminApp::spawn(
        r#"
admin: { listen: "127.0.0.1:0" }
routes:
  - name: other-path
    match: { path: /elsewhere }
    publish: { topic: t }
  - name: put-only
    match: { path: /hooks/x, method: PUT }
    publish: { topic: t }
  - name: needs-kind
    match: { path: /hooks/x, headers: { X-Kind: "*" } }
    publish: { topic: t }
  - name: live-only
    match: { path: /hooks/x, headers: { X-Mode: live } }
    publish: { topic: t }
  - name: type-a
    match: { path: /hooks/x, json: { "/type": "a" } }
    publish: { topic: t }
"#,
    )
    .await;
    app.app
        .post("/hooks/x", &[("x-mode", "test")], r#"{"type":"b"}"#)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.app
        .post("/hooks/x", &[("x-mode", "test")], "not json")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    // A path no route has, and a method no route has on a path: 404 and 405, logged too.
    app.app.post("/nowhere", &[], "x").await;
    request(
        app.app.addr,
        Method::DELETE,
        "/elsewhere",
        &[],
        Bytes::new(),
    )
    .await
    .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");

    let log = deliveries(&app, "").await;
    assert_eq!(log.len(), 4);
    let reasons = |d: &Value| -> Vec<(String, String, String)> {
        d["unmatched"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["route"].as_str().unwrap().to_owned(),
                    u["kind"].as_str().unwrap().to_owned(),
                    u["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let json_body = reasons(&log[3]);
    let expected = [
        ("other-path", "path", "path does not match /elsewhere"),
        ("put-only", "method", "method is not PUT"),
        ("needs-kind", "header", "header x-kind is missing"),
        ("live-only", "header", "header x-mode is not \"live\""),
        ("type-a", "json", "JSON pointer /type is not \"a\""),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect();
    assert_eq!(json_body, expected);
    assert_eq!(log[3]["route"], Value::Null);
    assert_eq!(log[3]["code"], "not_found");
    let text_body = reasons(&log[2]);
    assert_eq!(text_body[4].1, "json");
    assert!(text_body[4].2.contains("not JSON"), "{:?}", text_body[4]);
    assert_eq!(log[1]["status"], 404);
    assert!(reasons(&log[1]).iter().all(|r| r.1 == "path"));
    assert_eq!(log[0]["status"], 405);
    assert_eq!(log[0]["code"], "method_not_allowed");
    assert_eq!(reasons(&log[0])[0].1, "method");
}

#[tokio::test]
async fn filters_select_by_route_and_status() {
    let secret = SecretFile::new(SECRET);
    let app = AdminApp::spawn(&yaml(&secret, "")).await;
    app.app.publish("/hooks/a", "1").await;
    app.app.post("/hooks/a", &[("x-event", "ping")], "2").await;
    app.app.post("/signed", &[], "3").await;
    app.app.post("/hooks/a/b/c", &[], "4").await;

    let routes =
        |log: Vec<Value>| -> Vec<Value> { log.iter().map(|d| d["route"].clone()).collect() };
    assert_eq!(routes(deliveries(&app, "?route=plain").await), ["plain"]);
    assert_eq!(routes(deliveries(&app, "?route=named").await), ["named"]);
    assert_eq!(
        routes(deliveries(&app, "?route=(none)").await),
        [Value::Null]
    );
    assert_eq!(deliveries(&app, "?status=202").await.len(), 2);
    let refused = deliveries(&app, "?status=4xx").await;
    assert_eq!(
        refused
            .iter()
            .map(|d| d["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [404, 401]
    );
    assert_eq!(deliveries(&app, "?status=4xx&route=signed").await.len(), 1);
    assert_eq!(deliveries(&app, "?limit=1").await[0]["status"], 404);
    for bad in ["?status=20", "?status=abc", "?limit=0", "?limit=x"] {
        app.admin_get(&format!("/deliveries{bad}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_filter");
    }
}

#[tokio::test]
async fn the_log_keeps_the_last_n_and_cuts_bodies_at_body_bytes() {
    let secret = SecretFile::new(SECRET);
    let inspect = "inspect: { deliveries: 3, bodies: true, body_bytes: 8 }";
    let app = AdminApp::spawn(&yaml(&secret, inspect)).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            app.app
                .publish("/hooks/a", &format!("body-{i}-0123456789"))
                .await,
        );
    }
    app.app.publish("/hooks/a", "short").await;
    let log = deliveries(&app, "").await;
    assert_eq!(log.len(), 3, "the ring holds inspect.deliveries records");
    assert_eq!(log[0]["body"], "short");
    assert!(log[0].get("body_cut").is_none());
    assert_eq!(log[0]["redeliverable"], true);
    assert_eq!(log[1]["event_id"], ids[5].as_str());
    assert_eq!(log[1]["body"], "body-5-0", "cut at body_bytes");
    assert_eq!(log[1]["body_cut"], true);
    assert_eq!(log[1]["body_size"], 17);
    assert_eq!(log[1]["redeliverable"], false);
    let status = app.admin_get("/status").await.json();
    assert_eq!(status["deliveries"]["kept"], 3);
    assert_eq!(status["deliveries"]["capacity"], 3);
    // The oldest were pushed out.
    app.admin_get("/deliveries/1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    admin_post(&app, "/deliveries/1/redeliver")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let cut = log[1]["id"].as_str().unwrap();
    admin_post(&app, &format!("/deliveries/{cut}/redeliver"))
        .await
        .assert_error(StatusCode::CONFLICT, "not_redeliverable");
}

#[tokio::test]
async fn the_live_tail_streams_each_new_delivery() {
    let secret = SecretFile::new(SECRET);
    let streams = "streams:\n  - { name: lobby, path: /lobby, topics: [room.lobby] }\n";
    let app = AdminApp::spawn(&yaml(&secret, streams)).await;
    let mut tail = open_stream(app.admin, "/deliveries/stream", &[]).await;
    assert_eq!(tail.status, StatusCode::OK);
    assert_eq!(
        tail.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let _follower = app.app.subscribe("topic=room.lobby", &[]).await;
    let id = app.app.publish("/hooks/lobby", "hi").await;
    app.app.post("/signed", &[], "x").await;
    let first = tail.next_event().await;
    assert_eq!(first.event, "delivery");
    let d: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(d["route"], "plain");
    assert_eq!(d["event_id"], id.as_str());
    let second: Value = serde_json::from_str(&tail.next_event().await.data).unwrap();
    assert_eq!(second["code"], "signature_missing");
    assert_eq!(second["verify"]["result"], "signature_missing");

    // What the page shows besides the log.
    let status = app.admin_get("/status").await.json();
    let routes: Vec<&str> = status["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["named", "plain", "signed"]);
    assert_eq!(status["routes"][2]["verify"], "github");
    assert_eq!(
        status["stream_routes"],
        serde_json::json!([{ "name": "lobby", "path": "/lobby" }])
    );
    assert_eq!(status["subscribers"], 1);
    assert!(status["connections"].as_u64().unwrap() >= 1, "{status}");
    let lobby = status["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "room.lobby")
        .cloned()
        .unwrap();
    assert_eq!(lobby["subscribers"], 1);
    assert_eq!(lobby["history"], 1);
    let page = app.admin_get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(page.text().contains("deliveries/stream"));
    let r = admin_post(&app, "/status").await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn redelivery_publishes_a_kept_webhook_again_through_the_routes_as_they_are_now() {
    let dir = TempDir::new("inspect");
    let file = dir.path("config.yaml");
    let secret = SecretFile::new(SECRET);
    let route = |header: &str| {
        format!(
            r#"
admin: {{ listen: "127.0.0.1:0" }}
inspect: {{ bodies: true }}
routes:
  - name: orders
    match: {{ path: /hooks/orders, headers: {{ X-Kind: "{header}" }} }}
    verify: {{ scheme: github, secret_file: {} }}
    publish:
      topic: "orders.{{json:/region}}"
      event: order
      dedupe: "{{json:/id}}"
"#,
            secret.path()
        )
    };
    std::fs::write(&file, route("order")).unwrap();
    let app = AdminApp::spawn_file(&file).await;
    let body = r#"{"id":"o-1","region":"eu"}"#;
    let sig = github_signature(SECRET, body);
    let headers = [("x-hub-signature-256", sig.as_str()), ("x-kind", "Order")];
    app.app
        .post("/hooks/orders", &headers, body)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let missed = deliveries(&app, "").await[0].clone();
    assert_eq!(
        missed["unmatched"][0]["reason"],
        "header x-kind is not \"order\""
    );
    let missed_id = missed["id"].as_str().unwrap().to_owned();
    // Before the fix the route still does not take it.
    admin_post(&app, &format!("/deliveries/{missed_id}/redeliver"))
        .await
        .assert_error(StatusCode::CONFLICT, "no_route");

    std::fs::write(&file, route("Order")).unwrap();
    app.reload.notify_one();
    let mut sub = app.app.subscribe("topic=orders.eu", &[]).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let again = loop {
        let r = admin_post(&app, &format!("/deliveries/{missed_id}/redeliver")).await;
        if r.status == StatusCode::ACCEPTED {
            break r.json();
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(again["topics"], serde_json::json!(["orders.eu"]));
    let ev = sub.next_event().await;
    assert_eq!(Some(ev.id.as_str()), again["id"].as_str());
    assert_eq!(ev.event, "order");
    assert_eq!(ev.data, body);
    // A new event each time: the dedupe key does not hold a redelivery back.
    let twice = admin_post(&app, &format!("/deliveries/{missed_id}/redeliver")).await;
    assert_eq!(twice.status, StatusCode::ACCEPTED, "{}", twice.text());
    assert_ne!(twice.json()["id"], again["id"]);
    assert_eq!(
        Some(sub.next_event().await.id.as_str()),
        twice.json()["id"].as_str()
    );

    let logged = app
        .admin_get(&format!(
            "/deliveries/{}",
            again["delivery"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(logged["redelivery_of"], missed_id.as_str());
    assert_eq!(logged["route"], "orders");
    assert_eq!(
        logged["verify"]["result"], "ok",
        "checked at the time it was received"
    );
    assert_eq!(logged["event_id"], again["id"]);
    // Not from a page of another origin.
    let redeliver = format!("/deliveries/{missed_id}/redeliver");
    let from = |origin: &str| {
        let headers = [("origin", origin.to_owned())];
        let redeliver = redeliver.clone();
        let admin = app.admin;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(admin, Method::POST, &redeliver, &h, Bytes::new()).await
        }
    };
    from("http://evil.example")
        .await
        .assert_error(StatusCode::FORBIDDEN, "cross_origin");
    assert_eq!(
        from(&format!("http://{}", app.admin)).await.status,
        StatusCode::ACCEPTED
    );
    // Only POST.
    let r = app
        .admin_get(&format!("/deliveries/{missed_id}/redeliver"))
        .await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(r.headers["allow"], "POST");
}

#[tokio::test]
async fn a_reload_keeps_the_log_applies_bodies_and_leaves_its_size_for_a_restart() {
    let dir = TempDir::new("inspect-reload");
    let file = dir.path("config.yaml");
    let yaml = |inspect: &str, route: &str| {
        format!(
            "admin: {{ listen: \"127.0.0.1:0\" }}\ninspect: {inspect}\nroutes:\n  - {{ name: {route}, match: {{ path: /hooks/a }}, publish: {{ topic: a }} }}\n"
        )
    };
    std::fs::write(&file, yaml("{ deliveries: 2 }", "before")).unwrap();
    let app = AdminApp::spawn_file(&file).await;
    app.app.publish("/hooks/a", "kept").await;
    std::fs::write(&file, yaml("{ deliveries: 5, bodies: true }", "after")).unwrap();
    app.reload.notify_one();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.admin_get("/status").await.json()["routes"][0]["name"] != "after" {
        assert!(tokio::time::Instant::now() < deadline, "no reload");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let kept = deliveries(&app, "").await;
    assert_eq!(kept.len(), 1, "the log outlives the reload");
    assert_eq!(kept[0]["route"], "before");
    app.app.publish("/hooks/a", "with body").await;
    app.app.publish("/hooks/a", "third").await;
    let r = app.admin_get("/deliveries").await.json();
    assert_eq!(r["capacity"], 2, "inspect.deliveries needs a restart");
    assert_eq!(r["bodies"], true, "inspect.bodies applies at once");
    let log = r["deliveries"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["body"], "third");
    assert_eq!(log[1]["body"], "with body");
    assert_eq!(log[1]["route"], "after");
}

#[tokio::test]
async fn without_kept_bodies_nothing_can_be_redelivered() {
    let secret = SecretFile::new(SECRET);
    let app = AdminApp::spawn(&yaml(&secret, "")).await;
    app.app.publish("/hooks/a", "x").await;
    let id = deliveries(&app, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = admin_post(&app, &format!("/deliveries/{id}/redeliver")).await;
    r.assert_error(StatusCode::CONFLICT, "not_redeliverable");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("inspect.bodies")
    );
}

#[tokio::test]
async fn forward_mode_and_duplicates_are_logged_with_what_they_published() {
    let app_server =
        upstream::Upstream::serve(|req: http::Request<hyper::body::Incoming>| async move {
            let status = if req.uri().path() == "/api/refuse" {
                409
            } else {
                201
            };
            let mut resp = http::Response::new(upstream::full(r#"{"id":42}"#));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            resp
        })
        .await;
    let yaml = upstream::config(
        app_server.addr,
        r#"
admin: { listen: "127.0.0.1:0" }
routes:
  - name: comments
    match: { path: /api/comments, headers: { X-Kind: comment } }
    mode: forward
    publish: { topic: comments, data: "{response:/id}" }
  - name: refuse
    match: { path: /api/refuse }
    mode: forward
    publish: { topic: comments }
  - name: once
    match: { path: /hooks/once }
    publish: { topic: once, dedupe: "{header:X-Id}" }
"#,
    );
    let app = AdminApp::spawn(&yaml).await;
    let r = app
        .app
        .post("/api/comments", &[("x-kind", "comment")], "{}")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // No route's conditions hold: the application still answers, and the log says why.
    let r = app
        .app
        .post("/api/comments", &[("x-kind", "other")], "{}")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app.app.post("/api/refuse", &[], "{}").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let first = app.app.post("/hooks/once", &[("x-id", "1")], "a").await;
    let again = app.app.post("/hooks/once", &[("x-id", "1")], "a").await;
    assert_eq!(again.status, StatusCode::OK);

    let log = deliveries(&app, "").await;
    assert_eq!(log.len(), 5, "{log:?}");
    let (dup, once, refused, passed, forwarded) = (&log[0], &log[1], &log[2], &log[3], &log[4]);
    assert_eq!(forwarded["route"], "comments");
    assert_eq!(forwarded["status"], 201);
    assert_eq!(forwarded["topics"], serde_json::json!(["comments"]));
    assert!(forwarded["event_id"].is_string());
    assert_eq!(passed["route"], Value::Null);
    assert_eq!(passed["passed_to_upstream"], true);
    assert_eq!(passed["status"], 201);
    assert_eq!(
        passed["unmatched"][0]["reason"],
        "header x-kind is not \"comment\""
    );
    assert_eq!(refused["route"], "refuse");
    assert_eq!(refused["status"], 409);
    assert!(
        refused.get("event_id").is_none(),
        "a refused request publishes nothing"
    );
    assert_eq!(once["event_id"], first.json()["id"]);
    assert!(once.get("duplicate").is_none());
    assert_eq!(dup["status"], 200);
    assert_eq!(dup["event_id"], first.json()["id"]);
    assert_eq!(dup["duplicate"], true);
}

#[test]
fn inspect_config_errors_point_at_the_key() {
    let cases = [
        (
            "inspect:\n  deliveries: 10\n  colour: red\n",
            "3:3",
            "unknown field",
        ),
        (
            "inspect:\n  body_bytes: 4XB\n",
            "2:15",
            "inspect.body_bytes",
        ),
        ("inspect:\n  body_bytes: 2MiB\n", "2:15", "at most 1MiB"),
        (
            "inspect:\n  deliveries: 1000001\n",
            "2:15",
            "at most 100000",
        ),
        ("inspect:\n  bodies: maybe\n", "2:11", ""),
    ];
    for (yaml, at, says) in cases {
        let err = config_error(yaml);
        assert!(err.contains(&format!("test.yaml:{at}:")), "{yaml}: {err}");
        assert!(err.contains(says), "{yaml}: {err}");
    }
    let ok = hookcast::config::from_yaml(
        "test.yaml",
        "inspect: { deliveries: 0, bodies: true, body_bytes: 64KiB }\n",
    )
    .unwrap();
    assert_eq!(ok.inspect.body_bytes, 64 << 10);
}

#[tokio::test]
async fn with_deliveries_0_there_is_no_log() {
    let secret = SecretFile::new(SECRET);
    let app = AdminApp::spawn(&yaml(&secret, "inspect: { deliveries: 0 }")).await;
    app.app.publish("/hooks/a", "x").await;
    for path in ["/deliveries", "/deliveries/1", "/deliveries/stream"] {
        app.admin_get(path)
            .await
            .assert_error(StatusCode::NOT_FOUND, "deliveries_off");
    }
    admin_post(&app, "/deliveries/1/redeliver")
        .await
        .assert_error(StatusCode::NOT_FOUND, "deliveries_off");
    assert_eq!(
        app.admin_get("/status").await.json()["deliveries"],
        Value::Null
    );
}

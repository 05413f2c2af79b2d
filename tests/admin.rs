//! The admin listener: `/healthz`, `/readyz`, `/metrics` (parsed by the reference
//! Python parsers, OpenMetrics and Prometheus text), and what the public listener does not serve.

mod support;
mod upstream;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use http::StatusCode;
use serde_json::Value;
use support::{AdminApp, config};

fn python() -> PathBuf {
    std::env::var_os("HOOKCAST_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        PathBuf::from,
    )
}

/// One sample of a scrape.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// Parses an exposition with both of `prometheus_client`'s parsers, OpenMetrics and the
/// classic Prometheus text format (what a Prometheus server falls back to); panics if
/// either rejects it or they read different samples.
fn parse(text: &str) -> Vec<Sample> {
    // The classic format knows these types only; an OpenMetrics-only type (`info`,
    // `stateset`) fails a Prometheus scrape that falls back to it.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let kind = line.rsplit(' ').next().unwrap();
        assert!(
            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
            "not a type of the Prometheus text format: {line}"
        );
    }
    let openmetrics = parse_with("openmetrics", text);
    let mut a: Vec<String> = openmetrics.iter().map(|s| format!("{s:?}")).collect();
    let mut b: Vec<String> = parse_with("prometheus", text)
        .iter()
        .map(|s| format!("{s:?}"))
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the two parsers read different samples");
    openmetrics
}

fn parse_with(format: &str, text: &str) -> Vec<Sample> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/parse_metrics.py");
    let mut child = Command::new(python())
        .arg(&script)
        .arg(format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "no Python at {} ({e}): run scripts/test, which installs prometheus-client into .venv",
                python().display()
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the {format} parser rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_owned(),
                labels: v["labels"].as_object().unwrap().clone(),
                value: v["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// The value of `name` with exactly these labels; 0 when absent (a counter not yet touched).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k) == Some(&Value::from(*v)))
        })
        .map_or(0.0, |s| s.value)
}

async fn scrape(app: &AdminApp) -> Vec<Sample> {
    let r = app.admin_get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let ctype = r.headers["content-type"].to_str().unwrap();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    parse(&r.text())
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_while_serving() {
    let app = AdminApp::spawn(&config("")).await;
    let r = app.admin_get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.admin_get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "ready\n");
    app.app.shutdown().await;
}

#[tokio::test]
async fn admin_refuses_other_paths_and_methods() {
    let app = AdminApp::spawn(&config("")).await;
    app.admin_get("/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let r = support::request(
        app.admin,
        http::Method::POST,
        "/readyz",
        &[],
        bytes::Bytes::new(),
    )
    .await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(r.headers["allow"], "GET, HEAD");
    app.app.shutdown().await;
}

#[tokio::test]
async fn the_public_listener_does_not_serve_admin_paths() {
    let app = AdminApp::spawn(&config("")).await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = app.app.get(path, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    app.app.shutdown().await;
}

#[tokio::test]
async fn metrics_parse_and_count_traffic() {
    let app = AdminApp::spawn(
        &config("sse:\n  max_subscribers: 2\n")
            .replace("sse:\n  heartbeat: 15s\n  retry: 3s\n", ""),
    )
    .await;
    let before = scrape(&app).await;
    assert_eq!(value(&before, "hookcast_subscribers", &[]), 0.0);
    assert_eq!(
        value(
            &before,
            "hookcast_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // A stream, two events through the "plain" route, one through "named".
    let mut live = app.app.subscribe("topic=room.a", &[]).await;
    let first = app.app.publish("/hooks/a", "one").await;
    app.app.publish("/hooks/a", "two").await;
    let r = app
        .app
        .post("/hooks/a", &[("X-Event", "greeting")], "three")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let got = live.events(3).await;
    assert_eq!(got[2].data, "three");

    // A resume after the first id replays the other two.
    let mut resumed = app
        .app
        .subscribe("topic=room.a", &[("Last-Event-ID", first.as_str())])
        .await;
    assert_eq!(resumed.events(2).await[1].data, "three");

    // A third stream is over max_subscribers: told to try later.
    let mut refused = app.app.subscribe("topic=room.a", &[]).await;
    refused.until_end().await;

    let after = scrape(&app).await;
    assert_eq!(value(&after, "hookcast_subscribers", &[]), 2.0);
    assert_eq!(
        value(
            &after,
            "hookcast_webhooks_total",
            &[("route", "plain"), ("status", "202")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "hookcast_webhooks_total",
            &[("route", "named"), ("status", "202")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "hookcast_events_published_total",
            &[("route", "plain")]
        ),
        2.0
    );
    assert_eq!(value(&after, "hookcast_replayed_events_total", &[]), 2.0);
    // Three live deliveries to the first stream, two replayed to the second.
    assert_eq!(value(&after, "hookcast_events_delivered_total", &[]), 5.0);
    assert_eq!(
        value(
            &after,
            "hookcast_subscribers_dropped_total",
            &[("reason", "capacity")]
        ),
        1.0
    );
    // The first stream is in the sample; each of its writes is observed once at most.
    let observed = value(&after, "hookcast_publish_to_write_seconds_count", &[]);
    assert!((1.0..=3.0).contains(&observed), "{observed}");
    // Labels never carry topics or ids.
    for s in &after {
        for v in s.labels.values() {
            let v = v.as_str().unwrap();
            assert!(!v.contains("room.a") && v != first, "{s:?}");
        }
    }
    app.app.shutdown().await;
}

#[tokio::test]
async fn rejected_webhooks_are_counted_by_status() {
    let yaml = r#"
routes:
  - name: orders
    match:
      path: "/orders"
    publish:
      topic: "orders.{json:/region}"
"#;
    let app = AdminApp::spawn(yaml).await;
    let r = app.app.post("/orders", &[], "not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.app.post("/orders", &[], r#"{"region":"eu"}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let m = scrape(&app).await;
    assert_eq!(
        value(
            &m,
            "hookcast_webhooks_total",
            &[("route", "orders"), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "hookcast_webhooks_total",
            &[("route", "orders"), ("status", "202")]
        ),
        1.0
    );
    app.app.shutdown().await;
}

#[tokio::test]
async fn proxied_requests_and_failed_forward_publishes_are_counted() {
    let up = upstream::Upstream::serve(|req: http::Request<hyper::body::Incoming>| async move {
        let status = if req.uri().path() == "/missing" {
            404
        } else {
            200
        };
        let mut resp = http::Response::new(upstream::full("not json"));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        resp
    })
    .await;
    let yaml = upstream::config(
        up.addr,
        r#"
routes:
  - name: comments
    match: { path: /api/comments }
    mode: forward
    publish: { topic: comments, data: "{response:/id}" }
"#,
    );
    let app = AdminApp::spawn(&yaml).await;
    assert_eq!(app.app.get("/page", &[]).await.status, StatusCode::OK);
    assert_eq!(
        app.app.get("/missing", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // The app says 200 with a body that is not JSON: no event.
    let r = app.app.post("/api/comments", &[], "{}").await;
    assert_eq!(r.status, StatusCode::OK);

    let m = scrape(&app).await;
    assert_eq!(
        value(&m, "hookcast_proxy_requests_total", &[("status", "200")]),
        2.0
    );
    assert_eq!(
        value(&m, "hookcast_proxy_requests_total", &[("status", "404")]),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "hookcast_webhooks_total",
            &[("route", "comments"), ("status", "publish_failed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "hookcast_events_published_total",
            &[("route", "comments")]
        ),
        0.0
    );
    app.app.shutdown().await;
}

#[tokio::test]
async fn streams_ended_by_their_lifetime_are_counted() {
    let app =
        AdminApp::spawn(&config("").replace("retry: 3s", "retry: 1s\n  max_stream_duration: 1s"))
            .await;
    let mut s = app.app.subscribe("topic=room.a", &[]).await;
    s.until_end().await;
    assert!(!s.aborted);
    let m = scrape(&app).await;
    assert_eq!(
        value(
            &m,
            "hookcast_subscribers_dropped_total",
            &[("reason", "max_duration")]
        ),
        1.0
    );
    app.app.shutdown().await;
}

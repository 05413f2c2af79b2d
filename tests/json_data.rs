//! JSON-safe event data and reserved event names: a mapping `data` builds JSON of
//! the configured shape whatever the webhook sends (over real sockets, and as a
//! property over any JSON body); a string `data` stays text; a webhook cannot
//! forge `hookcast.*` events.

mod support;

use http::{HeaderMap, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

const ROUTE: &str = r#"
routes:
  - name: orders
    match: { path: /hooks/orders }
    publish:
      topic: orders
      event: "{header:X-Event}"
      data:
        order: "{json:/order}"
        region: "{json:/region}"
        label: "region {json:/region}"
        source: "{header:X-Src}"
        fixed: [1, true, null, "x"]
  - name: text
    match: { path: /hooks/text }
    publish:
      topic: orders
      data: '{"order":{json:/order}}'
"#;

#[tokio::test]
async fn a_mapping_data_keeps_its_shape_whatever_the_webhook_sends() {
    let app = TestApp::spawn(ROUTE).await;
    let mut s = app.subscribe("topic=orders", &[]).await;
    let body = json!({"order": "1,\"admin\":true", "region": "eu\"}\n\u{2028}"});
    let r = app
        .post(
            "/hooks/orders",
            &[("X-Event", "order"), ("X-Src", "a\"b\\")],
            body.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let ev = s.next_event().await;
    assert_eq!(ev.event, "order");
    let data: Value = serde_json::from_str(&ev.data).expect("valid JSON");
    assert_eq!(
        data,
        json!({
            "order": "1,\"admin\":true",
            "region": "eu\"}\n\u{2028}",
            "label": "region eu\"}\n\u{2028}",
            "source": "a\"b\\",
            "fixed": [1, true, null, "x"],
        })
    );
    // The keys come in the order written.
    assert!(ev.data.starts_with(r#"{"order":"#), "{}", ev.data);

    // A string `data` is text: it pastes, as the README warns.
    app.post("/hooks/text", &[], r#"{"order":"1,\"admin\":true"}"#)
        .await;
    assert_eq!(s.next_event().await.data, r#"{"order":1,"admin":true}"#);
    app.shutdown().await;
}

#[tokio::test]
async fn a_rendered_reserved_event_name_is_refused_and_nothing_is_published() {
    let app = TestApp::spawn(ROUTE).await;
    let mut s = app.subscribe("topic=orders", &[]).await;
    let body = r#"{"order":1,"region":"eu"}"#;
    let r = app
        .post(
            "/hooks/orders",
            &[("X-Event", "hookcast.resync"), ("X-Src", "x")],
            body,
        )
        .await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event");
    assert!(r.text().contains("reserved"), "{}", r.text());
    let ok = app
        .post(
            "/hooks/orders",
            &[("X-Event", "hookcast-ish"), ("X-Src", "x")],
            body,
        )
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    // The refused one never reached the stream: the next event is the accepted one.
    let ev = s.next_event().await;
    assert_eq!(ev.event, "hookcast-ish");
    app.shutdown().await;
}

/// Any JSON value, its strings full of what breaks pasted JSON.
fn json_value() -> impl Strategy<Value = Value> {
    let text = || {
        proptest::string::string_regex(
            "([\"\\\\{}\\[\\],:\n\r\t\u{2028}\u{2029}\u{0}a-z]|\\PC){0,12}",
        )
        .unwrap()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mapping_data_is_valid_json_of_the_configured_shape(
        order in json_value(),
        region in json_value(),
        src in "[ -~]{0,12}",
    ) {
        let config = hookcast::config::from_yaml("t.yaml", ROUTE).unwrap();
        let route = &config.router.routes()[0];
        let body = json!({"order": order, "region": region});
        let mut headers = HeaderMap::new();
        headers.insert("x-src", src.parse().unwrap());
        headers.insert("x-event", "order".parse().unwrap());
        let raw = body.to_string();
        let input = hookcast::template::Input {
            path_params: &[],
            query: None,
            headers: &headers,
            body: raw.as_bytes(),
            json: Some(&body),
            response: None,
            identity: None,
        };
        let event = hookcast::ingest::render(route, &input).unwrap();
        let data: Value = serde_json::from_str(&event.data).expect("valid JSON");
        let keys: Vec<&str> = data.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec!["order", "region", "label", "source", "fixed"];
        want.sort_unstable();
        prop_assert_eq!(keys, want);
        // Through text and back, as a subscriber reads it (floats may move in the last digit).
        let read_back = |v: &Value| serde_json::from_str::<Value>(&v.to_string()).unwrap();
        prop_assert_eq!(&data["order"], &read_back(&body["order"]));
        prop_assert_eq!(&data["region"], &read_back(&body["region"]));
        let label = match &body["region"] {
            Value::String(s) => format!("region {s}"),
            other => format!("region {other}"),
        };
        prop_assert_eq!(&data["label"], &Value::from(label));
        prop_assert_eq!(&data["source"], &Value::from(src));
        prop_assert_eq!(&data["fixed"], &json!([1, true, null, "x"]));
    }
}

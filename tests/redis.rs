//! Scale-out: several hookcast replicas sharing one real `redis-server` that each
//! test starts on a free port (so it can stop and restart it).

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::{Item, PATIENCE, RedisServer, TestApp, open_stream, subscribe_ready};

fn yaml(redis: &RedisServer, extra: &str) -> String {
    format!(
        r#"
sse:
  heartbeat: 200ms
  retry: 1s
  history: 3
broker:
  kind: redis
  url: "{url}"
  timeout: 500ms
routes:
  - name: rooms
    match:
      path: "/hooks/{{room}}"
    publish:
      topic: "room.{{path:room}}"
  - name: once
    match:
      path: "/once/{{room}}"
    publish:
      topic: "room.{{path:room}}"
      dedupe: "{{header:X-Delivery}}"
  - name: both
    match:
      path: "/both"
    publish:
      topic: ["room.a", "room.b"]
      event: "pair"
{extra}"#,
        url = redis.url()
    )
}

/// Publishes until accepted (Redis may just have come back), returns the id.
async fn publish_eventually(app: &TestApp, path: &str, body: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let r = app.post(path, &[], body.to_owned()).await;
        if r.status == StatusCode::ACCEPTED {
            return r.json()["id"].as_str().unwrap().to_owned();
        }
        r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable");
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_stream_id(id: &str) -> bool {
    hookcast::hub::parse_stream_id(id).is_some() && hookcast::hub::is_valid_id(id)
}

#[tokio::test]
async fn an_event_published_at_one_replica_reaches_every_replica_in_order() {
    let redis = RedisServer::start().await;
    let a = TestApp::spawn(&yaml(&redis, "")).await;
    let b = TestApp::spawn(&yaml(&redis, "")).await;
    let c = TestApp::spawn(&yaml(&redis, "")).await;
    let mut at_a = subscribe_ready(&a, "topic=room.x", &[]).await;
    let mut at_b = subscribe_ready(&b, "topic=room.x", &[]).await;
    let mut at_c = subscribe_ready(&c, "topic=room.*", &[]).await;

    // Alternate publishers: each 202 comes back before the next is sent, so the
    // order is the publish order, on every replica.
    let mut ids = Vec::new();
    for (i, app) in [&a, &b, &c, &a].into_iter().enumerate() {
        ids.push(app.publish("/hooks/x", &format!("m{i}")).await);
    }
    assert!(ids.iter().all(|id| is_stream_id(id)), "{ids:?}");
    for s in [&mut at_a, &mut at_b, &mut at_c] {
        let got = s.events(4).await;
        let got_ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(got_ids, ids);
        let data: Vec<&str> = got.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["m0", "m1", "m2", "m3"]);
    }

    // One event on two topics has one id and reaches a follower of both once.
    let mut both = subscribe_ready(&c, "topic=room.a&topic=room.b", &[]).await;
    let pair = b.publish("/both", "p").await;
    let e = both.next_event().await;
    assert_eq!(
        (e.id.as_str(), e.event.as_str(), e.data.as_str()),
        (pair.as_str(), "pair", "p")
    );
    let after = b.publish("/hooks/a", "after").await;
    assert_eq!(both.next_event().await.id, after, "the pair came once");
}

#[tokio::test]
async fn a_client_reconnecting_to_another_replica_misses_nothing() {
    let redis = RedisServer::start().await;
    let a = TestApp::spawn(&yaml(&redis, "")).await;
    let b = TestApp::spawn(&yaml(&redis, "")).await;
    let mut s = subscribe_ready(&a, "topic=room.x&topic=room.y", &[]).await;
    let first = a.publish("/hooks/x", "1").await;
    assert_eq!(s.next_event().await.id, first);
    drop(s);

    // Published while the client is away, at both replicas, on both topics.
    let missed = [
        b.publish("/hooks/y", "2").await,
        a.publish("/hooks/z", "not followed").await,
        a.publish("/hooks/x", "3").await,
    ];
    let mut s = subscribe_ready(
        &b,
        "topic=room.x&topic=room.y",
        &[("Last-Event-ID", &first)],
    )
    .await;
    let live = a.publish("/hooks/y", "4").await;
    let got = s.events(3).await;
    let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [missed[0].as_str(), missed[2].as_str(), live.as_str()]);

    // A pattern replays too, through the query parameter event-source-polyfill uses.
    let mut p = subscribe_ready(&a, &format!("topic=room.*&lastEventId={first}"), &[]).await;
    let got = p.events(4).await;
    let data: Vec<&str> = got.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["2", "not followed", "3", "4"]);
}

#[tokio::test]
async fn ids_that_cannot_be_resumed_get_a_resync_event() {
    let redis = RedisServer::start().await;
    let a = TestApp::spawn(&yaml(&redis, "")).await;
    let b = TestApp::spawn(&yaml(&redis, "")).await;
    let _warm = subscribe_ready(&b, "topic=room.x", &[]).await;
    let ids = [
        a.publish("/hooks/x", "1").await,
        a.publish("/hooks/x", "2").await,
        a.publish("/hooks/x", "3").await,
        a.publish("/hooks/x", "4").await,
        a.publish("/hooks/x", "5").await,
    ];

    for bad in ["garbage", "abc-def", "99999999999999-0"] {
        let mut s = subscribe_ready(&b, "topic=room.x", &[("Last-Event-ID", bad)]).await;
        let e = s.next_event().await;
        assert_eq!(e.event, "hookcast.resync", "{bad}");
        let j: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(j["reason"], "unknown_id", "{bad}");
        assert_eq!(j["topics"], serde_json::json!(["room.x"]));
    }

    // sse.history is 3: events 1 and 2 were trimmed, so after the first id one is missing.
    let mut s = subscribe_ready(&b, "topic=room.x", &[("Last-Event-ID", &ids[0])]).await;
    let e = s.next_event().await;
    assert_eq!(e.event, "hookcast.resync");
    let j: serde_json::Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(j["reason"], "history_trimmed");
    // From an id still retained, replay is exact.
    let mut s = subscribe_ready(&b, "topic=room.x", &[("Last-Event-ID", &ids[2])]).await;
    let got = s.events(2).await;
    assert_eq!(
        [got[0].id.as_str(), got[1].id.as_str()],
        [ids[3].as_str(), ids[4].as_str()]
    );
}

#[tokio::test]
async fn a_retried_webhook_is_a_duplicate_at_another_replica() {
    let redis = RedisServer::start().await;
    let a = TestApp::spawn(&yaml(&redis, "")).await;
    let b = TestApp::spawn(&yaml(&redis, "")).await;
    let mut s = subscribe_ready(&b, "topic=room.x", &[]).await;
    let first = a.post("/once/x", &[("X-Delivery", "d-1")], "once").await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text());
    let again = b.post("/once/x", &[("X-Delivery", "d-1")], "once").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    let j = again.json();
    assert_eq!(j["duplicate"], true);
    assert_eq!(j["id"], first.json()["id"]);
    assert_eq!(j["topics"], serde_json::json!(["room.x"]));
    let other = b.post("/once/x", &[("X-Delivery", "d-2")], "next").await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    let got = s.events(2).await;
    assert_eq!(
        [got[0].data.as_str(), got[1].data.as_str()],
        ["once", "next"]
    );
}

#[tokio::test]
async fn redis_down_refuses_webhooks_keeps_streams_and_recovers() {
    let mut redis = RedisServer::start().await;
    let a = TestApp::spawn(&yaml(&redis, "")).await;
    let b = TestApp::spawn(&yaml(&redis, "")).await;
    let mut s = subscribe_ready(&b, "topic=room.x", &[]).await;
    let before = a.publish("/hooks/x", "before").await;
    assert_eq!(s.next_event().await.id, before);

    redis.kill();
    let r = a.post("/hooks/x", &[], "lost?").await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable");
    assert_eq!(r.headers["retry-after"], "5");
    // The open stream stays up: heartbeats keep coming.
    for _ in 0..3 {
        let item = s.next_item_within(PATIENCE).await;
        assert!(matches!(item, Some(Item::Comment(_))), "{item:?}");
    }
    assert!(!s.ended);
    // A reconnect that needs replay cannot be served now: try later.
    let mut later = open_stream(
        b.addr,
        "/events?topic=room.x",
        &[("Last-Event-ID", &before)],
    )
    .await;
    let items = later.until_end().await;
    assert!(
        items.iter().all(|i| matches!(i, Item::Retry(_))),
        "{items:?}"
    );

    redis.restart().await;
    let after = publish_eventually(&a, "/hooks/x", "after").await;
    let e = s.next_event().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), (after.as_str(), "after"));
    // An id from before the restart (Redis lost its data) is unknown.
    let mut old = subscribe_ready(&a, "topic=room.x", &[("Last-Event-ID", &before)]).await;
    let e = old.next_event().await;
    assert_eq!(e.event, "hookcast.resync");
    assert!(e.data.contains("unknown_id"), "{}", e.data);
}

#[tokio::test]
async fn readiness_follows_redis() {
    let mut redis = RedisServer::start().await;
    let config = hookcast::config::from_yaml("test.yaml", &yaml(&redis, "")).unwrap();
    let hub = hookcast::hub::Hub::new(hookcast::hub::Limits::from_config(&config));
    let broker = hookcast::broker::Broker::new(&config, hub.clone());
    wait_for(|| broker.ready(), "ready once redis is reached").await;
    redis.kill();
    wait_for(|| !broker.ready(), "not ready while redis is down").await;
    redis.restart().await;
    wait_for(|| broker.ready(), "ready again").await;
    broker.stop();

    // Started with no Redis at all: not ready, and ready once it appears.
    let mut late = RedisServer::start().await;
    late.kill();
    let config = hookcast::config::from_yaml("test.yaml", &yaml(&late, "")).unwrap();
    let broker = Arc::new(hookcast::broker::Broker::new(
        &config,
        hookcast::hub::Hub::new(hookcast::hub::Limits::from_config(&config)),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!broker.ready());
    late.restart().await;
    wait_for(|| broker.ready(), "ready once redis starts").await;
    broker.stop();
}

async fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn broker_config_errors_point_at_the_value() {
    let check = |broker: &str| {
        let yaml = format!("broker:\n{broker}");
        match hookcast::config::from_yaml("h.yaml", &yaml) {
            Ok(_) => panic!("accepted: {broker}"),
            Err(e) => e.to_string(),
        }
    };
    let e = check("  kind: redis\n  url: \"http://127.0.0.1:6379\"\n");
    assert!(e.starts_with("h.yaml:3:8: broker.url:"), "{e}");
    assert!(e.contains("not a Redis URL"), "{e}");
    let e = check("  kind: redis\n  url: \"rediss://cache:6380\"\n");
    assert!(e.contains("TLS"), "{e}");
    let e = check("  kind: redis\n");
    assert!(
        e.starts_with("h.yaml:2:9:") && e.contains("needs url"),
        "{e}"
    );
    let e = check("  kind: kafka\n");
    assert!(e.contains("broker.kind `kafka` is not known"), "{e}");
    let e = check("  url: \"redis://127.0.0.1\"\n");
    assert!(e.contains("only with kind: redis"), "{e}");
    let e = check("  kind: redis\n  url: \"redis://h\"\n  timeout: 5\n");
    assert!(e.starts_with("h.yaml:4:12: broker.timeout"), "{e}");
    let e = check("  kind: redis\n  url: \"redis://h\"\n  prefix: \"a b\"\n");
    assert!(e.contains("broker.prefix"), "{e}");
    let e = check("  kind: redis\n  url: \"redis://h\"\n  feed_length: 0\n");
    assert!(e.contains("broker.feed_length must be at least 1"), "{e}");
    let e = check("  kind: redis\n  hosts: [a]\n");
    assert!(e.contains("unknown field"), "{e}");
    hookcast::config::from_yaml(
        "h.yaml",
        "broker:\n  kind: redis\n  url: \"redis://:pw@10.0.0.5:6380/2\"\n  prefix: \"app1:\"\n",
    )
    .unwrap();
}

/// Redis drops every replica's connections again and again while one replica
/// publishes: the other's reader reconnects and resumes after the last id it
/// delivered, so its subscriber gets every event once, in order.
#[tokio::test]
async fn a_reader_cut_off_resumes_after_its_last_id() {
    let redis = RedisServer::start().await;
    let a = TestApp::spawn(&yaml(&redis, "")).await;
    let b = TestApp::spawn(&yaml(&redis, "")).await;
    let mut s = subscribe_ready(&b, "topic=room.x", &[]).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        if i % 5 == 0 {
            let _: redis::Value = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
                .query_async(&mut admin)
                .await
                .unwrap();
        }
        ids.push(publish_eventually(&a, "/hooks/x", &i.to_string()).await);
    }
    let got = s.events(30).await;
    let got: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, ids);
    assert!(!s.ended);
}

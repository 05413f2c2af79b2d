//! Scale-out: several hookcast replicas sharing one real broker that each test
//! starts on a free port (so it can stop, pause and restart it). Every test runs
//! against Redis and against NATS JetStream: `redis::NAME` and `nats::NAME`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::broker::{BrokerServer, Kind};
use support::{
    AdminApp, Item, PATIENCE, TestApp, config_error, free_port, open_stream, subscribe_ready,
};

/// Runs each named test (an `async fn(Kind)`) once per broker.
macro_rules! for_each_broker {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::Redis).await
            })*
        }
        mod nats {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::Nats).await
            })*
        }
    };
}

for_each_broker!(
    an_event_published_at_one_replica_reaches_every_replica_in_order,
    a_client_reconnecting_to_another_replica_misses_nothing,
    ids_that_cannot_be_resumed_get_a_resync_event,
    a_retried_webhook_is_a_duplicate_at_another_replica,
    broker_down_refuses_webhooks_keeps_streams_and_recovers,
    readiness_follows_the_broker,
    a_reader_cut_off_resumes_after_its_last_id,
    a_stalled_broker_refuses_and_never_publishes_what_it_refused,
    history_bytes_count_data_bytes,
);

/// Three routes to `room.*`: `rooms`, `once` (deduplicated by `X-Delivery`) and
/// `both` (one event to `room.a` and `room.b`), with a history of 3; `extra` is
/// appended at the top level.
fn yaml(broker: &BrokerServer, extra: &str) -> String {
    broker.replica_yaml(
        "  history: 3\n",
        &format!(
            r#"  - name: once
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
{extra}"#
        ),
    )
}

/// Starts a replica and waits until its reader follows the broker.
async fn spawn_ready(yaml: &str) -> TestApp {
    let app = TestApp::spawn(yaml).await;
    drop(subscribe_ready(&app, "topic=warm.up", &[]).await);
    app
}

/// Publishes until accepted (the broker may just have come back), returns the id.
async fn publish_eventually(app: &TestApp, path: &str, body: &str) -> String {
    publish_until_accepted(app, path, body).await.0
}

/// Publishes until accepted; also says whether a refusal on the way left its
/// outcome open (the broker may have stored that attempt as well).
async fn publish_until_accepted(app: &TestApp, path: &str, body: &str) -> (String, bool) {
    // A broker coming back (a restart, a cluster electing a new leader for the
    // stream after losing a node) takes seconds, more on a busy machine: this
    // bound only tells a broker that never comes back from a slow one.
    let deadline = tokio::time::Instant::now() + 3 * PATIENCE;
    let mut uncertain = false;
    loop {
        let r = app.post(path, &[], body.to_owned()).await;
        if r.status == StatusCode::ACCEPTED {
            return (r.json()["id"].as_str().unwrap().to_owned(), uncertain);
        }
        r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable");
        let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
        uncertain |= !message.contains("nothing will be");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ids are `<number>-<number>` on both brokers, ordered as pairs.
fn is_stream_id(id: &str) -> bool {
    hookcast::broker::parse_stream_id(id).is_some() && hookcast::hub::is_valid_id(id)
}

async fn an_event_published_at_one_replica_reaches_every_replica_in_order(kind: Kind) {
    let broker = BrokerServer::start(kind).await;
    let a = spawn_ready(&yaml(&broker, "")).await;
    let b = spawn_ready(&yaml(&broker, "")).await;
    let c = spawn_ready(&yaml(&broker, "")).await;
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

async fn a_client_reconnecting_to_another_replica_misses_nothing(kind: Kind) {
    let broker = BrokerServer::start(kind).await;
    let a = spawn_ready(&yaml(&broker, "")).await;
    let b = spawn_ready(&yaml(&broker, "")).await;
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

async fn ids_that_cannot_be_resumed_get_a_resync_event(kind: Kind) {
    let broker = BrokerServer::start(kind).await;
    let a = spawn_ready(&yaml(&broker, "")).await;
    let b = spawn_ready(&yaml(&broker, "")).await;
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

async fn history_bytes_count_data_bytes(kind: Kind) {
    let broker = BrokerServer::start(kind).await;
    let config =
        yaml(&broker, "").replace("  history: 3\n", "  history: 100\n  history_bytes: 250\n");
    let a = spawn_ready(&config).await;
    let b = spawn_ready(&config).await;
    let mut live = subscribe_ready(&b, "topic=room.x", &[]).await;
    // 100 line breaks are 100 bytes of data (101 `data:` lines on the wire):
    // 250 bytes hold two such events, on every broker as in memory.
    let body = "\n".repeat(100);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(a.publish("/hooks/x", &body).await);
    }
    // Replica b has read them all, so replay reaches the last.
    assert_eq!(live.events(6).await.len(), 6);

    let mut s = subscribe_ready(&b, "topic=room.x", &[("Last-Event-ID", &ids[3])]).await;
    let got = s.events(2).await;
    assert_eq!(
        got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [&ids[4], &ids[5]]
    );
    assert!(
        got.iter().all(|e| e.data == body),
        "the data comes back whole"
    );
    let mut s = subscribe_ready(&b, "topic=room.x", &[("Last-Event-ID", &ids[2])]).await;
    let e = s.next_event().await;
    assert_eq!(e.event, "hookcast.resync");
    let j: serde_json::Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(j["reason"], "history_trimmed");
}

async fn a_retried_webhook_is_a_duplicate_at_another_replica(kind: Kind) {
    let broker = BrokerServer::start(kind).await;
    let a = spawn_ready(&yaml(&broker, "")).await;
    let b = spawn_ready(&yaml(&broker, "")).await;
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

async fn broker_down_refuses_webhooks_keeps_streams_and_recovers(kind: Kind) {
    let mut broker = BrokerServer::start(kind).await;
    let a = spawn_ready(&yaml(&broker, "")).await;
    let b = spawn_ready(&yaml(&broker, "")).await;
    let mut s = subscribe_ready(&b, "topic=room.x", &[]).await;
    let before = a.publish("/hooks/x", "before").await;
    assert_eq!(s.next_event().await.id, before);

    broker.kill();
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

    broker.restart_empty().await;
    let (after, uncertain) = publish_until_accepted(&a, "/hooks/x", "after").await;
    let mut e = s.next_event().await;
    // An attempt refused with its outcome open may have been stored too, and
    // then comes first; an attempt refused as not stored never does.
    while uncertain && e.data == "after" && e.id != after {
        e = s.next_event().await;
    }
    assert_eq!((e.id.as_str(), e.data.as_str()), (after.as_str(), "after"));
    // An id from before the restart (the broker lost its data) is unknown.
    let mut old = subscribe_ready(&a, "topic=room.x", &[("Last-Event-ID", &before)]).await;
    let e = old.next_event().await;
    assert_eq!(e.event, "hookcast.resync");
    assert!(e.data.contains("unknown_id"), "{}", e.data);
}

async fn readiness_follows_the_broker(kind: Kind) {
    let mut server = BrokerServer::start(kind).await;
    let config = hookcast::config::from_yaml("test.yaml", &yaml(&server, "")).unwrap();
    let hub = hookcast::hub::Hub::new(hookcast::broker::hub_limits(&config));
    let broker = hookcast::broker::Broker::new(&config, hub.clone());
    wait_for(|| broker.ready(), "ready once the broker is reached").await;
    server.kill();
    wait_for(|| !broker.ready(), "not ready while the broker is down").await;
    server.restart().await;
    wait_for(|| broker.ready(), "ready again").await;
    broker.stop();

    // Started with no broker at all: not ready, and ready once it appears.
    let mut late = BrokerServer::start(kind).await;
    late.kill();
    let config = hookcast::config::from_yaml("test.yaml", &yaml(&late, "")).unwrap();
    let broker = Arc::new(hookcast::broker::Broker::new(
        &config,
        hookcast::hub::Hub::new(hookcast::broker::hub_limits(&config)),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!broker.ready());
    late.restart().await;
    wait_for(|| broker.ready(), "ready once the broker starts").await;
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
    let check = |broker: &str| config_error(&format!("broker:\n{broker}"));
    let e = check("  kind: redis\n  url: \"http://127.0.0.1:6379\"\n");
    assert!(e.starts_with("test.yaml:3:8: broker.url:"), "{e}");
    assert!(e.contains("not a Redis URL"), "{e}");
    let e = check("  kind: redis\n  url: \"rediss://cache:6380\"\n");
    assert!(e.contains("TLS"), "{e}");
    let e = check("  kind: redis\n");
    assert!(
        e.starts_with("test.yaml:2:9:") && e.contains("needs url"),
        "{e}"
    );
    let e = check("  kind: kafka\n");
    assert!(e.contains("broker.kind `kafka` is not known"), "{e}");
    let e = check("  url: \"redis://127.0.0.1\"\n");
    assert!(e.contains("only with kind: redis"), "{e}");
    let e = check("  kind: redis\n  url: \"redis://h\"\n  timeout: 5\n");
    assert!(e.starts_with("test.yaml:4:12: broker.timeout"), "{e}");
    let e = check("  kind: redis\n  url: \"redis://h\"\n  prefix: \"a b\"\n");
    assert!(e.contains("broker.prefix"), "{e}");
    let e = check("  kind: redis\n  url: \"redis://h\"\n  feed_length: 0\n");
    assert!(e.contains("broker.feed_length must be at least 1"), "{e}");
    let e = check("  kind: redis\n  hosts: [a]\n");
    assert!(e.contains("unknown field"), "{e}");
    hookcast::config::from_yaml(
        "test.yaml",
        "broker:\n  kind: redis\n  url: \"redis://:pw@10.0.0.5:6380/2\"\n  prefix: \"app1:\"\n",
    )
    .unwrap();

    // NATS: every key checked, each error at its value.
    let nats = |rest: &str| check(&format!("  kind: nats\n  url: \"nats://h:4222\"\n{rest}"));
    let e = check("  kind: nats\n  url: \"http://h:4222\"\n");
    assert!(
        e.starts_with("test.yaml:3:8: broker.url:") && e.contains("not NATS"),
        "{e}"
    );
    let e = check("  kind: nats\n  url: \"tls://h:4222\"\n");
    assert!(e.contains("TLS"), "{e}");
    let e = check("  kind: nats\n  url: \"nats://h:port\"\n");
    assert!(e.contains("not a NATS URL"), "{e}");
    let e = check("  kind: nats\n");
    assert!(
        e.starts_with("test.yaml:2:9:") && e.contains("needs url, e.g. nats://"),
        "{e}"
    );
    for (rest, located) in [
        (
            "  stream: \"my.stream\"\n",
            "test.yaml:4:11: broker.stream:",
        ),
        (
            "  subject_prefix: \"a.>\"\n",
            "test.yaml:4:19: broker.subject_prefix:",
        ),
        (
            "  replicas: 7\n",
            "test.yaml:4:13: broker.replicas must be from 1 to 5",
        ),
        (
            "  max_msgs: 0\n",
            "test.yaml:4:13: broker.max_msgs must be at least 1",
        ),
        (
            "  max_bytes: 12 apples\n",
            "test.yaml:4:14: broker.max_bytes",
        ),
        ("  timeout: 2\n", "test.yaml:4:12: broker.timeout"),
        (
            "  feed_length: 10\n",
            "test.yaml:4:16: broker.feed_length is used only with kind: redis",
        ),
    ] {
        let e = nats(rest);
        assert!(e.starts_with(located), "{rest}: {e}");
    }
    let e = nats("  max_age: 1h\n");
    assert!(e.contains("unknown field"), "{e}");
    let e = check("  kind: redis\n  url: \"redis://h\"\n  stream: S\n");
    assert!(
        e.starts_with("test.yaml:4:11: broker.stream is used only with kind: nats"),
        "{e}"
    );
    let e = config_error("dedupe:\n  window: 2h\nbroker:\n  kind: nats\n  url: \"nats://h\"\n");
    assert!(
        e.starts_with("test.yaml:4:9:") && e.contains("must not exceed sse.history_ttl"),
        "{e}"
    );
    let c = hookcast::config::from_yaml(
        "test.yaml",
        "broker:\n  kind: nats\n  url: \"nats://u:p@a:4222,nats://b:4222\"\n  stream: APP\n  subject_prefix: app.events\n  replicas: 3\n  max_msgs: 5000\n  max_bytes: 64MiB\n",
    )
    .unwrap();
    let hookcast::config::Broker::Nats(n) = c.broker else {
        panic!("{:?}", c.broker)
    };
    assert_eq!(
        (
            n.stream.as_str(),
            n.subject_prefix.as_str(),
            n.replicas,
            n.max_msgs,
            n.max_bytes
        ),
        ("APP", "app.events", 3, 5000, Some(64 << 20))
    );
}

/// The broker drops every replica's connections again and again while one
/// replica publishes: the other's reader reconnects and resumes after the last id
/// it delivered, so its subscriber gets every event once, in order.
async fn a_reader_cut_off_resumes_after_its_last_id(kind: Kind) {
    let mut broker = BrokerServer::start(kind).await;
    let a = spawn_ready(&yaml(&broker, "")).await;
    let b = spawn_ready(&yaml(&broker, "")).await;
    let mut s = subscribe_ready(&b, "topic=room.x", &[]).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        if i % 5 == 0 {
            broker.cut_connections().await;
        }
        ids.push(publish_eventually(&a, "/hooks/x", &i.to_string()).await);
    }
    let got = s.events(30).await;
    let got: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, ids);
    assert!(!s.ended);
}

/// A broker that stops answering (SIGSTOP) for longer than `broker.timeout`:
/// webhooks get 503, `/readyz` 503, open streams keep their heartbeats; when it
/// wakes up and runs what it was sent meanwhile, nothing answered 503 is
/// delivered, live or by replay.
async fn a_stalled_broker_refuses_and_never_publishes_what_it_refused(kind: Kind) {
    let server = BrokerServer::start(kind).await;
    let a = AdminApp::spawn(&yaml(&server, "")).await;
    let b = spawn_ready(&yaml(&server, "")).await;
    let mut s = subscribe_ready(&b, "topic=room.x", &[]).await;
    let before = publish_eventually(&a.app, "/hooks/x", "before").await;
    assert_eq!(s.next_event().await.id, before);
    assert_eq!(a.admin_get("/readyz").await.status, StatusCode::OK);

    server.pause();
    for body in ["refused-1", "refused-2"] {
        let r = a.app.post("/hooks/x", &[], body.to_owned()).await;
        r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable");
        assert_eq!(r.headers["retry-after"], "5");
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while a.admin_get("/readyz").await.status != StatusCode::SERVICE_UNAVAILABLE {
        assert!(tokio::time::Instant::now() < deadline, "/readyz stayed 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let item = s.next_item_within(PATIENCE).await;
        assert!(matches!(item, Some(Item::Comment(_))), "{item:?}");
    }

    server.resume();
    let after = publish_eventually(&a.app, "/hooks/x", "after").await;
    let e = s.next_event().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), (after.as_str(), "after"));
    let mut replay = subscribe_ready(&b, "topic=room.x", &[("Last-Event-ID", &before)]).await;
    let e = replay.next_event().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), (after.as_str(), "after"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while a.admin_get("/readyz").await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "/readyz stayed 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// NATS restarted with its store: delivery resumes without a gap, and ids from
/// before the restart still replay exactly.
#[tokio::test]
async fn nats_restarted_with_its_store_resumes_and_keeps_ids() {
    let mut server = BrokerServer::start(Kind::Nats).await;
    let a = spawn_ready(&yaml(&server, "")).await;
    let b = spawn_ready(&yaml(&server, "")).await;
    let mut s = subscribe_ready(&b, "topic=room.x", &[]).await;
    let first = publish_eventually(&a, "/hooks/x", "1").await;
    let second = publish_eventually(&a, "/hooks/x", "2").await;
    assert_eq!(s.events(2).await[1].id, second);

    server.restart().await;
    let third = publish_eventually(&a, "/hooks/x", "3").await;
    let e = s.next_event().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), (third.as_str(), "3"));
    let mut replay = subscribe_ready(&b, "topic=room.x", &[("Last-Event-ID", &first)]).await;
    let got = replay.events(2).await;
    let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [second.as_str(), third.as_str()]);
}

/// A stream that exists with other settings, or that hookcast did not make, is
/// not changed: hookcast says what differs and stops.
#[tokio::test]
async fn a_nats_stream_with_other_settings_stops_hookcast() {
    let server = BrokerServer::start(Kind::Nats).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let run = || async {
        let config = hookcast::config::from_yaml("test.yaml", &yaml(&server, "")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ran = tokio::time::timeout(
            PATIENCE,
            hookcast::run(listener, config, std::future::pending()),
        )
        .await
        .expect("hookcast stopped");
        ran.unwrap_err().to_string()
    };
    let mut theirs = async_nats::jetstream::stream::Config {
        name: "HOOKCAST".into(),
        subjects: vec!["hookcast.>".into()],
        max_age: Duration::from_secs(60),
        description: Some("hookcast epoch 5".into()),
        ..Default::default()
    };
    js.create_stream(theirs.clone()).await.unwrap();
    let e = run().await;
    assert!(e.contains("exists with other settings"), "{e}");
    assert!(
        e.contains("max_age (sse.history_ttl) is 60s, hookcast wants 3600s"),
        "{e}"
    );
    assert!(!e.contains("subjects"), "{e}");
    let info = js
        .get_stream("HOOKCAST")
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.config.max_age, Duration::from_secs(60), "untouched");

    theirs.max_age = Duration::from_secs(3600);
    theirs.description = None;
    js.update_stream(theirs).await.unwrap();
    let e = run().await;
    assert!(e.contains("was not made by hookcast"), "{e}");
}

/// A node of the three-node cluster of `deploy/nats/node.conf`; killed on drop.
struct ClusterNode {
    child: std::process::Child,
    store: std::path::PathBuf,
}

impl ClusterNode {
    fn start(n: usize, client: u16, cluster: &[u16; 3]) -> ClusterNode {
        let store =
            std::env::temp_dir().join(format!("hookcast-cluster-{}-{client}", std::process::id()));
        let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/node.conf");
        let mut cmd = std::process::Command::new("nats-server");
        cmd.arg("-c")
            .arg(conf)
            .env("NATS_NAME", format!("n{n}"))
            .env("NATS_LISTEN", format!("127.0.0.1:{client}"))
            .env("NATS_STORE", &store)
            .env(
                "NATS_CLUSTER_LISTEN",
                format!("127.0.0.1:{}", cluster[n - 1]),
            );
        for (i, port) in cluster.iter().enumerate() {
            cmd.env(
                format!("NATS_ROUTE_{}", i + 1),
                format!("nats://127.0.0.1:{port}"),
            );
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/deps)");
        ClusterNode { child, store }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// The README's cluster example, run: three nats-servers from
/// `deploy/nats/node.conf`, hookcast with `replicas: 3` and every node's URL. The
/// stream has three copies; with one node killed, both replicas go on taking
/// webhooks and every subscriber still gets every acknowledged event, in order.
#[tokio::test]
async fn a_three_node_nats_cluster_keeps_going_without_one_node() {
    let client = [free_port(), free_port(), free_port()];
    let cluster = [free_port(), free_port(), free_port()];
    let mut nodes: Vec<Option<ClusterNode>> = (1..=3)
        .map(|n| Some(ClusterNode::start(n, client[n - 1], &cluster)))
        .collect();
    let urls: Vec<String> = client
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let config = |urls: &[String]| {
        let broker = format!(
            "  kind: nats\n  url: \"{}\"\n  replicas: 3\n  timeout: 2s\n",
            urls.join(",")
        );
        support::broker::replica_yaml("", &broker, "")
    };
    let a = TestApp::spawn(&config(&urls)).await;
    let reversed: Vec<String> = urls.iter().rev().cloned().collect();
    let b = TestApp::spawn(&config(&reversed)).await;
    let mut at_a = subscribe_ready(&a, "topic=room.x", &[]).await;
    let mut at_b = subscribe_ready(&b, "topic=room.x", &[]).await;

    let mut acked = Vec::new();
    for i in 0..4 {
        let app = if i % 2 == 0 { &a } else { &b };
        acked.push(publish_eventually(app, "/hooks/x", &format!("{i}")).await);
    }
    let js = async_nats::jetstream::new(async_nats::connect(urls[1].as_str()).await.unwrap());
    let info = js
        .get_stream("HOOKCAST")
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    let cluster_info = info.cluster.expect("clustered");
    assert_eq!(cluster_info.replicas.len(), 2, "{cluster_info:?}");

    nodes[0] = None;
    for i in 4..8 {
        let app = if i % 2 == 0 { &a } else { &b };
        acked.push(publish_eventually(app, "/hooks/x", &format!("{i}")).await);
    }
    for s in [&mut at_a, &mut at_b] {
        let mut got = Vec::new();
        while got.len() < acked.len() {
            match s.next_event_within(Duration::from_secs(30)).await {
                Some(e) => got.push(e.id),
                None => panic!("stream ended or went silent after {got:?}"),
            }
        }
        assert_eq!(got, acked);
    }
    drop(nodes);
}

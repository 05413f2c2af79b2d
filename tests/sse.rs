//! Subscribing (README, "Subscribing") over real sockets: the event-stream
//! response, its encoding, refusals, patterns, replay and resync, history bounds,
//! capacity, slow subscribers and `max_stream_duration`. Every test runs its own
//! hookcast with inline YAML.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A config with [`ROUTES`], these `sse:` lines (`heartbeat: 15s` and `retry: 3s`
/// unless given) and `top` at the top level.
fn yaml(sse: &[&str], top: &str) -> String {
    let mut s = String::from("sse:\n");
    for (key, default) in [("heartbeat", "15s"), ("retry", "3s")] {
        if !sse.iter().any(|l| l.starts_with(&format!("{key}:"))) {
            s += &format!("  {key}: {default}\n");
        }
    }
    for line in sse {
        s += &format!("  {line}\n");
    }
    s += top;
    s += "\n";
    s += ROUTES;
    s
}

async fn spawn(sse: &[&str]) -> TestApp {
    TestApp::spawn(&yaml(sse, "")).await
}

async fn publish_named(app: &TestApp, path: &str, event: &str, body: &str) -> String {
    let r = app.post(path, &[("X-Event", event)], body.to_owned()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_owned()
}

fn datas(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

/// The sequence number at the end of a hookcast id (`<epoch>-<seq>`).
fn seq(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("not a hookcast id: {id:?}"))
}

/// The raw block (text between blank lines) that contains `needle`.
fn raw_block(raw: &[u8], needle: &str) -> String {
    let text = String::from_utf8_lossy(raw);
    text.split("\n\n")
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("no block with {needle:?} in {text:?}"))
        .to_owned()
}

/// Reads the first (prelude) items: `retry: <ms>` then a comment.
async fn expect_prelude(s: &mut SseStream, retry_ms: u64) {
    let t = Duration::from_secs(5);
    assert_eq!(s.next_item_within(t).await, Some(Item::Retry(retry_ms)));
    assert!(
        matches!(s.next_item_within(t).await, Some(Item::Comment(_))),
        "a comment follows the retry hint"
    );
}

/// A resync event: no id line of its own, JSON data. Returns (reason, last id, topics sorted).
fn parse_resync(s: &SseStream, e: &SseEvent) -> (String, String, Vec<String>) {
    assert_eq!(e.event, "hookcast.resync", "{e:?}");
    assert_eq!(e.id, "", "a resync carries no id: {e:?}");
    let block = raw_block(&s.raw, "event: hookcast.resync");
    assert!(
        !block.lines().any(|l| l.starts_with("id")),
        "no id: line in the resync block: {block:?}"
    );
    let j: Value = serde_json::from_str(&e.data).expect("resync data is JSON");
    let reason = j["reason"].as_str().expect("reason").to_owned();
    assert!(!reason.is_empty());
    let last = j["last_event_id"]
        .as_str()
        .expect("last_event_id")
        .to_owned();
    let mut topics: Vec<String> = j["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    topics.sort();
    (reason, last, topics)
}

/// A connection that sends `GET path` and then never reads; its receive buffer is small.
async fn never_reading_get(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// Reads until EOF or a reset; panics if the peer keeps the connection open.
/// Returns the bytes read.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open ({} bytes read)",
                got.len()
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

// ---------------------------------------------------------------------------
// The response

#[tokio::test]
async fn response_headers() {
    let app = spawn(&[]).await;
    let s = app.subscribe("topic=room.a", &[]).await;
    assert_eq!(s.status, StatusCode::OK);
    let h = &s.headers;
    assert_eq!(h["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["connection"], "keep-alive");
    assert!(h.get("content-length").is_none(), "{h:?}");
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn first_bytes_arrive_at_once() {
    let app = spawn(&[]).await;
    let mut s = app.subscribe("topic=room.a", &[]).await;
    // Nothing is published: these bytes must come without waiting for an event.
    let started = Instant::now();
    expect_prelude(&mut s, 3000).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let raw = String::from_utf8_lossy(&s.raw).into_owned();
    assert!(raw.starts_with("retry: 3000\n:"), "{raw:?}");
    assert!(
        raw.ends_with("\n\n"),
        "the prelude ends in a blank line: {raw:?}"
    );
    // The prelude sets no event.
    assert_eq!(s.next_event_within(Duration::from_millis(200)).await, None);
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn heartbeats_only_when_idle() {
    let app = spawn(&["heartbeat: 200ms"]).await;
    let mut s = app.subscribe("topic=room.a", &[]).await;
    expect_prelude(&mut s, 3000).await;

    // Idle: a comment within ~1 s, again and again.
    let started = Instant::now();
    for n in 0..3 {
        match s.next_item_within(Duration::from_secs(1)).await {
            Some(Item::Comment(_)) => {}
            other => panic!("heartbeat #{n}: expected a comment within 1 s, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "3 heartbeats took {:?}",
        started.elapsed()
    );

    // Busy: events every ~50 ms; a heartbeat may only follow a quiet spell.
    let addr = app.addr;
    let publisher = tokio::spawn(async move {
        for i in 0..20 {
            publish_at(addr, "/hooks/a", i.to_string()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // Skip what was sent before the first event.
    let mut last = loop {
        match s.next_item_within(PATIENCE).await {
            Some(Item::Event(e)) => {
                assert_eq!(e.data, "0");
                break Instant::now();
            }
            Some(_) => {}
            None => panic!("no event"),
        }
    };
    let mut events = 1;
    let mut heartbeats = 0;
    while events < 20 {
        let item = s.next_item_within(PATIENCE).await.expect("an item");
        let now = Instant::now();
        match item {
            Item::Event(e) => {
                assert_eq!(e.data, events.to_string());
                events += 1;
            }
            Item::Comment(_) => {
                heartbeats += 1;
                let quiet = now - last;
                assert!(
                    quiet >= Duration::from_millis(100),
                    "a heartbeat {quiet:?} after the previous write, while events flowed"
                );
            }
            Item::Retry(r) => panic!("unexpected retry: {r}"),
        }
        last = now;
    }
    assert!(heartbeats <= 5, "{heartbeats} heartbeats among 20 events");
    publisher.await.unwrap();
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn event_encoding() {
    let app = spawn(&[]).await;
    let mut s = app.subscribe("topic=room.a", &[]).await;

    let id = publish_named(&app, "/hooks/a", "order.created", "{\"x\":1}").await;
    let e = s.next_event().await;
    assert_eq!(
        e,
        SseEvent {
            event: "order.created".into(),
            data: "{\"x\":1}".into(),
            id: id.clone()
        }
    );
    let block = raw_block(&s.raw, "order.created");
    assert_eq!(
        block,
        format!("id: {id}\nevent: order.created\ndata: {{\"x\":1}}")
    );

    let id = app.publish("/hooks/a", "l1\nl2\r\nl3\rl4").await;
    let e = s.next_event().await;
    assert_eq!(e.event, "message", "no event: line without a name");
    assert_eq!(e.data, "l1\nl2\nl3\nl4");
    assert_eq!(e.id, id);
    let block = raw_block(&s.raw, "data: l1");
    assert_eq!(
        block,
        format!("id: {id}\ndata: l1\ndata: l2\ndata: l3\ndata: l4")
    );
    assert!(!block.contains('\r'));

    let id = app.publish("/hooks/a", "").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("", id.as_str()));

    let id = app.publish("/hooks/a", "trailing\n").await;
    let e = s.next_event().await;
    assert_eq!(
        (e.data.as_str(), e.id.as_str()),
        ("trailing\n", id.as_str())
    );

    let text = "héllo ✓ 日本語 🎉";
    let id = publish_named(&app, "/hooks/a", "greeting", text).await;
    let e = s.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("greeting", text));
    assert_eq!(e.id, id);
    drop(s);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn refusals_are_json() {
    let app = spawn(&["max_topics_per_subscriber: 2"]).await;
    app.get("/events", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_topic");
    app.get("/events?lastEventId=x", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_topic");
    for bad in ["a..b", "ord*", "a.%3E.b", "a%20b", "a.", "", "%3Ex", "a.*x"] {
        app.get(&format!("/events?topic={bad}"), &[])
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_topic");
        // One bad topic among good ones refuses the whole request.
        app.get(&format!("/events?topic=room.a&topic={bad}"), &[])
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_topic");
    }
    app.get("/events?topic=a&topic=b&topic=c", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "too_many_topics");
    // Exactly the maximum is fine.
    let s = app.subscribe("topic=room.a&topic=room.*", &[]).await;
    drop(s);
    let r = app.post("/events?topic=room.a", &[], "x").await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(r.headers["allow"], "GET, OPTIONS");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------
// Patterns

#[tokio::test]
async fn patterns_match_whole_segments() {
    let app = spawn(&[]).await;
    let mut one = app.subscribe("topic=room.*", &[]).await;
    let mut rest = app.subscribe("topic=room.%3E", &[]).await;
    let mut both = app.subscribe("topic=room.a&topic=room.*", &[]).await;

    let a = app.publish("/hooks/a", "a").await;
    let ab = app.publish("/hooks/a.b", "a.b").await;
    let b = app.publish("/hooks/b", "b").await;

    let got = one.events(2).await;
    assert_eq!(datas(&got), ["a", "b"], "room.* does not match room.a.b");
    assert_eq!((got[0].id.as_str(), got[1].id.as_str()), (&*a, &*b));

    let got = rest.events(3).await;
    assert_eq!(datas(&got), ["a", "a.b", "b"]);
    assert_eq!(got[1].id, ab);

    let got = both.events(2).await;
    assert_eq!(
        datas(&got),
        ["a", "b"],
        "room.a arrives once on one connection"
    );

    // And nothing more for anyone.
    let last = app.publish("/hooks/c", "c").await;
    for s in [&mut one, &mut rest, &mut both] {
        let e = s.next_event().await;
        assert_eq!((e.data.as_str(), e.id.as_str()), ("c", last.as_str()));
    }
    drop((one, rest, both));
    app.shutdown().await;
}

// ---------------------------------------------------------------------------
// Replay

#[tokio::test]
async fn replay_after_last_event_id_header() {
    let app = spawn(&[]).await;
    let mut s = app.subscribe("topic=room.a", &[]).await;
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(app.publish("/hooks/a", &i.to_string()).await);
    }
    let got = s.events(3).await;
    assert_eq!(datas(&got), ["1", "2", "3"]);
    let id2 = got[1].id.clone();
    assert_eq!(id2, ids[1]);
    drop(s);

    for i in 4..=6 {
        ids.push(app.publish("/hooks/a", &i.to_string()).await);
    }
    // Something on another topic must not show up.
    app.publish("/hooks/b", "other").await;

    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &id2)])
        .await;
    expect_prelude(&mut s, 3000).await;
    let got = s.events(4).await;
    assert_eq!(datas(&got), ["3", "4", "5", "6"]);
    let got_ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        got_ids,
        ids[2..6].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let id7 = app.publish("/hooks/a", "7").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("7", id7.as_str()));
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn replay_after_last_event_id_query() {
    let app = spawn(&[]).await;
    let mut ids = Vec::new();
    for i in 1..=6 {
        ids.push(app.publish("/hooks/a", &i.to_string()).await);
    }
    let mut s = app
        .subscribe(&format!("topic=room.a&lastEventId={}", ids[1]), &[])
        .await;
    let got = s.events(4).await;
    assert_eq!(datas(&got), ["3", "4", "5", "6"]);
    assert_eq!(got[3].id, ids[5]);
    let id7 = app.publish("/hooks/a", "7").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("7", id7.as_str()));
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn last_event_id_header_wins_over_query() {
    let app = spawn(&[]).await;
    let mut ids = Vec::new();
    for i in 1..=4 {
        ids.push(app.publish("/hooks/a", &i.to_string()).await);
    }
    // Query says "from 1" (or nonsense); the header says "from 3".
    for query_id in [ids[0].as_str(), "nonsense-1"] {
        let mut s = app
            .subscribe(
                &format!("topic=room.a&lastEventId={query_id}"),
                &[("Last-Event-ID", &ids[2])],
            )
            .await;
        let e = s.next_event().await;
        assert_eq!((e.data.as_str(), e.id.as_str()), ("4", ids[3].as_str()));
        assert_eq!(s.next_event_within(Duration::from_millis(200)).await, None);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn multi_topic_replay_in_id_order_once() {
    let app = spawn(&[]).await;
    let mut s = app.subscribe("topic=room.a&topic=room.b", &[]).await;
    let a1 = app.publish("/hooks/a", "a1").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("a1", a1.as_str()));
    drop(s);

    let mut published = Vec::new();
    for (path, data) in [
        ("/hooks/b", "b1"),
        ("/hooks/a", "a2"),
        ("/both/a/b", "ab"),
        ("/hooks/c", "c-not-followed"),
        ("/hooks/b", "b2"),
        ("/hooks/a", "a3"),
        ("/both/b/a", "ba"),
    ] {
        let id = app.publish(path, data).await;
        if !data.starts_with('c') {
            published.push((id, data.to_owned()));
        }
    }
    let mut s = app
        .subscribe("topic=room.a&topic=room.b", &[("Last-Event-ID", &a1)])
        .await;
    let got = s.events(published.len()).await;
    let got: Vec<(String, String)> = got.into_iter().map(|e| (e.id, e.data)).collect();
    assert_eq!(got, published);
    assert!(got.windows(2).all(|w| seq(&w[0].0) < seq(&w[1].0)));

    // Live: an event on both topics once, then the next one.
    let ab = app.publish("/both/a/b", "live-ab").await;
    let b = app.publish("/hooks/b", "live-b").await;
    let got = s.events(2).await;
    assert_eq!(datas(&got), ["live-ab", "live-b"]);
    assert_eq!((got[0].id.as_str(), got[1].id.as_str()), (&*ab, &*b));
    drop(s);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_while_publishing_has_no_gap_and_no_duplicate() {
    const N: usize = 300;
    let app = spawn(&[]).await;
    // Subscribed before the first publish, so it owes us every event.
    let mut s = app.subscribe("topic=room.a", &[]).await;
    let addr = app.addr;
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(N);
        for i in 0..N {
            ids.push(publish_at(addr, "/hooks/a", i.to_string()).await);
        }
        ids
    });

    let mut got: Vec<SseEvent> = Vec::with_capacity(N);
    let per_connection = [50, 37, 61, 1, 44, 50];
    let mut reconnects = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    'outer: loop {
        let take = per_connection
            .get(reconnects)
            .copied()
            .unwrap_or(usize::MAX);
        for _ in 0..take {
            assert!(
                Instant::now() < deadline,
                "took too long; got {}",
                got.len()
            );
            let e = s.next_event().await;
            let done = e.data == (N - 1).to_string();
            got.push(e);
            if done {
                break 'outer;
            }
        }
        drop(s);
        reconnects += 1;
        let last = got.last().expect("an event").id.clone();
        s = app
            .subscribe("topic=room.a", &[("Last-Event-ID", &last)])
            .await;
    }
    let ids = tokio::time::timeout(PATIENCE, publisher)
        .await
        .expect("publisher done")
        .unwrap();
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(datas(&got), want, "no gap, no duplicate");
    let got_ids: Vec<String> = got.iter().map(|e| e.id.clone()).collect();
    assert_eq!(got_ids, ids);
    assert!(got.windows(2).all(|w| seq(&w[0].id) < seq(&w[1].id)));
    assert!(reconnects >= 5, "{reconnects} reconnects");
    // Nothing after the last one.
    assert_eq!(s.next_event_within(Duration::from_millis(200)).await, None);
    drop(s);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------
// Resync

#[tokio::test]
async fn unknown_id_resyncs_then_continues_live() {
    let app = spawn(&[]).await;
    app.publish("/hooks/a", "before").await;
    let mut s = app
        .subscribe(
            "topic=room.a&topic=room.x.%3E",
            &[("Last-Event-ID", "nonsense-1")],
        )
        .await;
    expect_prelude(&mut s, 3000).await;
    let e = s.next_event().await;
    let (reason, last, topics) = parse_resync(&s, &e);
    assert_eq!(last, "nonsense-1");
    assert_eq!(topics, ["room.a", "room.x.>"]);
    assert!(!reason.is_empty());
    let id = app.publish("/hooks/a", "live").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("live", id.as_str()));
    let id = app.publish("/hooks/x.y", "live-x").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("live-x", id.as_str()));
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn id_from_an_earlier_process_resyncs() {
    let first = spawn(&[]).await;
    let old = first.publish("/hooks/a", "old").await;
    first.shutdown().await;

    let app = spawn(&[]).await;
    // The new process has published as much, so the bare sequence number is "known".
    app.publish("/hooks/a", "new-1").await;
    app.publish("/hooks/a", "new-2").await;
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &old)])
        .await;
    let e = s.next_event().await;
    let (reason, last, topics) = parse_resync(&s, &e);
    assert_eq!(last, old);
    assert_eq!(topics, ["room.a"]);

    let mut n = app
        .subscribe("topic=room.a", &[("Last-Event-ID", "nonsense-1")])
        .await;
    let e = n.next_event().await;
    let (unknown_reason, _, _) = parse_resync(&n, &e);
    assert_eq!(reason, unknown_reason, "an old id is an unknown id");

    let id = app.publish("/hooks/a", "live").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("live", id.as_str()));
    drop((s, n));
    app.shutdown().await;
}

#[tokio::test]
async fn trimmed_history_resyncs_then_continues_live() {
    let app = spawn(&["history: 2"]).await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(app.publish("/hooks/a", &i.to_string()).await);
    }
    let mut n = app
        .subscribe("topic=room.a", &[("Last-Event-ID", "nonsense-1")])
        .await;
    let e = n.next_event().await;
    let (unknown_reason, _, _) = parse_resync(&n, &e);
    drop(n);

    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &ids[0])])
        .await;
    let e = s.next_event().await;
    let (reason, last, topics) = parse_resync(&s, &e);
    assert_eq!(last, ids[0]);
    assert_eq!(topics, ["room.a"]);
    assert_ne!(reason, unknown_reason, "trimmed is not unknown");
    let id = app.publish("/hooks/a", "6").await;
    let e = s.next_event().await;
    assert_eq!(
        (e.data.as_str(), e.id.as_str()),
        ("6", id.as_str()),
        "the resynced topic continues live"
    );

    // Resuming from an id still retained (4 of 4,5,6) is exact.
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &ids[3])])
        .await;
    let got = s.events(2).await;
    assert_eq!(datas(&got), ["5", "6"]);
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn resync_names_only_the_trimmed_topic() {
    let app = spawn(&["history: 2"]).await;
    let a1 = app.publish("/hooks/a", "a1").await;
    let b1 = app.publish("/hooks/b", "b1").await;
    let b2 = app.publish("/hooks/b", "b2").await;
    for i in 2..=5 {
        app.publish("/hooks/a", &format!("a{i}")).await;
    }
    let mut s = app
        .subscribe("topic=room.a&topic=room.b", &[("Last-Event-ID", &a1)])
        .await;
    let e = s.next_event().await;
    let (_, last, topics) = parse_resync(&s, &e);
    assert_eq!(last, a1);
    assert_eq!(topics, ["room.a"]);
    let got = s.events(2).await;
    assert_eq!(datas(&got), ["b1", "b2"], "room.b is replayed exactly");
    assert_eq!((got[0].id.as_str(), got[1].id.as_str()), (&*b1, &*b2));
    let a6 = app.publish("/hooks/a", "a6").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("a6", a6.as_str()));
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn history_bytes_bound_replay() {
    let app = spawn(&["history_bytes: 10"]).await;
    let mut ids = Vec::new();
    for d in ["aaaa", "bbbb", "cccc", "dddd"] {
        ids.push(app.publish("/hooks/a", d).await);
    }
    // 10 bytes hold "cccc" and "dddd" only: resuming after "aaaa" misses "bbbb".
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &ids[0])])
        .await;
    let e = s.next_event().await;
    let (_, last, topics) = parse_resync(&s, &e);
    assert_eq!(
        (last.as_str(), topics),
        (ids[0].as_str(), vec!["room.a".to_owned()])
    );
    let id = app.publish("/hooks/a", "e").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("e", id.as_str()));
    drop(s);

    // Retained now: "cccc", "dddd", "e" (9 bytes). After "bbbb" nothing is missing.
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &ids[1])])
        .await;
    let got = s.events(3).await;
    assert_eq!(datas(&got), ["cccc", "dddd", "e"]);
    assert_eq!(got[0].id, ids[2]);
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn history_bytes_count_data_bytes_also_of_line_breaks() {
    // 100 line breaks are 100 bytes of data (101 `data:` lines on the wire):
    // 250 bytes hold two such events.
    let app = spawn(&["history_bytes: 250"]).await;
    let body = "\n".repeat(100);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(app.publish("/hooks/a", &body).await);
    }
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &ids[3])])
        .await;
    let got = s.events(2).await;
    assert_eq!(
        got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [&ids[4], &ids[5]]
    );
    assert!(
        got.iter().all(|e| e.data == body),
        "the data comes back whole"
    );
    drop(s);
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &ids[2])])
        .await;
    let e = s.next_event().await;
    let (reason, last, _) = parse_resync(&s, &e);
    assert_eq!(
        (reason.as_str(), last.as_str()),
        ("history_trimmed", ids[2].as_str())
    );
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn history_ttl_bounds_replay() {
    let app = spawn(&["history_ttl: 300ms"]).await;
    let first = app.publish("/hooks/a", "1").await;
    let second = app.publish("/hooks/a", "2").await;
    // Retained for now.
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &first)])
        .await;
    assert_eq!(s.next_event().await.data, "2");
    drop(s);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &first)])
        .await;
    let e = s.next_event().await;
    let (_, last, topics) = parse_resync(&s, &e);
    assert_eq!(
        (last.as_str(), topics),
        (first.as_str(), vec!["room.a".to_owned()])
    );
    drop(s);

    // Nothing was published after the second: resuming from it loses nothing.
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &second)])
        .await;
    let id = app.publish("/hooks/a", "3").await;
    let e = s.next_event().await;
    assert_eq!((e.data.as_str(), e.id.as_str()), ("3", id.as_str()));
    drop(s);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------
// Capacity, slow subscribers, stream lifetime

/// Opens a stream and tells whether it was accepted (prelude, stays open) or told to
/// try later (a retry hint in [3000, 6000], then the end).
async fn accepted(app: &TestApp) -> Option<SseStream> {
    let mut s = open_stream(app.addr, "/events?topic=room.a", &[]).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(
        s.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert!(s.headers.get("content-length").is_none());
    let started = Instant::now();
    let first = s.next_item_within(Duration::from_secs(5)).await;
    let Some(Item::Retry(ms)) = first else {
        panic!("a retry hint comes first, got {first:?}")
    };
    match s.next_item_within(Duration::from_secs(1)).await {
        Some(Item::Comment(_)) => Some(s),
        None => {
            assert!(s.ended && !s.aborted, "ended cleanly");
            assert!((3000..=6000).contains(&ms), "try later: retry {ms}");
            assert!(started.elapsed() < Duration::from_secs(2), "ends at once");
            None
        }
        Some(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn max_subscribers_answers_try_later() {
    let app = spawn(&["max_subscribers: 2"]).await;
    let first = accepted(&app).await.expect("first accepted");
    let mut second = accepted(&app).await.expect("second accepted");
    for _ in 0..3 {
        assert!(accepted(&app).await.is_none(), "third told to try later");
    }

    drop(first);
    let mut again = None;
    for _ in 0..50 {
        if let Some(s) = accepted(&app).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = again.expect("a slot frees up when a subscriber leaves");
    let id = app.publish("/hooks/a", "x").await;
    for s in [&mut second, &mut again] {
        let e = s.next_event().await;
        assert_eq!((e.data.as_str(), e.id.as_str()), ("x", id.as_str()));
    }
    drop((second, again));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_subscriber_never_blocks_publishers_or_others() {
    const N: usize = 300;
    const SIZE: usize = 64 * 1024;
    // A queue of 16 frames (1 MiB): the slow one overflows it long before the
    // 300th event (18 MiB), while a reader on a busy machine keeps up.
    let app = spawn(&["subscriber_queue: 16", "history_bytes: 64MiB"]).await;
    let mut slow = never_reading_get(app.addr, "/events?topic=room.a").await;
    let mut reader = app.subscribe("topic=room.a", &[]).await;

    let reading = tokio::spawn(async move {
        let mut got = Vec::with_capacity(N);
        while got.len() < N {
            match reader.next_event_within(Duration::from_secs(20)).await {
                Some(e) => got.push(e),
                None => panic!(
                    "reader stopped after {} events (ended {}, aborted {})",
                    got.len(),
                    reader.ended,
                    reader.aborted
                ),
            }
        }
        (reader, got)
    });

    // A publisher blocked behind the slow subscriber would wait forever: the
    // timeout below detects a hang, not speed (speed lives in the benchmark).
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let mut body = format!("{i:05}:");
        body.extend(std::iter::repeat_n('x', SIZE - body.len()));
        let id = tokio::time::timeout(
            Duration::from_secs(5),
            publish_at(app.addr, "/hooks/a", body),
        )
        .await
        .unwrap_or_else(|_| panic!("webhook #{i} was not answered within 5 s"));
        ids.push(id);
    }

    let (reader, got) = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the reader finishes")
        .unwrap();
    assert!(!reader.aborted);
    for (i, (e, id)) in got.iter().zip(&ids).enumerate() {
        assert_eq!(&e.id, id, "event #{i} in order");
        assert!(e.data.starts_with(&format!("{i:05}:")), "event #{i}");
        assert_eq!(e.data.len(), SIZE);
    }

    // The slow one was disconnected: what it has not read ends in EOF or a reset.
    let raw = read_until_closed(&mut slow, Duration::from_secs(30)).await;
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &raw[..raw.len().min(64)]
    );
    assert!(
        raw.len() < N * SIZE,
        "the slow subscriber was cut, not served everything ({} bytes)",
        raw.len()
    );
    drop(reader);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_subscriber_is_dropped_without_its_cooperation() {
    // A client that stops reading for good (a phone that went out of coverage sends no
    // FIN) must not keep its place: once its queue overflows it is disconnected, so
    // its slot under max_subscribers frees up while it still reads nothing.
    const SIZE: usize = 64 * 1024;
    let app = spawn(&[
        "subscriber_queue: 4",
        "max_subscribers: 2",
        "history_bytes: 64MiB",
    ])
    .await;
    let _slow = never_reading_get(app.addr, "/events?topic=room.a").await;
    let mut reader = app.subscribe("topic=room.a", &[]).await;
    assert!(accepted(&app).await.is_none(), "both slots are taken");
    for i in 0..300 {
        let mut body = format!("{i:05}:");
        body.extend(std::iter::repeat_n('x', SIZE - body.len()));
        publish_at(app.addr, "/hooks/a", body).await;
        assert_eq!(reader.next_event().await.data.len(), SIZE);
    }
    let mut freed = None;
    for _ in 0..50 {
        if let Some(s) = accepted(&app).await {
            freed = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        freed.is_some(),
        "the overflowed subscriber still holds its slot while it reads nothing"
    );
    drop((reader, freed));
    app.shutdown().await;
}

#[tokio::test]
async fn max_stream_duration_ends_with_a_retry_and_replays_on_reconnect() {
    let app = spawn(&["max_stream_duration: 1s", "retry: 1s"]).await;
    let started = Instant::now();
    let mut s = app.subscribe("topic=room.a", &[]).await;
    expect_prelude(&mut s, 1000).await;
    app.publish("/hooks/a", "one").await;
    let one = s.next_event().await;
    assert_eq!(one.data, "one");
    let items = s.until_end().await;
    let lasted = started.elapsed();
    assert!(!s.aborted, "a clean end");
    assert!(
        lasted >= Duration::from_millis(850) && lasted < Duration::from_millis(2500),
        "lasted {lasted:?}"
    );
    match items.last() {
        Some(Item::Retry(ms)) => assert!((1000..=2000).contains(ms), "retry {ms}"),
        other => panic!("the stream ends with a retry hint, got {other:?} in {items:?}"),
    }
    assert!(!items.iter().any(|i| matches!(i, Item::Event(_))));

    let two = app.publish("/hooks/a", "two").await;
    let three = app.publish("/hooks/a", "three").await;
    let mut s = app
        .subscribe("topic=room.a", &[("Last-Event-ID", &one.id)])
        .await;
    let got = s.events(2).await;
    assert_eq!(datas(&got), ["two", "three"]);
    assert_eq!((got[0].id.as_str(), got[1].id.as_str()), (&*two, &*three));
    // This one ends too.
    s.until_end().await;
    assert!(!s.aborted);
    app.shutdown().await;
}

//! Shutdown over real sockets (README, "Operate"): on shutdown, streams get what
//! was accepted, a jittered `retry:` and a clean end; in-flight webhooks finish;
//! new connections are refused; and nothing holds the process past
//! `shutdown_grace`.

mod support;
mod upstream;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A config with `top` at the top level and [`ROUTES`].
fn yaml(top: &str) -> String {
    format!("{top}\n{ROUTES}")
}

/// A webhook whose body is still arriving: the head (with `Expect: 100-continue`) and a
/// first chunk are sent; the server's `100 Continue` proves it is reading the body.
async fn start_chunked_webhook(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\
         Expect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let r = read_response(&mut s, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("100 Continue when the server reads the body: {e}"));
    assert!(r.head.starts_with("HTTP/1.1 100"), "{}", r.head);
    s.write_all(b"6\r\nhello \r\n").await.unwrap();
    s
}

/// Sends the last chunk and returns the answer: (status line, body).
async fn finish_chunked_webhook(s: &mut TcpStream) -> (String, String) {
    s.write_all(b"5\r\nworld\r\n0\r\n\r\n").await.unwrap();
    let r = read_response(s, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("an answer to the in-flight webhook: {e}"));
    (r.status_line().to_owned(), r.text())
}

/// Waits for `run` to return; returns how long that took from `since`.
async fn joined(
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
    since: Instant,
    within: Duration,
) -> Duration {
    tokio::time::timeout(within, handle)
        .await
        .expect("run returns in time")
        .unwrap()
        .unwrap();
    since.elapsed()
}

#[tokio::test]
async fn streams_get_accepted_events_then_a_jittered_retry_and_end() {
    let mut app = TestApp::spawn(&yaml("shutdown_grace: 10s\nsse:\n  retry: 2s")).await;
    let mut a = app.subscribe("topic=room.a", &[]).await;
    let mut b = app.subscribe("topic=room.b&topic=room.a", &[]).await;
    let mut pattern = app.subscribe("topic=room.*", &[]).await;
    let mut idle = app.subscribe("topic=room.quiet", &[]).await;

    let mut published = Vec::new();
    for (path, data) in [
        ("/hooks/a", "a1"),
        ("/hooks/b", "b1"),
        ("/both/a/b", "ab"),
        ("/hooks/a", "a2"),
    ] {
        published.push((publish_at(app.addr, path, data).await, data));
    }
    // Nothing has been read yet: all of it is still on its way when shutdown begins.
    let started = Instant::now();
    let handle = app.begin_shutdown();

    let want = |pred: &dyn Fn(&str) -> bool| -> Vec<(String, String)> {
        published
            .iter()
            .filter(|(_, d)| pred(d))
            .map(|(id, d)| (id.clone(), d.to_string()))
            .collect()
    };
    let cases = [
        (&mut a, want(&|d| d.starts_with('a'))),
        (&mut b, want(&|_| true)),
        (&mut pattern, want(&|_| true)),
        (&mut idle, Vec::new()),
    ];
    let mut hints = Vec::new();
    for (s, expected) in cases {
        let items = s.until_end().await;
        assert!(s.ended && !s.aborted, "a clean end, not a cut");
        let events: Vec<(String, String)> = items
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) => Some((e.id.clone(), e.data.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(events, expected, "every accepted event, in order");
        match items.last() {
            Some(Item::Retry(ms)) => {
                assert!((2000..=4000).contains(ms), "retry {ms} not in [2000, 4000]");
                hints.push(*ms);
            }
            other => panic!("the stream ends with a retry hint, got {other:?} in {items:?}"),
        }
        // The hint comes after the events.
        let last_event = items.iter().rposition(|i| matches!(i, Item::Event(_)));
        let last_retry = items.iter().rposition(|i| matches!(i, Item::Retry(_)));
        assert!(last_event < last_retry);
    }
    let took = joined(handle, started, Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_secs(3),
        "run took {took:?} of a 10 s grace"
    );
    assert_eq!(hints.len(), 4);
    assert!(
        hints.iter().any(|h| *h != hints[0]),
        "reconnect hints are jittered, not all {}",
        hints[0]
    );
}

#[tokio::test]
async fn in_flight_webhook_finishes() {
    let mut app = TestApp::spawn(&yaml("shutdown_grace: 10s")).await;
    let mut watcher = app.subscribe("topic=room.w", &[]).await;
    let mut hook = start_chunked_webhook(app.addr, "/hooks/a").await;

    let started = Instant::now();
    let handle = app.begin_shutdown();
    // The stream ending shows that shutdown is under way.
    watcher.until_end().await;
    assert!(!watcher.aborted);
    assert!(!handle.is_finished(), "the webhook holds the drain");

    let (status, body) = finish_chunked_webhook(&mut hook).await;
    assert!(status.starts_with("HTTP/1.1 202"), "{status}: {body}");
    let j: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(j["id"].as_str().is_some_and(|id| !id.is_empty()), "{j}");
    assert_eq!(j["topics"], serde_json::json!(["room.a"]));

    let took = joined(handle, started, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(5), "run took {took:?}");
}

#[tokio::test]
async fn new_connections_are_refused_after_shutdown_began() {
    let mut app = TestApp::spawn(&yaml("shutdown_grace: 10s")).await;
    let addr = app.addr;
    let mut watcher = app.subscribe("topic=room.w", &[]).await;
    // Keeps the server draining (not yet returned) while we knock.
    let mut hook = start_chunked_webhook(addr, "/hooks/a").await;

    let handle = app.begin_shutdown();
    watcher.until_end().await;
    assert!(!handle.is_finished(), "still draining");

    let requests = [
        format!("POST /hooks/a HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1\r\n\r\nx"),
        format!("GET /events?topic=room.a HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    ];
    for req in &requests {
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await
        else {
            continue; // refused (or never accepted): fine
        };
        // Accepted by the kernel: it must be closed without an answer.
        let _ = s.write_all(req.as_bytes()).await;
        if let Ok(r) = read_response(&mut s, Duration::from_secs(3)).await {
            panic!(
                "a connection made after shutdown began was answered: {}\n{}",
                r.head,
                r.text()
            );
        }
    }
    assert!(!handle.is_finished(), "still draining");

    let (status, _) = finish_chunked_webhook(&mut hook).await;
    assert!(status.starts_with("HTTP/1.1 202"), "{status}");
    joined(handle, Instant::now(), Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_does_not_hold_shutdown() {
    const SIZE: usize = 64 * 1024;
    let mut app = TestApp::spawn(&yaml(
        "shutdown_grace: 1s\nsse:\n  retry: 1s\n  subscriber_queue_bytes: 64MiB",
    ))
    .await;
    let addr = app.addr;

    // This one sends its request and never reads a byte.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr).await.unwrap();
    let req = format!("GET /events?topic=room.a HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stuck.write_all(req.as_bytes()).await.unwrap();
    // This one reads.
    let mut reader = app.subscribe("topic=room.a", &[]).await;

    // Far more than socket buffers hold, but within the subscriber queue (1024
    // events, 64 MiB).
    for i in 0..250 {
        let mut body = format!("{i:05}:");
        body.extend(std::iter::repeat_n('x', SIZE - body.len()));
        publish_at(addr, "/hooks/a", body).await;
        assert_eq!(reader.next_event().await.data.len(), SIZE);
    }

    let started = Instant::now();
    let handle = app.begin_shutdown();
    let items = reader.until_end().await;
    assert!(!reader.aborted);
    assert!(matches!(items.last(), Some(Item::Retry(ms)) if (1000..=2000).contains(ms)));
    let took = joined(handle, started, Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_secs(3),
        "run took {took:?} with shutdown_grace 1s"
    );
    // The stuck client did hold its stream until the grace ran out.
    assert!(took >= Duration::from_millis(900), "run took only {took:?}");
    drop(stuck);
}

#[tokio::test]
async fn readyz_turns_503_first_and_stays_so_while_draining() {
    let app = AdminApp::spawn(&yaml("shutdown_grace: 10s")).await;
    assert_eq!(app.admin_get("/readyz").await.status, StatusCode::OK);
    let mut watcher = app.app.subscribe("topic=room.w", &[]).await;
    // An in-flight webhook keeps the drain going while /readyz is asked.
    let mut hook = start_chunked_webhook(app.app.addr, "/hooks/a").await;
    let AdminApp { mut app, admin, .. } = app;
    let started = Instant::now();
    let handle = app.begin_shutdown();
    watcher.until_end().await;

    let r = request(admin, Method::GET, "/readyz", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "draining\n");
    // Liveness is not readiness: the process is still healthy.
    let r = request(admin, Method::GET, "/healthz", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    // The stream's end is counted as a shutdown drop.
    let m = request(admin, Method::GET, "/metrics", &[], Bytes::new()).await;
    assert!(
        m.text()
            .contains("hookcast_subscribers_dropped_total{reason=\"shutdown\"} 1"),
        "{}",
        m.text()
    );

    let (status, _) = finish_chunked_webhook(&mut hook).await;
    assert!(status.starts_with("HTTP/1.1 202"), "{status}");
    joined(handle, started, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn in_flight_proxied_request_finishes() {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = std::sync::Arc::new(tokio::sync::Mutex::new(Some(released)));
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::channel::<()>(1);
    let up = upstream::Upstream::serve(move |_req: http::Request<hyper::body::Incoming>| {
        let released = released.clone();
        let arrived_tx = arrived_tx.clone();
        async move {
            let _ = arrived_tx.send(()).await;
            if let Some(rx) = released.lock().await.take() {
                let _ = rx.await;
            }
            http::Response::new(upstream::full("from the app"))
        }
    })
    .await;
    let yaml = upstream::config(up.addr, "shutdown_grace: 10s\n");
    let mut app = TestApp::spawn(&yaml).await;
    let addr = app.addr;
    let pending =
        tokio::spawn(async move { request(addr, Method::GET, "/page", &[], Bytes::new()).await });
    arrived
        .recv()
        .await
        .expect("the request reached the upstream");

    let started = Instant::now();
    let handle = app.begin_shutdown();
    // New connections are refused while the proxied request is still in flight.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!handle.is_finished(), "the proxied request holds the drain");
    release.send(()).unwrap();
    let r = pending.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "from the app");
    joined(handle, started, Duration::from_secs(10)).await;
}

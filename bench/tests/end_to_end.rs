//! End to end against a tiny in-test SSE + webhook server: the library entry point, the binary with child processes, and the loopback refusal. No timing assertions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type Topics = Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Vec<u8>>>>>>;

/// Starts the server on its own thread and runtime; returns its address.
fn start_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let topics = Topics::default();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(stream, topics.clone()));
            }
        });
    });
    rx.recv().unwrap()
}

/// One connection: `GET /events?topic=T` streams chunked SSE; `POST /hooks/T` publishes its body to T.
async fn serve(mut s: TcpStream, topics: Topics) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
        if let Some(topic) = target.strip_prefix("/events?topic=") {
            let (tx, mut rx) = mpsc::unbounded_channel();
            topics
                .lock()
                .unwrap()
                .entry(topic.to_owned())
                .or_default()
                .push(tx);
            let prelude = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n: hello\n\r\n";
            if s.write_all(prelude).await.is_err() {
                return;
            }
            let mut n = 0;
            while let Some(data) = rx.recv().await {
                n += 1;
                // Vary the line ends and split events over chunks, as real servers may.
                let event = if n % 2 == 0 {
                    format!(
                        "id: {n}\r\ndata: {}\r\n\r\n",
                        String::from_utf8_lossy(&data)
                    )
                } else {
                    format!("id: {n}\ndata: {}\n\n", String::from_utf8_lossy(&data))
                };
                let (a, b) = event.split_at(event.len() / 2);
                let chunks = format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n", a.len(), b.len());
                if s.write_all(chunks.as_bytes()).await.is_err() {
                    return;
                }
            }
            return;
        }
        let topic = target
            .strip_prefix("/hooks/")
            .unwrap_or_default()
            .to_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < len {
            if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        if let Some(subs) = topics.lock().unwrap().get(&topic) {
            for sub in subs {
                let _ = sub.send(body.clone());
            }
        }
        if s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn ten_subscribers_twenty_events_all_delivered() {
    let addr = start_server();
    let cfg = hookcast_load::Config {
        sub_url: Some(format!("http://{addr}/events?topic={{topic}}")),
        pub_url: Some(format!("http://{addr}/hooks/{{topic}}")),
        subscribers: 10,
        topics: 3,
        events: 20,
        pub_concurrency: 2,
        server_pids: vec![std::process::id()],
        settle: std::time::Duration::from_millis(100),
        drain: std::time::Duration::from_secs(30),
        quiet: true,
        ..hookcast_load::Config::default()
    };
    let s = hookcast_load::run(&cfg).expect("run");
    assert_eq!(s.subscribers.connected, 10);
    assert_eq!(s.subscribers.failed, 0);
    assert_eq!(s.webhooks.accepted, 20);
    assert!(s.webhooks.errors.is_empty(), "{:?}", s.webhooks.errors);
    // Topics 0,1,2 get 7,7,6 events and have 4,3,3 subscribers: 28+21+18 deliveries.
    assert_eq!(s.deliveries.expected, 67);
    assert_eq!(s.deliveries.count, 67);
    assert_eq!(s.deliveries.lost, 0);
    assert_eq!(s.deliveries.reordered, 0);
    assert_eq!(s.deliveries.duplicates, 0);
    assert_eq!(s.deliveries.unparsed, 0);
    assert_eq!(s.deliveries.comments, 10);
    assert_eq!(s.latency_us.expect("latency").count, 67);
    assert!(s.server.is_some());
}

#[test]
fn one_topic_two_hundred_deliveries() {
    let addr = start_server();
    let cfg = hookcast_load::Config {
        sub_url: Some(format!("http://{addr}/events?topic={{topic}}")),
        pub_url: Some(format!("http://{addr}/hooks/{{topic}}")),
        subscribers: 10,
        events: 20,
        rate: hookcast_load::args::Rate::PerSecond(200.0),
        settle: std::time::Duration::from_millis(100),
        drain: std::time::Duration::from_secs(30),
        quiet: true,
        ..hookcast_load::Config::default()
    };
    let s = hookcast_load::run(&cfg).expect("run");
    assert_eq!(s.deliveries.count, 200);
    assert_eq!(s.deliveries.lost, 0);
    assert_eq!(s.deliveries.reordered, 0);
    assert_eq!(s.webhooks.accepted, 20);
}

#[test]
fn binary_splits_subscribers_over_child_processes() {
    let addr = start_server();
    let out = Command::new(env!("CARGO_BIN_EXE_hookcast-load"))
        .args([
            "--sub-url",
            &format!("http://{addr}/events?topic={{topic}}"),
            "--pub-url",
            &format!("http://{addr}/hooks/{{topic}}"),
            "--subscribers",
            "10",
            "--procs",
            "2",
            "--topics",
            "2",
            "--events",
            "20",
            "--settle",
            "100ms",
            "--drain",
            "2s",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["subscribers"]["connected"], 10);
    assert_eq!(v["deliveries"]["expected"], 100);
    assert_eq!(v["deliveries"]["lost"], 0);
    assert_eq!(v["deliveries"]["reordered"], 0);
    assert_eq!(v["deliveries"]["count"], 100);
    assert_eq!(v["load_tool"]["processes"], 3);
}

#[test]
fn refuses_non_loopback_targets_with_exit_2() {
    for url in [
        "http://10.0.0.1:8080/events?topic={topic}",
        "http://example.com/e",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hookcast-load"))
            .args(["--sub-url", url, "--subscribers", "1", "--quiet"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}");
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    }
}

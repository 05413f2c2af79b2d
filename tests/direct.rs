//! Delivery by the fan-out itself (README, "Architecture"): a stream whose
//! writer waits idle is written to by the publish that queued its event, and
//! hands back to its own task whatever it cannot finish (a full socket). Over
//! real sockets: each subscriber still gets every event once, in id order,
//! whichever of the two writes it, and however they interleave.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn yaml(sse: &[&str]) -> String {
    let mut s = String::from("sse:\n  retry: 3s\n");
    for line in sse {
        s += &format!("  {line}\n");
    }
    s + ROUTES
}

/// The sequence number at the end of a hookcast id (`<epoch>-<seq>`).
fn seq(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("not a hookcast id: {id:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_keep_each_subscribers_order() {
    const SUBSCRIBERS: usize = 24;
    const PUBLISHERS: usize = 4;
    const EACH: usize = 60;
    // Short heartbeats poll the stream's task now and then between direct writes.
    let app = TestApp::spawn(&yaml(&["heartbeat: 200ms"])).await;
    let mut readers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut s = app.subscribe("topic=room.a", &[]).await;
        // Wait for the prelude: the stream is open and subscribed.
        s.next_item_within(Duration::from_secs(10))
            .await
            .expect("a prelude");
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < PUBLISHERS * EACH {
                // Some read in bursts, so their writes go to the task or
                // carry several events.
                if i % 3 == 0 && got.len() % 25 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                match s.next_event_within(Duration::from_secs(30)).await {
                    Some(e) => got.push(e.id),
                    None => panic!("subscriber {i} stopped after {} events", got.len()),
                }
            }
            got
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let addr = app.addr;
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..EACH {
                ids.push(publish_at(addr, "/hooks/a", format!("{p}:{n}")).await);
            }
            ids
        }));
    }
    let mut published = BTreeSet::new();
    for p in publishers {
        published.extend(p.await.unwrap());
    }
    for (i, r) in readers.into_iter().enumerate() {
        let got = r.await.unwrap();
        let seqs: Vec<u64> = got.iter().map(|id| seq(id)).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "subscriber {i} took its events out of order or twice: {seqs:?}"
        );
        let got: BTreeSet<String> = got.into_iter().collect();
        assert_eq!(got, published, "subscriber {i} got every event");
    }
    app.shutdown().await;
}

/// A raw HTTP/1.1 stream request on a socket with a small receive buffer, so
/// that the server's writes soon find the socket full.
async fn small_window_get(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// Reads a chunked event stream's body and parses it into events.
struct RawStream {
    socket: TcpStream,
    /// Bytes read and not yet de-chunked.
    wire: Vec<u8>,
    head_done: bool,
    parser: Parser,
    items: std::collections::VecDeque<Item>,
}

impl RawStream {
    fn new(socket: TcpStream) -> Self {
        RawStream {
            socket,
            wire: Vec::new(),
            head_done: false,
            parser: Parser::new(),
            items: Default::default(),
        }
    }

    /// Moves whole chunks from `wire` to the parser.
    fn dechunk(&mut self) {
        if !self.head_done {
            let Some(end) = self.wire.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head = String::from_utf8_lossy(&self.wire[..end]).to_string();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            self.wire.drain(..end + 4);
            self.head_done = true;
        }
        loop {
            let Some(eol) = self.wire.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.wire[..eol]).unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            if self.wire.len() < eol + 2 + size + 2 {
                return;
            }
            let data = self.wire[eol + 2..eol + 2 + size].to_vec();
            assert_eq!(&self.wire[eol + 2 + size..eol + 4 + size], b"\r\n");
            self.wire.drain(..eol + 4 + size);
            self.items.extend(self.parser.feed(&data));
        }
    }

    async fn next_event(&mut self) -> SseEvent {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(item) = self.items.pop_front() {
                if let Item::Event(e) = item {
                    return e;
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(30), self.socket.read(&mut buf))
                .await
                .expect("more of the stream in time")
                .unwrap();
            assert!(n > 0, "the stream ended");
            self.wire.extend_from_slice(&buf[..n]);
            self.dechunk();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_socket_hands_over_to_the_task_in_order() {
    const N: usize = 120;
    const SIZE: usize = 32 * 1024;
    // Room for every event in the queue: a client that pauses is not cut here.
    let app = TestApp::spawn(&yaml(&[
        "heartbeat: 15s",
        "subscriber_queue: 1000",
        "subscriber_queue_bytes: 64MiB",
        "history_bytes: 64MiB",
    ]))
    .await;
    let mut paused = RawStream::new(small_window_get(app.addr, "/events?topic=room.a").await);
    // A second subscriber that keeps up, beside it.
    let mut reader = app.subscribe("topic=room.a", &[]).await;
    reader.next_item_within(Duration::from_secs(10)).await;
    // The paused one is subscribed once its prelude arrives; then it stops reading.
    let mut buf = vec![0u8; 4096];
    while !paused.wire.windows(12).any(|w| w == b": hookcast\n\n") {
        let n = paused.socket.read(&mut buf).await.unwrap();
        assert!(n > 0);
        paused.wire.extend_from_slice(&buf[..n]);
    }
    paused.dechunk();

    // 4 MB to a client that reads nothing: far more than the socket holds.
    let mut ids = Vec::new();
    for i in 0..N {
        let mut body = format!("{i:05}:");
        body.extend(std::iter::repeat_n('x', SIZE - body.len()));
        ids.push(publish_at(app.addr, "/hooks/a", body).await);
        assert_eq!(reader.next_event().await.id, ids[i]);
    }
    for (i, id) in ids.iter().enumerate() {
        let e = paused.next_event().await;
        assert_eq!(&e.id, id, "event #{i} in order");
        assert!(e.data.starts_with(&format!("{i:05}:")), "event #{i}");
        assert_eq!(e.data.len(), SIZE);
    }
    // Caught up: the next events come as before.
    for i in 0..5 {
        let id = publish_at(app.addr, "/hooks/a", format!("after {i}")).await;
        let e = paused.next_event().await;
        assert_eq!(
            (e.id.as_str(), e.data.as_str()),
            (id.as_str(), &*format!("after {i}"))
        );
        assert_eq!(reader.next_event().await.id, id);
    }
    drop(reader);
    app.shutdown().await;
}

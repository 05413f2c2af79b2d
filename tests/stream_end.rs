//! One stream lifecycle for every way a client reaches a stream: HTTP/1.1 on a
//! fresh connection (served straight on the socket), HTTP/1.1 after another
//! request on the same connection and h2c (both served by hyper). Each end
//! reason is run over all three and must be counted the same, with its label in
//! `hookcast_subscribers_dropped_total`; a client that leaves is released at
//! once (the subscriber gauge and its address's slot); a stream request that
//! declares a body is refused; the first request head gets one
//! `header_read_timeout`, however many reads it spans.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use support::{AdminApp, PATIENCE, SecretFile, config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// The ways a stream is reached.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// HTTP/1.1, the stream request first on its connection: the fast path.
    Fresh,
    /// HTTP/1.1 after a 404 on the same connection: hyper.
    After,
    /// HTTP/2 with prior knowledge: hyper.
    H2c,
}

const TRANSPORTS: [Transport; 3] = [Transport::Fresh, Transport::After, Transport::H2c];

const REASONS: [&str; 4] = ["slow", "auth_expired", "max_duration", "shutdown"];

/// An open (or refused) stream on one transport.
enum Client {
    H1 {
        s: TcpStream,
        /// What was read after the response head.
        rest: Vec<u8>,
    },
    H2 {
        body: Incoming,
        rest: Vec<u8>,
        _sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
        conn: JoinHandle<()>,
    },
}

/// A TCP connection whose receive buffer is small, so a client that stops
/// reading soon leaves hookcast unable to write.
async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until `buf` holds a whole response head; returns its length.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return i + 4;
        }
        let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk))
            .await
            .expect("a response head in time")
            .unwrap();
        assert!(n > 0, "closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn content_length(head: &str) -> usize {
    head.to_ascii_lowercase()
        .lines()
        .find_map(|l| Some(l.strip_prefix("content-length: ")?.trim().parse().unwrap()))
        .unwrap_or(0)
}

impl Client {
    /// Sends `GET target` (with `body`, if not empty) over `t`; returns the
    /// status and the client, the response head read.
    async fn get(
        addr: std::net::SocketAddr,
        t: Transport,
        target: &str,
        body: &str,
    ) -> (StatusCode, Client) {
        let framing = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{framing}\r\n{body}");
        match t {
            Transport::Fresh | Transport::After => {
                let mut s = connect(addr).await;
                let mut buf = Vec::new();
                if let Transport::After = t {
                    s.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
                        .await
                        .unwrap();
                    let n = read_head(&mut s, &mut buf).await;
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
                    let len = content_length(&head);
                    while buf.len() < n + len {
                        let mut chunk = [0u8; 4096];
                        let got = s.read(&mut chunk).await.unwrap();
                        assert!(got > 0, "closed after the first answer");
                        buf.extend_from_slice(&chunk[..got]);
                    }
                    buf.drain(..n + len);
                }
                s.write_all(request.as_bytes()).await.unwrap();
                let n = read_head(&mut s, &mut buf).await;
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = head[9..12].parse::<u16>().unwrap();
                let rest = buf.split_off(n);
                (
                    StatusCode::from_u16(status).unwrap(),
                    Client::H1 { s, rest },
                )
            }
            Transport::H2c => {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                        .await
                        .unwrap();
                let conn = tokio::spawn(async move {
                    let _ = conn.await;
                });
                let req = Request::get(format!("http://{addr}{target}"))
                    .body(Full::new(Bytes::from(body.to_owned())))
                    .unwrap();
                let resp = tokio::time::timeout(PATIENCE, sender.send_request(req))
                    .await
                    .expect("an answer in time")
                    .unwrap();
                let status = resp.status();
                let client = Client::H2 {
                    body: resp.into_body(),
                    rest: Vec::new(),
                    _sender: sender,
                    conn,
                };
                (status, client)
            }
        }
    }

    /// Reads more of the body; `false` once it ended (cleanly or not).
    async fn read_more(&mut self) -> bool {
        match self {
            Client::H1 { s, rest } => {
                let mut chunk = [0u8; 16 * 1024];
                match tokio::time::timeout(PATIENCE, s.read(&mut chunk))
                    .await
                    .expect("the stream went on or ended in time")
                {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        rest.extend_from_slice(&chunk[..n]);
                        // Under hyper the connection stays open after the last chunk.
                        !rest.ends_with(b"\r\n0\r\n\r\n")
                    }
                }
            }
            Client::H2 { body, rest, .. } => {
                match tokio::time::timeout(PATIENCE, body.frame())
                    .await
                    .expect("the stream went on or ended in time")
                {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            rest.extend_from_slice(data);
                        }
                        true
                    }
                    Some(Err(_)) | None => false,
                }
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Client::H1 { rest, .. } | Client::H2 { rest, .. } => {
                String::from_utf8_lossy(rest).into_owned()
            }
        }
    }

    /// Reads until the body holds `needle`.
    async fn read_until(&mut self, needle: &str) {
        while !self.text().contains(needle) {
            assert!(
                self.read_more().await,
                "ended before {needle:?}: {:?}",
                self.text()
            );
        }
    }

    /// Reads until the stream ends; what it carried.
    async fn read_to_end(&mut self) -> String {
        while self.read_more().await {}
        self.text()
    }

    /// After a stream ended cleanly over HTTP/1.1: sends another request on the
    /// same connection, as its `Connection: keep-alive` allows; the answer's head.
    async fn again(&mut self) -> String {
        let Client::H1 { s, .. } = self else {
            panic!("HTTP/1.1 only")
        };
        s.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let n = read_head(s, &mut buf).await;
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Closes the connection, as a client that leaves does.
    fn close(self) {
        match self {
            Client::H1 { s, .. } => drop(s),
            Client::H2 { body, conn, .. } => {
                drop(body);
                conn.abort();
            }
        }
    }
}

async fn metric(app: &AdminApp, name: &str) -> f64 {
    let text = app.admin_get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn dropped(reason: &str) -> String {
    format!("hookcast_subscribers_dropped_total{{reason=\"{reason}\"}}")
}

/// Waits until `name` reads `want`; panics after [`PATIENCE`].
async fn await_metric(app: &AdminApp, name: &str, want: f64, what: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = metric(app, name).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {name} is {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The test config with `sse` settings added, and `extra` at the top level.
fn yaml(sse: &str, extra: &str) -> String {
    config(extra).replacen("sse:\n", &format!("sse:\n{sse}"), 1)
}

fn token(secret: &str, exp_in: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let claims = json!({ "sub": "u1", "exp": now.as_secs() + exp_in, "hookcast": { "subscribe": ["room.a"] } });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Ends one stream for `reason` over `t` and checks what was counted.
async fn end_for(reason: &str, t: Transport) {
    let what = format!("{reason} over {t:?}");
    let secret = SecretFile::new("jwt-secret");
    let (sse, extra, target) = match reason {
        "slow" => (
            "  subscriber_queue: 2\n",
            String::new(),
            "/events?topic=room.a".to_owned(),
        ),
        "auth_expired" => (
            "",
            format!(
                "subscribers:\n  auth: jwt\n  jwt:\n    secret_file: {}\n",
                secret.path()
            ),
            format!(
                "/events?topic=room.a&access_token={}",
                token("jwt-secret", 2)
            ),
        ),
        "max_duration" => (
            "  max_stream_duration: 1s\n",
            String::new(),
            "/events?topic=room.a".to_owned(),
        ),
        "shutdown" => (
            "",
            "shutdown_grace: 30s\n".to_owned(),
            "/events?topic=room.a".to_owned(),
        ),
        _ => unreachable!(),
    };
    let mut app = AdminApp::spawn(&yaml(sse, &extra)).await;
    let (status, mut client) = Client::get(app.app.addr, t, &target, "").await;
    assert_eq!(status, StatusCode::OK, "{what}");
    client.read_until(": hookcast\n\n").await;
    await_metric(&app, "hookcast_subscribers", 1.0, &what).await;

    match reason {
        "slow" => {
            // The client reads no more; events pile up until the hub cuts it.
            let event = "x".repeat(512 * 1024);
            for _ in 0..64 {
                app.app.publish("/hooks/a", &event).await;
                if metric(&app, &dropped("slow")).await > 0.0 {
                    break;
                }
            }
        }
        "shutdown" => {
            // Keeps the drain open, so the admin listener still answers after
            // shutdown began: a webhook whose body is still coming.
            let mut s = TcpStream::connect(app.app.addr).await.unwrap();
            s.write_all(b"POST /hooks/a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
                .await
                .unwrap();
            // The webhook is in hyper's hands before shutdown begins.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let stopped = app.app.begin_shutdown();
            let text = client.read_to_end().await;
            assert!(text.contains("retry: "), "{what}: {text:?}");
            await_metric(&app, &dropped(reason), 1.0, &what).await;
            await_metric(&app, "hookcast_subscribers", 0.0, &what).await;
            drop(s);
            stopped.await.unwrap().unwrap();
            return;
        }
        _ => {
            // Ended by hookcast with a reconnect hint.
            let text = client.read_to_end().await;
            let tail = text.rsplit(": hookcast\n\n").next().unwrap();
            assert!(tail.contains("retry: "), "{what}: {text:?}");
            if !matches!(t, Transport::H2c) {
                // A clean end: the connection stays open for the next request.
                let head = client.again().await;
                assert!(head.starts_with("HTTP/1.1 404"), "{what}: {head}");
            }
        }
    }
    await_metric(&app, &dropped(reason), 1.0, &what).await;
    await_metric(&app, "hookcast_subscribers", 0.0, &what).await;
    for other in REASONS.iter().filter(|r| **r != reason) {
        assert_eq!(metric(&app, &dropped(other)).await, 0.0, "{what}: {other}");
    }
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_end_reason_is_counted_the_same_on_every_transport() {
    for reason in REASONS {
        for t in TRANSPORTS {
            end_for(reason, t).await;
        }
    }
}

/// A client that leaves: before any heartbeat its subscriber is gone from the gauge,
/// its address's slot and its connection's place are free again; nothing is
/// counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_is_released_at_once_on_every_transport() {
    // Two connections: the stream and the refused one beside it; the next
    // stream needs both places free again.
    let app = AdminApp::spawn(&yaml(
        "",
        "limits:\n  max_subscribers_per_ip: 1\n  max_connections: 2\n",
    ))
    .await;
    for t in TRANSPORTS {
        let (status, mut client) = Client::get(app.app.addr, t, "/events?topic=room.a", "").await;
        assert_eq!(status, StatusCode::OK, "{t:?}");
        client.read_until(": hookcast\n\n").await;
        await_metric(&app, "hookcast_subscribers", 1.0, &format!("{t:?}")).await;
        let (refused, _) = Client::get(app.app.addr, t, "/events?topic=room.a", "").await;
        assert_eq!(refused, StatusCode::TOO_MANY_REQUESTS, "{t:?}: slot held");

        // Released without waiting for a heartbeat: the test config's 15 s
        // heartbeat is longer than the patience of `await_metric`.
        client.close();
        await_metric(&app, "hookcast_subscribers", 0.0, &format!("{t:?}")).await;
        let (status, again) = Client::get(app.app.addr, t, "/events?topic=room.a", "").await;
        assert_eq!(status, StatusCode::OK, "{t:?}: the address's slot is free");
        again.close();
        await_metric(&app, "hookcast_subscribers", 0.0, &format!("{t:?}")).await;
    }
    for reason in REASONS {
        assert_eq!(metric(&app, &dropped(reason)).await, 0.0, "{reason}");
    }
}

/// A stream request that declares a body is refused on every transport, and
/// holds nothing.
#[tokio::test]
async fn a_stream_request_with_a_body_is_refused() {
    let app = AdminApp::spawn(&yaml("", "limits:\n  max_subscribers_per_ip: 1\n")).await;
    for t in TRANSPORTS {
        let (status, mut client) =
            Client::get(app.app.addr, t, "/events?topic=room.a", "hello").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{t:?}");
        client.read_until("\"body_not_allowed\"").await;
        assert_eq!(metric(&app, "hookcast_subscribers").await, 0.0, "{t:?}");
        client.close();
    }
    // Nothing was held: a plain stream opens.
    let (status, client) =
        Client::get(app.app.addr, Transport::Fresh, "/events?topic=room.a", "").await;
    assert_eq!(status, StatusCode::OK);
    client.close();
}

/// Sends a head in three parts, waiting `pause` before the second and the
/// third; what comes back before the connection closes.
async fn slow_head(app: &AdminApp, parts: [&[u8]; 3], pause: Duration) -> String {
    let mut s = TcpStream::connect(app.app.addr).await.unwrap();
    s.write_all(parts[0]).await.unwrap();
    for part in &parts[1..] {
        tokio::time::sleep(pause).await;
        // The server may have closed already.
        let _ = s.write_all(part).await;
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    // Up to the end of the response head, or the close.
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(PATIENCE, s.read(&mut chunk))
            .await
            .expect("an answer or the close in time")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A head that comes in several reads, the last after `header_read_timeout`
/// has passed since the connection opened, is not served, also when the fast
/// path reads its start and hyper the rest: the reads before hyper takes the
/// head over count against the same timeout. Within the timeout, it is served.
#[tokio::test]
async fn a_slow_head_gets_one_header_read_timeout() {
    let app = AdminApp::spawn(&config("limits:\n  header_read_timeout: 1s\n")).await;
    let pad = format!("X-Pad: {}\r\n", "p".repeat(9000));
    let heads: [([&[u8]; 3], &str); 2] = [
        // Not a stream: known to be hyper's once its path is in.
        (
            [b"GET /noth", b"ing-here HTTP/1.1\r\nHost: x\r\n", b"\r\n"],
            "HTTP/1.1 404",
        ),
        // A stream request whose head outgrows what the fast path parses.
        (
            [
                b"GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\n",
                pad.as_bytes(),
                b"\r\n",
            ],
            "HTTP/1.1 200",
        ),
    ];
    for (parts, served) in heads {
        let head = String::from_utf8_lossy(parts[0]).into_owned();
        // 2 x 700 ms: longer than the timeout, though each pause is shorter.
        let late = slow_head(&app, parts, Duration::from_millis(700)).await;
        assert_eq!(late, "", "{head:?}: answered after 1.4 s");
        let in_time = slow_head(&app, parts, Duration::from_millis(50)).await;
        assert!(in_time.starts_with(served), "{head:?}: {in_time:?}");
    }
}

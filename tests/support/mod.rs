//! Test support: a real hookcast on 127.0.0.1:0, a small HTTP client over real
//! sockets, an event-stream reader built on a spec-following parser, the
//! standard routes and temporary files. Raw sockets are in `net`, config errors
//! in `checks`, signatures and tokens in `sign`, broker servers in `broker`.
// Each test binary uses a part of this module.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod broker;
pub mod checks;
pub mod net;
pub mod sign;
pub mod sse_parser;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use checks::config_error;
pub use net::{
    Closed, RawResponse, free_addr, free_port, read_response, read_to_close, wait_listening,
};
pub use sign::{github_signature, hs256, unix_now};
pub use sse_parser::{Item, Parser, SseEvent};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A hookcast running in this process on an ephemeral port.
pub struct TestApp {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Starts hookcast with this YAML (its `listen` is ignored).
    pub async fn spawn(yaml: &str) -> TestApp {
        let config =
            hookcast::config::from_yaml("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(hookcast::run(listener, config, async move {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        request(self.addr, Method::POST, path, headers, body.into()).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.addr, Method::GET, path, headers, Bytes::new()).await
    }

    /// Publishes `body` on `path` and returns the event id; panics unless 202.
    pub async fn publish(&self, path: &str, body: &str) -> String {
        publish_at(self.addr, path, body.to_owned()).await
    }

    /// Opens an event stream; panics unless 200.
    pub async fn subscribe(&self, query: &str, headers: &[(&str, &str)]) -> SseStream {
        let s = open_stream(self.addr, &format!("/events?{query}"), headers).await;
        assert_eq!(s.status, StatusCode::OK);
        s
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("run returns")
            .unwrap()
            .unwrap();
        started.elapsed()
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts a JSON error with this status and code and a sentence of a message.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        let j = self.json();
        assert_eq!(j["error"], code, "{j}");
        let msg = j["message"].as_str().expect("message");
        assert!(msg.len() > 10, "message is a sentence: {msg}");
        assert_eq!(self.headers["content-type"], "application/json");
    }
}

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

fn build(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(body)).unwrap()
}

/// One request on a new connection.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let mut sender = connect(addr).await;
    let resp = tokio::time::timeout(
        PATIENCE,
        sender.send_request(build(addr, method, path, headers, body)),
    )
    .await
    .expect("response in time")
    .unwrap();
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("body in time")
        .unwrap()
        .to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// An open event stream, read incrementally.
pub struct SseStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    parser: Parser,
    items: VecDeque<Item>,
    /// Every byte received, for wire-level assertions.
    pub raw: Vec<u8>,
    pub ended: bool,
    /// The body ended with an error (the connection was cut), not a clean end.
    pub aborted: bool,
}

pub async fn open_stream(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseStream {
    let mut sender = connect(addr).await;
    let resp = tokio::time::timeout(
        PATIENCE,
        sender.send_request(build(addr, Method::GET, path, headers, Bytes::new())),
    )
    .await
    .expect("response headers in time")
    .unwrap();
    let (parts, body) = resp.into_parts();
    SseStream {
        status: parts.status,
        headers: parts.headers,
        body,
        parser: Parser::new(),
        items: VecDeque::new(),
        raw: Vec::new(),
        ended: false,
        aborted: false,
    }
}

impl SseStream {
    /// Reads one more chunk; false once the stream has ended.
    async fn fill(&mut self, within: Duration) -> Option<bool> {
        if self.ended {
            return Some(false);
        }
        loop {
            match tokio::time::timeout(within, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) => {
                    self.ended = true;
                    return Some(false);
                }
                Ok(Some(Err(_))) => {
                    self.ended = true;
                    self.aborted = true;
                    return Some(false);
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.raw.extend_from_slice(&data);
                        let items = self.parser.feed(&data);
                        self.items.extend(items);
                        return Some(true);
                    }
                }
            }
        }
    }

    /// The next item (event, comment or retry) within `within`; None on timeout or end.
    pub async fn next_item_within(&mut self, within: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(item) = self.items.pop_front() {
                return Some(item);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.fill(left).await {
                Some(true) => {}
                _ => return None,
            }
        }
    }

    /// The next event, skipping comments and retry hints; None on timeout or end.
    pub async fn next_event_within(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item_within(left).await? {
                Item::Event(e) => return Some(e),
                _ => continue,
            }
        }
    }

    /// The next event; panics if none comes soon.
    pub async fn next_event(&mut self) -> SseEvent {
        self.next_event_within(PATIENCE)
            .await
            .expect("an event in time")
    }

    /// The next `n` events.
    pub async fn events(&mut self, n: usize) -> Vec<SseEvent> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.next_event().await);
        }
        v
    }

    /// Reads until the stream ends (returns the items seen meanwhile); panics if it does not end soon.
    pub async fn until_end(&mut self) -> Vec<Item> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            seen.extend(self.items.drain(..));
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.fill(left).await {
                Some(true) => {}
                Some(false) => {
                    seen.extend(self.items.drain(..));
                    return seen;
                }
                None => panic!("the stream did not end in time; saw {seen:?}"),
            }
        }
    }
}

/// Opens a stream once a replica's reader has reached Redis: before that, a
/// replica answers "try later" (a retry hint, then the end of the stream).
pub async fn subscribe_ready(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> SseStream {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut s = open_stream(app.addr, &format!("/events?{query}"), headers).await;
        assert_eq!(s.status, StatusCode::OK);
        assert!(matches!(
            s.next_item_within(PATIENCE).await,
            Some(Item::Retry(_))
        ));
        match s.next_item_within(PATIENCE).await {
            Some(Item::Comment(c)) if c == "hookcast" => return s,
            other => {
                assert!(s.ended, "a try-later stream ends: {other:?}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "replica never ready"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Routes: `/both/{a}/{b}` publishes one event to `room.{a}` and `room.{b}`;
/// `/hooks/{room}` publishes to `room.{room}`, named by `X-Event` when it is sent.
pub const ROUTES: &str = r#"
routes:
  - name: both
    match:
      path: "/both/{a}/{b}"
    publish:
      topic: ["room.{path:a}", "room.{path:b}"]
  - name: named
    match:
      path: "/hooks/{room}"
      headers: { X-Event: "*" }
    publish:
      topic: "room.{path:room}"
      event: "{header:X-Event}"
  - name: plain
    match:
      path: "/hooks/{room}"
    publish:
      topic: "room.{path:room}"
"#;

/// Publishes `body` on `path` with no [`TestApp`] at hand; returns the id.
pub async fn publish_at(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> String {
    let r = request(addr, Method::POST, path, &[], body.into()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_owned()
}

/// The standard config used by most tests; `extra` is appended at the top level.
pub fn config(extra: &str) -> String {
    format!(
        r#"
sse:
  heartbeat: 15s
  retry: 3s
routes:
  - name: named
    match:
      path: "/hooks/{{room}}"
      headers: {{ X-Event: "*" }}
    publish:
      topic: "room.{{path:room}}"
      event: "{{header:X-Event}}"
  - name: plain
    match:
      path: "/hooks/{{room}}"
    publish:
      topic: "room.{{path:room}}"
{extra}"#
    )
}

/// A directory of the test's own under the temp dir (unique per process and
/// call), removed on drop, also when the test fails.
pub struct TempDir(std::path::PathBuf);

/// A path under the temp dir that no other test of any process has: the
/// process id and a count, then `tag`.
fn unique_temp_path(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("hookcast-{}-{n}-{tag}", std::process::id()))
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = unique_temp_path(tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The path of `name` in it.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// Writes `name` in it; its path.
    pub fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file of the test's own under the temp dir (unique per process and call;
/// `tag` says what it is), removed on drop.
pub struct TempFile(std::path::PathBuf);

impl TempFile {
    pub fn new(tag: &str, contents: &str) -> TempFile {
        let path = unique_temp_path(tag);
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path as text.
    pub fn name(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A secret written to a file under the temp dir (as a Kubernetes Secret mount
/// would be), removed on drop.
pub struct SecretFile(TempFile);

impl SecretFile {
    pub fn new(contents: &str) -> SecretFile {
        SecretFile(TempFile::new("secret", contents))
    }

    /// The path, quoted for YAML.
    pub fn path(&self) -> String {
        format!("{:?}", self.0.name())
    }
}

/// A hookcast with an admin listener and, given the config's path, reloads
/// (`reload` stands for SIGHUP).
pub struct AdminApp {
    pub app: TestApp,
    pub admin: SocketAddr,
    pub reload: std::sync::Arc<tokio::sync::Notify>,
}

impl AdminApp {
    /// Starts hookcast on the config at `path` (its `listen` is ignored).
    pub async fn spawn_file(path: &std::path::Path) -> AdminApp {
        let config = hookcast::config::load(path).unwrap_or_else(|e| panic!("{e}"));
        let reload = std::sync::Arc::new(tokio::sync::Notify::new());
        let source = hookcast::reload::Source::new(path.to_path_buf(), reload.clone(), &config);
        Self::spawn_config(config, Some(source), reload).await
    }

    /// Starts hookcast with this YAML (no reloads).
    pub async fn spawn(yaml: &str) -> AdminApp {
        let config =
            hookcast::config::from_yaml("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
        Self::spawn_config(config, None, Default::default()).await
    }

    async fn spawn_config(
        config: hookcast::Config,
        source: Option<hookcast::reload::Source>,
        reload: std::sync::Arc<tokio::sync::Notify>,
    ) -> AdminApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
        let options = hookcast::Options {
            admin: Some(admin),
            reload: source,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(hookcast::serve(
            listener,
            config,
            async move {
                let _ = rx.await;
            },
            options,
        ));
        AdminApp {
            app: TestApp {
                addr,
                shutdown: Some(tx),
                handle: Some(handle),
            },
            admin: admin_addr,
            reload,
        }
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        request(self.admin, Method::GET, path, &[], Bytes::new()).await
    }
}

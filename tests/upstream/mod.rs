//! Upstreams for the proxy tests: a hyper server inside the test with a handler per
//! test, the "legacy application" as a separate Python process, and a client that
//! sends any body and keeps the response streaming.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> TestBody {
    full(Bytes::new())
}

/// A body fed through a channel, frame by frame; it ends when the sender is dropped.
pub struct ChanBody(mpsc::Receiver<Frame<Bytes>>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// A streaming body and the sender that feeds it.
pub fn channel() -> (mpsc::Sender<Frame<Bytes>>, TestBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChanBody(rx).boxed())
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>
        + Send
        + Sync,
>;

/// A hyper HTTP/1.1 server (upgrades on) on 127.0.0.1:0; stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn serve<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream { addr, task }
    }
}

/// A config with this upstream; `extra` is appended at the top level.
pub fn config(upstream: SocketAddr, extra: &str) -> String {
    format!("upstream:\n  url: \"http://{upstream}\"\n  timeout: 5s\n{extra}")
}

/// The Python "legacy application", a separate process; killed when dropped.
pub struct Legacy {
    pub addr: SocketAddr,
    _child: tokio::process::Child,
}

impl Legacy {
    pub async fn start() -> Legacy {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/legacy.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the legacy app");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the legacy app prints its port")
        .unwrap();
        let port: u16 = line.trim().parse().expect("a port");
        Legacy {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: child,
        }
    }
}

/// Sends one request on a new HTTP/1.1 connection; the response body still streams.
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    tokio::time::timeout(crate::support::PATIENCE, sender.send_request(req))
        .await
        .expect("response headers in time")
        .unwrap()
}

/// Reads a whole body: its bytes and trailers, or the error it ended with.
pub async fn read_all(body: Incoming) -> Result<(Bytes, Option<HeaderMap>), hyper::Error> {
    let collected = tokio::time::timeout(crate::support::PATIENCE, body.collect())
        .await
        .expect("body in time")?;
    let trailers = collected.trailers().cloned();
    Ok((collected.to_bytes(), trailers))
}

/// The next data frame of a body (trailers skipped); None at its end.
pub async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(crate::support::PATIENCE, body.frame())
            .await
            .expect("a frame in time")?
            .expect("no body error");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}

/// The values of a header the legacy app received, from its echo.
pub fn echoed(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|kv| kv[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|kv| kv[1].as_str().unwrap().to_owned())
        .collect()
}

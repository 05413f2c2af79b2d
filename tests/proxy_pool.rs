//! The proxy's connections to the upstream: kept alive and used again, closed
//! once idle for `pool_idle_timeout`, never kept with `pool_max_idle_per_host: 0`,
//! and one that the upstream closed is no error for the next request.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use support::{PATIENCE, TestApp};

/// Why a connection to [`Upstream`] ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// hookcast closed it.
    ByProxy,
    /// The upstream did, after its `answers`.
    ByUpstream,
}

/// An upstream that answers each request head with 200 `ok`, and closes a
/// connection after `answers` of them when set; it counts the connections it
/// accepts and reports how each one ended.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: mpsc::UnboundedReceiver<End>,
}

impl Upstream {
    async fn start(answers: Option<usize>) -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, ended) = mpsc::unbounded_channel();
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    let mut answered = 0;
                    loop {
                        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                            answered += 1;
                            if Some(answered) == answers {
                                drop(s);
                                let _ = tx.send(End::ByUpstream);
                                return;
                            }
                            continue;
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => {
                                let _ = tx.send(End::ByProxy);
                                return;
                            }
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            accepted,
            ended,
        }
    }

    fn config(&self, extra: &str) -> String {
        format!("upstream:\n  url: \"http://{}\"\n{extra}", self.addr)
    }

    async fn next_end(&mut self) -> End {
        tokio::time::timeout(PATIENCE, self.ended.recv())
            .await
            .expect("a connection to the upstream ends")
            .expect("the upstream runs")
    }
}

async fn get_ok(app: &TestApp) {
    let r = app.get("/app/page", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "ok");
}

#[tokio::test]
async fn requests_one_after_another_share_one_upstream_connection() {
    let up = Upstream::start(None).await;
    let app = TestApp::spawn(&up.config("")).await;
    for _ in 0..5 {
        get_ok(&app).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_idle_connections_each_request_has_its_own() {
    let mut up = Upstream::start(None).await;
    let app = TestApp::spawn(&up.config("  pool_max_idle_per_host: 0\n")).await;
    for _ in 0..3 {
        get_ok(&app).await;
        assert_eq!(up.next_end().await, End::ByProxy);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_pool_idle_timeout() {
    let mut up = Upstream::start(None).await;
    let app = TestApp::spawn(&up.config("  pool_idle_timeout: 200ms\n")).await;
    get_ok(&app).await;
    assert_eq!(up.next_end().await, End::ByProxy);
    // The next request opens a new one.
    get_ok(&app).await;
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_kept_connection_the_upstream_closed_is_not_used_again() {
    let mut up = Upstream::start(Some(1)).await;
    let app = TestApp::spawn(&up.config("")).await;
    for _ in 0..3 {
        get_ok(&app).await;
        assert_eq!(up.next_end().await, End::ByUpstream);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
}

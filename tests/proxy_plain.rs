//! Plain proxied requests on the socket (README "Architecture", `fast`): HTTP/1.1
//! requests that hookcast only passes on are relayed without hyper, over raw
//! sockets both sides here so that every byte is seen — keep-alive and
//! pipelining, chunked and length bodies, HEAD, 204 and 304, a cut body, a slow
//! upstream — and a request the plain path does not take (an expectation)
//! hands the connection to hyper with what was read.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use support::net::{Answer, read_answer, read_more};
use support::{TestApp, read_to_close};

/// Bytes of `/big`.
const BIG: usize = 8 << 20;

/// An upstream over raw sockets that answers by path; it counts its
/// connections. `/echo` answers with the request it got, head and body.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_upstream(s));
        }
    });
    (addr, accepted)
}

async fn serve_upstream(mut s: TcpStream) {
    let mut seen = Vec::new();
    loop {
        let (head_len, body_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&seen) {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |h| {
                        std::str::from_utf8(h.value).unwrap().parse().unwrap()
                    });
                break (n, len);
            }
            if read_more(&mut s, &mut seen).await == 0 {
                return;
            }
        };
        while seen.len() < head_len + body_len {
            if read_more(&mut s, &mut seen).await == 0 {
                return;
            }
        }
        let request: Vec<u8> = seen.drain(..head_len + body_len).collect();
        let text = String::from_utf8_lossy(&request).into_owned();
        let target = text.split(" ").nth(1).unwrap_or_default();
        let path = target.split("?").next().unwrap_or_default().to_owned();
        let answer: Vec<u8> = match path.as_str() {
            "/echo" => {
                let mut a = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", request.len())
                    .into_bytes();
                a.extend_from_slice(&request);
                a
            }
            "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-sum: 12\r\n\r\n".to_vec(),
            "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec(),
            "/hops" => b"HTTP/1.1 200 OK\r\nX-Kept: 1\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 2\r\nKeep-Alive: timeout=5\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-Kept: 3\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            "/204" => b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n".to_vec(),
            "/304" => b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n".to_vec(),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow".to_vec()
            }
            "/cut" => {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
                    .await;
                return;
            }
            "/big" => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n");
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b'x'; 64 * 1024];
                for _ in 0..BIG / piece.len() {
                    if s.write_all(&piece).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        };
        if s.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Asks for `path` on the connection and reads the whole answer.
async fn get(s: &mut TcpStream, buf: &mut Vec<u8>, path: &str) -> Answer {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    read_answer(s, buf, false).await.unwrap()
}

async fn connect(app: &TestApp) -> TcpStream {
    let s = TcpStream::connect(app.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

async fn spawn(up: SocketAddr, extra: &str) -> TestApp {
    TestApp::spawn(&format!(
        "upstream:\n  url: \"http://{up}\"\n  timeout: 5s\n{extra}"
    ))
    .await
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_upstream_connection() {
    let (up, accepted) = upstream().await;
    let app = spawn(up, "").await;
    let mut s = connect(&app).await;
    s.write_all(
        b"GET /echo?n=1 HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\n\r\n\
          GET /one HTTP/1.1\r\nHost: app.example\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let first = read_answer(&mut s, &mut buf, false).await.unwrap();
    let echoed = String::from_utf8(first.body).unwrap().to_lowercase();
    assert!(echoed.starts_with("get /echo?n=1 http/1.1\r\n"), "{echoed}");
    assert!(
        echoed.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1\r\n"),
        "{echoed}"
    );
    assert!(echoed.contains("x-forwarded-proto: http\r\n"), "{echoed}");
    assert!(
        echoed.contains("x-forwarded-host: app.example\r\n"),
        "{echoed}"
    );
    assert!(echoed.contains("host: app.example\r\n"), "{echoed}");
    assert!(
        !echoed.contains("x-hop") && !echoed.contains("connection"),
        "{echoed}"
    );
    let second = read_answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(second.body, b"ok");
    let third = read_answer(&mut s, &mut buf, false).await.unwrap();
    let echoed = String::from_utf8(third.body).unwrap();
    assert!(echoed.ends_with("\r\n\r\nhello"), "{echoed}");
    assert!(
        echoed.to_lowercase().contains("content-length: 5\r\n"),
        "{echoed}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_chunked_response_passes_with_its_chunks_and_trailers_and_the_connection_goes_on() {
    let (up, _) = upstream().await;
    let app = spawn(up, "").await;
    let mut s = connect(&app).await;
    let mut buf = Vec::new();
    let a = get(&mut s, &mut buf, "/chunked").await;
    assert_eq!(a.status, 200);
    assert!(
        a.head.contains("transfer-encoding: chunked\r\n"),
        "{}",
        a.head
    );
    assert_eq!(
        a.body,
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-sum: 12\r\n\r\n"
    );
    assert_eq!(get(&mut s, &mut buf, "/again").await.body, b"ok");
}

#[tokio::test]
async fn head_204_and_304_answers_have_no_body_and_the_connection_goes_on() {
    let (up, _) = upstream().await;
    let app = spawn(up, "").await;
    let mut s = connect(&app).await;
    let mut buf = Vec::new();
    s.write_all(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let a = read_answer(&mut s, &mut buf, true).await.unwrap();
    assert_eq!(a.status, 200);
    assert!(a.head.contains("content-length: 5\r\n"), "{}", a.head);
    for (path, status) in [("/204", 204), ("/304", 304)] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(
            read_answer(&mut s, &mut buf, true).await.unwrap().status,
            status
        );
    }
    s.write_all(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let a = read_answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.body, b"ok");
    assert!(buf.is_empty(), "stray bytes: {buf:?}");
}

#[tokio::test]
async fn an_upstream_closing_mid_body_closes_the_clients_connection_short() {
    let (up, _) = upstream().await;
    let app = spawn(up, "").await;
    let mut s = connect(&app).await;
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The head promised 100 bytes; the connection ends after ten.
    assert!(read_answer(&mut s, &mut buf, false).await.is_none());
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 200 OK") || text == "only ten b",
        "{text}"
    );
}

#[tokio::test]
async fn a_slow_upstream_gets_504_and_the_connection_goes_on() {
    let (up, _) = upstream().await;
    let app = TestApp::spawn(&format!(
        "upstream:\n  url: \"http://{up}\"\n  timeout: 300ms\n"
    ))
    .await;
    let mut s = connect(&app).await;
    let mut buf = Vec::new();
    let a = get(&mut s, &mut buf, "/slow").await;
    assert_eq!(a.status, 504);
    assert!(String::from_utf8_lossy(&a.body).contains("\"upstream_timeout\""));
    assert_eq!(get(&mut s, &mut buf, "/fine").await.body, b"ok");
}

/// The response head as hyper's path would write it: hop-by-hop headers and
/// those `Connection` names out, names lowercased, the upstream's `date` kept
/// or one added.
#[tokio::test]
async fn response_heads_lose_hop_by_hop_headers_and_carry_one_date() {
    let (up, _) = upstream().await;
    let app = spawn(up, "").await;
    let mut s = connect(&app).await;
    let mut buf = Vec::new();
    let a = get(&mut s, &mut buf, "/hops").await;
    let head = a.head.to_ascii_lowercase();
    assert_eq!(a.body, b"ok");
    assert!(a.head.contains("\r\nx-kept: 1\r\n"), "{}", a.head);
    assert!(a.head.contains("\r\nx-kept: 3\r\n"), "{}", a.head);
    for gone in ["x-drop", "keep-alive", "connection"] {
        assert!(!head.contains(&format!("\r\n{gone}:")), "{}", a.head);
    }
    assert!(
        a.head
            .contains("\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
        "{}",
        a.head
    );
    assert_eq!(head.matches("\r\ndate: ").count(), 1, "{}", a.head);
    let b = get(&mut s, &mut buf, "/fine").await;
    let dates: Vec<_> = b.head.lines().filter(|l| l.starts_with("date: ")).collect();
    assert_eq!(dates.len(), 1, "{}", b.head);
    assert!(httpdate::parse_http_date(&dates[0]["date: ".len()..]).is_ok());
}

/// The wait for a request head and the wait for the upstream's answer share
/// one timer per connection: after an exchange under the upstream's long
/// `timeout`, a head that stops halfway is still cut at `header_read_timeout`.
#[tokio::test]
async fn a_head_after_an_exchange_is_cut_at_its_own_timeout() {
    let (up, _) = upstream().await;
    let app = TestApp::spawn(&format!(
        "upstream:\n  url: \"http://{up}\"\n  timeout: 600s\nlimits:\n  header_read_timeout: 300ms\n"
    ))
    .await;
    let mut s = connect(&app).await;
    let mut buf = Vec::new();
    assert_eq!(get(&mut s, &mut buf, "/fine").await.body, b"ok");
    s.write_all(b"GET /fine HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // Closed well before the upstream's 600 s (read_to_close waits PATIENCE).
    let answer = read_to_close(&mut s).await.text();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_gets_502() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    drop(l);
    let app = spawn(up, "").await;
    let mut s = connect(&app).await;
    let mut buf = Vec::new();
    let a = get(&mut s, &mut buf, "/x").await;
    assert_eq!(a.status, 502);
    assert!(String::from_utf8_lossy(&a.body).contains("\"upstream_unavailable\""));
}

#[tokio::test]
async fn a_large_body_passes_whole() {
    let (up, _) = upstream().await;
    let app = spawn(up, "").await;
    let mut s = connect(&app).await;
    let mut buf = Vec::new();
    let a = get(&mut s, &mut buf, "/big").await;
    assert_eq!(a.body.len(), BIG);
    assert!(a.body.iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn an_expectation_hands_the_connection_to_hyper_with_what_was_read() {
    let (up, accepted) = upstream().await;
    let app = spawn(up, "").await;
    let mut s = connect(&app).await;
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        read_answer(&mut s, &mut buf, false).await.unwrap().body,
        b"ok"
    );
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .await
    .unwrap();
    let cont = read_answer(&mut s, &mut buf, true).await.unwrap();
    assert_eq!(cont.status, 100);
    s.write_all(b"hi").await.unwrap();
    let a = read_answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.status, 200);
    assert!(a.body.ends_with(b"\r\n\r\nhi"));
    assert!(
        !String::from_utf8_lossy(&a.body)
            .to_lowercase()
            .contains("expect")
    );
    // Then the same connection goes on under hyper.
    assert_eq!(get(&mut s, &mut buf, "/then").await.body, b"ok");
    assert!(accepted.load(Ordering::SeqCst) >= 1);
}

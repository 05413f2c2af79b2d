//! The event stream over each way a client can reach it: HTTP/1.1 on a fresh
//! connection (served straight on the socket), HTTP/1.1 after another request on
//! the same connection and h2c (served by hyper), and HTTP/1.0. Raw sockets, so
//! the framing itself is checked.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{PATIENCE, TestApp, config, read_to_close};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads from `s` until `buf` contains `needle`; returns everything read so far.
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(buf).contains(needle) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!(
                "connection closed before {needle:?}; got {:?}",
                String::from_utf8_lossy(buf)
            ),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => panic!(
                "no {needle:?} in time; got {:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }
    String::from_utf8_lossy(buf).into_owned()
}

/// Connects and sends `request` as is.
async fn send(app: &TestApp, request: &str) -> TcpStream {
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    s
}

const STREAM_REQUEST: &str = "GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\n\r\n";

fn head_of(raw: &str) -> String {
    raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase()
}

#[tokio::test]
async fn fresh_http11_stream_is_chunked_and_carries_events() {
    let app = TestApp::spawn(&config("")).await;
    let mut s = send(
        &app,
        "GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await;
    let mut buf = Vec::new();
    let raw = read_until(&mut s, &mut buf, ": hookcast\n\n").await;
    let head = head_of(&raw);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: text/event-stream"),
        "{head}"
    );
    assert!(head.contains("\r\nx-accel-buffering: no"), "{head}");
    assert!(head.contains("\r\ndate: "), "{head}");
    assert!(!head.contains("content-length"), "{head}");

    let id = app.publish("/hooks/a", "hello").await;
    // One chunk: its size line, then the frame, then CRLF.
    let frame = format!("id: {id}\ndata: hello\n\n");
    let chunk = format!("{:x}\r\n{frame}\r\n", frame.len());
    read_until(&mut s, &mut buf, &chunk).await;
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn stream_after_another_request_on_the_same_connection() {
    let app = TestApp::spawn(&config("")).await;
    let mut s = send(&app, "GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = Vec::new();
    let raw = read_until(&mut s, &mut buf, "\"not_found\"").await;
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    let body_len: usize = head_of(&raw)
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    let head_len = raw.find("\r\n\r\n").unwrap() + 4;
    let mut rest = buf.split_off(head_len);
    while rest.len() < body_len {
        let mut b = [0u8; 1024];
        let n = s.read(&mut b).await.unwrap();
        rest.extend_from_slice(&b[..n]);
    }

    s.write_all(b"GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = rest.split_off(body_len);
    let raw = read_until(&mut s, &mut buf, ": hookcast\n\n").await;
    let head = head_of(&raw);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");

    app.publish("/hooks/a", "second request").await;
    read_until(&mut s, &mut buf, "data: second request\n\n").await;
    drop(s);
    app.shutdown().await;
}

#[tokio::test]
async fn http10_stream_ends_with_the_connection() {
    let mut app = TestApp::spawn(&config("shutdown_grace: 5s")).await;
    let mut s = send(&app, "GET /events?topic=room.a HTTP/1.0\r\n\r\n").await;
    let mut buf = Vec::new();
    let raw = read_until(&mut s, &mut buf, ": hookcast\n\n").await;
    let head = head_of(&raw);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");

    let id = app.publish("/hooks/a", "old client").await;
    // No chunk framing: the frame as is.
    read_until(
        &mut s,
        &mut buf,
        &format!("\n\nid: {id}\ndata: old client\n\n"),
    )
    .await;

    let stopped = app.begin_shutdown();
    let closed = read_to_close(&mut s).await;
    assert!(!closed.reset, "read failed: {closed:?}");
    let rest = closed.text();
    assert!(rest.contains("retry: "), "{rest:?}");
    stopped.await.unwrap().unwrap();
}

#[tokio::test]
async fn h2c_stream_carries_events() {
    let app = TestApp::spawn(&config("")).await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(app.url("/events?topic=room.a"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut body = resp.into_body();
    let mut got = String::new();
    let id = loop {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("a frame in time")
            .expect("the stream goes on")
            .unwrap();
        got += &String::from_utf8_lossy(frame.data_ref().unwrap());
        if got.contains(": hookcast\n\n") {
            break app.publish("/hooks/a", "over h2").await;
        }
    };
    let want = format!("id: {id}\ndata: over h2\n\n");
    while !got.contains(&want) {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("the event in time")
            .expect("the stream goes on")
            .unwrap();
        got += &String::from_utf8_lossy(frame.data_ref().unwrap());
    }
    drop(body);
    app.shutdown().await;
}

#[tokio::test]
async fn bytes_after_the_request_do_not_end_the_stream() {
    let app = TestApp::spawn(&config("")).await;
    let mut s = send(
        &app,
        "GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    )
    .await;
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, ": hookcast\n\n").await;
    s.write_all(b"more stray bytes").await.unwrap();
    app.publish("/hooks/a", "still here").await;
    read_until(&mut s, &mut buf, "data: still here\n\n").await;
    drop(s);
    app.shutdown().await;
}

/// With room for one subscriber, a client that leaves frees the place for the next.
#[tokio::test]
async fn a_client_that_leaves_frees_its_place() {
    let app =
        TestApp::spawn(&config("").replacen("sse:\n", "sse:\n  max_subscribers: 1\n", 1)).await;
    for round in 0..3 {
        let mut s = send(&app, STREAM_REQUEST).await;
        let mut buf = Vec::new();
        // The place frees once hookcast has seen the close: allow a few tries.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let raw = read_until(&mut s, &mut buf, "\n\n").await;
            if raw.contains(": hookcast\n\n") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: still told to try later"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            s = send(&app, STREAM_REQUEST).await;
            buf.clear();
        }
        drop(s);
    }
    app.shutdown().await;
}

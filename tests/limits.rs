//! Abuse limits over real sockets: slow headers are cut (slowloris), open
//! connections are capped, streams per client address are capped (believing
//! `X-Forwarded-For` only from trusted proxies), and oversized request heads and
//! targets get 431 / 414 instead of a crash.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

/// Writes `head` and reads until the server closes; returns what it sent.
async fn exchange(addr: SocketAddr, head: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may close before reading everything; that is its answer too.
    let _ = s.write_all(head).await;
    read_to_close(&mut s).await.text()
}

#[tokio::test]
async fn slow_headers_are_cut_and_others_are_served_meanwhile() {
    let app = TestApp::spawn(&config("limits:\n  header_read_timeout: 300ms\n")).await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // While the slow client dawdles, another is served.
    app.publish("/hooks/a", "still serving").await;
    let answer = read_to_close(&mut slow).await.text();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test]
async fn oversized_heads_and_targets_are_refused() {
    let app = TestApp::spawn(&config("")).await;
    let big_header = format!(
        "GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = exchange(app.addr, big_header.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let long = format!("/events?topic=room.a&pad={}", "a".repeat(9 * 1024));
    app.get(&long, &[])
        .await
        .assert_error(StatusCode::URI_TOO_LONG, "uri_too_long");
    let long_hook = format!("/hooks/a?pad={}", "a".repeat(9 * 1024));
    app.post(&long_hook, &[], "x")
        .await
        .assert_error(StatusCode::URI_TOO_LONG, "uri_too_long");

    let huge_target = format!(
        "GET /events?pad={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = exchange(app.addr, huge_target.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 414"),
        "{answer}"
    );
    // Still up.
    app.publish("/hooks/a", "fine").await;
}

/// Sends one keep-alive request on `s` and reads its (small, complete) answer head.
async fn keep_alive_request(s: &mut TcpStream) -> String {
    s.write_all(b"GET /_hookcast/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let app = TestApp::spawn(&config("limits:\n  max_connections: 2\n")).await;
    let mut a = TcpStream::connect(app.addr).await.unwrap();
    let mut b = TcpStream::connect(app.addr).await.unwrap();
    assert!(keep_alive_request(&mut a).await.starts_with("HTTP/1.1 "));
    assert!(keep_alive_request(&mut b).await.starts_with("HTTP/1.1 "));
    let third = exchange(
        app.addr,
        b"GET /events?topic=room.a HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(third, "", "closed without an answer");
    drop(a);
    // Once a connection ends its place is free again.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = exchange(
            app.addr,
            b"POST /hooks/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        )
        .await;
        if answer.starts_with("HTTP/1.1 202") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no place freed: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(b);
}

#[tokio::test]
async fn streams_per_address_behind_a_trusted_proxy() {
    let app = TestApp::spawn(&config(
        "limits:\n  max_subscribers_per_ip: 2\n  trusted_proxies: [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n",
    ))
    .await;
    let alice = [("X-Forwarded-For", "203.0.113.7, 10.0.0.5")];
    let s1 = app.subscribe("topic=room.a", &alice).await;
    let _s2 = app.subscribe("topic=room.b", &alice).await;
    let r = app.get("/events?topic=room.a", &alice).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_subscribers");
    assert!(r.headers.contains_key("retry-after"));
    // Another client behind the same proxy is counted apart; a spoofed leftmost
    // entry changes nothing, since the proxy appended the real address.
    let _bob = app
        .subscribe("topic=room.a", &[("X-Forwarded-For", "198.51.100.1")])
        .await;
    app.get(
        "/events?topic=room.a",
        &[("X-Forwarded-For", "198.51.100.9, 203.0.113.7")],
    )
    .await
    .assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_subscribers");
    // Refusals free nothing and take nothing; a closed stream frees its place.
    drop(s1);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let s = open_stream(app.addr, "/events?topic=room.a", &alice).await;
        if s.status == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    let app = TestApp::spawn(&config("limits:\n  max_subscribers_per_ip: 1\n")).await;
    let _s = app
        .subscribe("topic=room.a", &[("X-Forwarded-For", "203.0.113.1")])
        .await;
    app.get(
        "/events?topic=room.a",
        &[("X-Forwarded-For", "203.0.113.2")],
    )
    .await
    .assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_subscribers");
}

#[test]
fn limits_config_errors() {
    let e = config_error("limits:\n  trusted_proxies: [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n");
    assert!(
        e.starts_with("test.yaml:2:35: limits.trusted_proxies: "),
        "{e}"
    );
    let e = config_error("limits:\n  max_connections: 0\n");
    assert!(
        e.starts_with("test.yaml:2:20: limits.max_connections must be at least 1"),
        "{e}"
    );
    let e = config_error("limits:\n  max_subscribers_per_ip: -1\n");
    assert!(e.starts_with("test.yaml:2:"), "{e}");
}

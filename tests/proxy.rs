//! The reverse proxy (README, "Put hookcast in front of your app"): every request
//! that is not the event stream, a matched route or `/_hookcast/*` reaches the
//! upstream as if hookcast were not there — methods, targets, headers, bodies both
//! ways, streaming, trailers, WebSockets — and each failure gets its own answer.

mod support;
mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::HeaderValue;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use support::net::{Then, raw_upstream};
use support::{PATIENCE, Reply, TestApp, config_error};
use upstream::{Legacy, Upstream, echoed, empty, full, next_data, read_all, send};

fn req(app: &TestApp, method: Method, target: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(target)
        .header("host", app.addr.to_string())
}

async fn reply_of(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let (body, _) = read_all(body).await.expect("a whole body");
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn with_legacy(extra: &str) -> (Legacy, TestApp) {
    let legacy = Legacy::start().await;
    let app = TestApp::spawn(&upstream::config(legacy.addr, extra)).await;
    (legacy, app)
}

// ------------------------------------------------------------ what goes where

#[tokio::test]
async fn without_an_upstream_unmatched_requests_get_404_and_other_methods_405() {
    let app = TestApp::spawn(&support::config("")).await;
    app.get("/app/page", &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let r = app.get("/hooks/lobby", &[]).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(r.headers["allow"], "POST");
}

#[tokio::test]
async fn with_an_upstream_everything_but_hookcasts_own_paths_reaches_it() {
    let (_legacy, app) = with_legacy(&support::config("")).await;
    // Unmatched path.
    let r = app.get("/app/page?x=1", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["target"], "/app/page?x=1");
    // A route's path with another method goes to the upstream, not 405.
    let r = app.get("/hooks/lobby", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["method"], "GET");
    // A matched route is still a webhook, the event stream still hookcast's.
    let mut sub = app.subscribe("topic=room.lobby", &[]).await;
    let id = app.publish("/hooks/lobby", "hi").await;
    assert_eq!(sub.next_event().await.id, id);
    // hookcast's own paths are never passed on.
    app.get("/_hookcast/", &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_route_whose_conditions_fail_passes_the_request_to_the_upstream_whole() {
    let (_legacy, app) = with_legacy(
        "routes:
  - name: github
    match:
      path: /hooks/github
      headers: { X-GitHub-Event: \"*\" }
    publish: { topic: gh }
",
    )
    .await;
    let r = app.post("/hooks/github", &[], "not for hookcast").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["body"], "not for hookcast");
    let r = app
        .post("/hooks/github", &[("X-GitHub-Event", "push")], "{}")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

// ------------------------------------------------------------ requests as sent

#[tokio::test]
async fn methods_targets_bodies_and_repeated_headers_pass_unchanged() {
    let (_legacy, app) = with_legacy("").await;
    let target = "/api/items/7?q=a%20b&q=c&empty=&plus=1+1";
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let body = if method == "GET" { "" } else { "payload bytes" };
        let r = reply_of(
            send(
                app.addr,
                req(&app, Method::from_bytes(method.as_bytes()).unwrap(), target)
                    .header("x-multi", "one")
                    .header("x-multi", "two")
                    .body(full(body))
                    .unwrap(),
            )
            .await,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{method}: {}", r.text());
        let echo = r.json();
        assert_eq!(echo["method"], method);
        assert_eq!(echo["target"], target);
        assert_eq!(echo["version"], "HTTP/1.1");
        assert_eq!(echo["body"], body, "{method}");
        assert_eq!(echoed(&echo, "x-multi"), ["one", "two"], "{method}");
        assert_eq!(r.headers["x-app"], "legacy");
    }
}

#[tokio::test]
async fn a_head_request_gets_the_upstreams_headers_without_a_body() {
    let (_legacy, app) = with_legacy("").await;
    let get = app.get("/api/big?n=100", &[]).await;
    let head = reply_of(
        send(
            app.addr,
            req(&app, Method::HEAD, "/api/big?n=100")
                .body(empty())
                .unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-length"], get.body.len().to_string());
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let (_legacy, app) = with_legacy("").await;
    let r = send(
        app.addr,
        Request::builder()
            .uri("/echo")
            .header("host", "app.example.com:8443")
            .header("connection", "keep-alive, X-Hop-Custom")
            .header("x-hop-custom", "secret to this connection")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("proxy-authorization", "Basic cHJveHk6cHc=")
            .header("te", "gzip")
            .header("upgrade", "h2c")
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "spoofed.example")
            .header("authorization", "Bearer app-token")
            .header("cookie", "session=1")
            .body(empty())
            .unwrap(),
    )
    .await;
    let echo = reply_of(r).await.json();
    for gone in [
        "x-hop-custom",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(
            echoed(&echo, gone).is_empty(),
            "{gone} reached the app: {echo}"
        );
    }
    for c in echoed(&echo, "connection") {
        assert!(!c.to_ascii_lowercase().contains("x-hop-custom"), "{c}");
    }
    assert_eq!(echoed(&echo, "host"), ["app.example.com:8443"]);
    assert_eq!(echoed(&echo, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(echoed(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed(&echo, "x-forwarded-host"), ["app.example.com:8443"]);
    assert_eq!(echoed(&echo, "authorization"), ["Bearer app-token"]);
    assert_eq!(echoed(&echo, "cookie"), ["session=1"]);
}

#[tokio::test]
async fn an_upstream_url_with_a_path_prefixes_every_target() {
    let legacy = Legacy::start().await;
    let yaml = format!("upstream:\n  url: \"http://{}/base/\"\n", legacy.addr);
    let app = TestApp::spawn(&yaml).await;
    let r = app.get("/x/y?z=1", &[]).await;
    assert_eq!(r.json()["target"], "/base/x/y?z=1");
}

// ------------------------------------------------------------ responses as sent

#[tokio::test]
async fn statuses_and_response_headers_pass_unchanged() {
    let up = Upstream::serve(|req: Request<Incoming>| async move {
        let code: u16 = req
            .uri()
            .path()
            .trim_start_matches("/status/")
            .parse()
            .unwrap();
        let body = if code == 204 || code == 304 {
            empty()
        } else {
            full(format!("status {code}"))
        };
        Response::builder()
            .status(code)
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; HttpOnly")
            .header("x-end-to-end", "kept")
            .header("connection", "X-Resp-Hop")
            .header("x-resp-hop", "dropped")
            .header("keep-alive", "timeout=5")
            .body(body)
            .unwrap()
    })
    .await;
    let app = TestApp::spawn(&upstream::config(up.addr, "")).await;
    for code in [200u16, 201, 204, 301, 304, 400, 404, 418, 500, 503] {
        let r = app.get(&format!("/status/{code}"), &[]).await;
        assert_eq!(r.status.as_u16(), code);
        let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"], "{code}");
        assert_eq!(r.headers["x-end-to-end"], "kept");
        assert!(!r.headers.contains_key("x-resp-hop"), "{code}");
        assert!(!r.headers.contains_key("keep-alive"), "{code}");
        if code != 204 && code != 304 {
            assert_eq!(r.text(), format!("status {code}"));
        }
    }
}

#[tokio::test]
async fn trailers_pass_both_ways() {
    let up = Upstream::serve(|req: Request<Incoming>| async move {
        let got = req.into_body().collect().await.unwrap();
        let req_trailer = got
            .trailers()
            .and_then(|t| t.get("x-req-sum"))
            .cloned()
            .unwrap_or(HeaderValue::from_static("none"));
        let (tx, body) = upstream::channel();
        tx.try_send(Frame::data(got.to_bytes())).unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-resp-sum", HeaderValue::from_static("42"));
        trailers.insert("x-echo", req_trailer.clone());
        tx.try_send(Frame::trailers(trailers)).unwrap();
        Response::builder()
            .header("trailer", "x-resp-sum, x-echo")
            .header("x-got-req-trailer", req_trailer)
            .body(body)
            .unwrap()
    })
    .await;
    let app = TestApp::spawn(&upstream::config(up.addr, "")).await;
    let (tx, body) = upstream::channel();
    let pending = tokio::spawn(send(
        app.addr,
        req(&app, Method::POST, "/sum")
            .header("te", "trailers")
            .header("trailer", "x-req-sum")
            .body(body)
            .unwrap(),
    ));
    tx.send(Frame::data(Bytes::from_static(b"abc")))
        .await
        .unwrap();
    let mut t = HeaderMap::new();
    t.insert("x-req-sum", HeaderValue::from_static("7"));
    tx.send(Frame::trailers(t)).await.unwrap();
    drop(tx);
    let resp = pending.await.unwrap();
    assert_eq!(resp.headers()["x-got-req-trailer"], "7");
    let (data, trailers) = read_all(resp.into_body()).await.unwrap();
    assert_eq!(data, "abc");
    let trailers = trailers.expect("response trailers");
    assert_eq!(trailers["x-resp-sum"], "42");
    assert_eq!(trailers["x-echo"], "7");
}

// ------------------------------------------------------------ streaming

/// An upstream whose response bodies the test writes, frame by frame.
async fn manual_upstream(
    content_type: &'static str,
) -> (
    Upstream,
    mpsc::UnboundedReceiver<mpsc::Sender<Frame<Bytes>>>,
) {
    let (senders_tx, senders_rx) = mpsc::unbounded_channel();
    let up = Upstream::serve(move |_req: Request<Incoming>| {
        let senders_tx = senders_tx.clone();
        async move {
            let (tx, body) = upstream::channel();
            senders_tx.send(tx).unwrap();
            Response::builder()
                .header("content-type", content_type)
                .header("cache-control", "no-cache")
                .body(body)
                .unwrap()
        }
    })
    .await;
    (up, senders_rx)
}

fn data(s: &'static str) -> Frame<Bytes> {
    Frame::data(Bytes::from_static(s.as_bytes()))
}

#[tokio::test]
async fn a_slow_chunked_response_reaches_the_client_chunk_by_chunk() {
    let (up, mut senders) = manual_upstream("text/plain").await;
    let app = TestApp::spawn(&upstream::config(up.addr, "")).await;
    let resp = send(
        app.addr,
        req(&app, Method::GET, "/slow").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let tx = senders.recv().await.unwrap();
    let mut body = resp.into_body();
    // The next chunk is written only after the client has the previous one.
    for chunk in ["first chunk", "second chunk", "third chunk"] {
        tx.send(data(chunk)).await.unwrap();
        assert_eq!(next_data(&mut body).await.unwrap(), chunk);
    }
    drop(tx);
    assert_eq!(next_data(&mut body).await, None, "a clean end");
}

#[tokio::test]
async fn an_upstream_event_stream_reaches_the_client_event_by_event() {
    let (up, mut senders) = manual_upstream("text/event-stream").await;
    let app = TestApp::spawn(&upstream::config(up.addr, "")).await;
    let mut stream = support::open_stream(app.addr, "/app/live", &[]).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert!(!stream.headers.contains_key("content-length"));
    let tx = senders.recv().await.unwrap();
    tx.send(data("id: 1\ndata: one\n\n")).await.unwrap();
    let e = stream.next_event().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), ("1", "one"));
    tx.send(data(": comment\n\nevent: tick\ndata: two\n\n"))
        .await
        .unwrap();
    let e = stream.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("tick", "two"));
}

#[tokio::test]
async fn request_and_response_bodies_stream_at_the_same_time() {
    // The upstream echoes the request body as it reads it.
    let up = Upstream::serve(|req: Request<Incoming>| async move {
        Response::new(req.into_body().map_err(Into::into).boxed())
    })
    .await;
    let app = TestApp::spawn(&upstream::config(up.addr, "")).await;
    let (tx, body) = upstream::channel();
    let pending = tokio::spawn(send(
        app.addr,
        req(&app, Method::POST, "/duplex").body(body).unwrap(),
    ));
    tx.send(data("ping 1")).await.unwrap();
    let mut resp = pending.await.unwrap().into_body();
    assert_eq!(next_data(&mut resp).await.unwrap(), "ping 1");
    // The request is still open: this chunk is sent only after the echo of the first came back.
    tx.send(data("ping 2")).await.unwrap();
    assert_eq!(next_data(&mut resp).await.unwrap(), "ping 2");
    drop(tx);
    assert_eq!(next_data(&mut resp).await, None);
}

// ------------------------------------------------------------ upgrades

async fn next_message<S>(ws: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("a message in time")
        .expect("still open")
        .expect("no error")
}

#[tokio::test]
async fn websocket_upgrades_pass_through_both_ways() {
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let up = Upstream::serve(|mut req: Request<Incoming>| async move {
        let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
        assert_eq!(req.headers()["upgrade"], "websocket");
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let upgraded = on_upgrade.await.unwrap();
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            ws.send(Message::text("hello from the app")).await.unwrap();
            while let Some(Ok(msg)) = ws.next().await {
                let reply = match msg {
                    Message::Text(t) => Message::text(format!("echo: {t}")),
                    Message::Binary(b) => Message::binary([&b[..], b"!"].concat()),
                    Message::Close(_) => break,
                    _ => continue,
                };
                ws.send(reply).await.unwrap();
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", derive_accept_key(&key))
            .body(empty())
            .unwrap()
    })
    .await;
    let app = TestApp::spawn(&upstream::config(up.addr, "")).await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut ws, resp) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::client_async(format!("ws://{}/app/socket", app.addr), tcp),
    )
    .await
    .expect("handshake in time")
    .expect("the upgrade succeeds");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        next_message(&mut ws).await,
        Message::text("hello from the app")
    );
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("echo: ping"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Message::binary(vec![1u8, 2, 3, b'!'])
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn an_upgrade_the_upstream_declines_is_an_ordinary_response() {
    let (_legacy, app) = with_legacy("").await;
    let r = reply_of(
        send(
            app.addr,
            req(&app, Method::GET, "/no-ws")
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .body(empty())
                .unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // The app saw the upgrade request as sent.
    assert_eq!(echoed(&r.json(), "upgrade"), ["websocket"]);
}

// ------------------------------------------------------------ failures

#[tokio::test]
async fn an_upstream_that_refuses_connections_gives_502() {
    let closed: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let app = TestApp::spawn(&upstream::config(closed, "")).await;
    app.get("/anything", &[])
        .await
        .assert_error(StatusCode::BAD_GATEWAY, "upstream_unavailable");
    app.post("/anything", &[], "body")
        .await
        .assert_error(StatusCode::BAD_GATEWAY, "upstream_unavailable");
}

#[tokio::test]
async fn an_upstream_that_closes_without_answering_gives_502() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let app = TestApp::spawn(&upstream::config(addr, "")).await;
    app.get("/x", &[])
        .await
        .assert_error(StatusCode::BAD_GATEWAY, "upstream_unavailable");
}

#[tokio::test]
async fn an_upstream_that_sends_no_headers_in_time_gives_504() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let yaml = format!("upstream:\n  url: \"http://{addr}\"\n  timeout: 200ms\n");
    let app = TestApp::spawn(&yaml).await;
    let r = app.get("/slow", &[]).await;
    r.assert_error(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout");
    assert!(r.json()["message"].as_str().unwrap().contains("200ms"));
}

#[tokio::test]
async fn an_upstream_closing_mid_body_cuts_the_clients_response() {
    for head in [
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nonly ten b\r\n",
    ] {
        let addr = raw_upstream(head.as_bytes(), Then::Close).await;
        let app = TestApp::spawn(&upstream::config(addr, "")).await;
        let resp = send(
            app.addr,
            req(&app, Method::GET, "/x").body(empty()).unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        let ended_with_error = loop {
            match tokio::time::timeout(PATIENCE, body.frame())
                .await
                .expect("in time")
            {
                None => break false,
                Some(Err(_)) => break true,
                Some(Ok(f)) => got.extend_from_slice(&f.into_data().unwrap_or_default()),
            }
        };
        assert!(ended_with_error, "not a clean end: {head:?}");
        assert_eq!(got, b"only ten b");
    }
}

#[tokio::test]
async fn a_request_target_that_is_not_a_path_gets_400() {
    let (_legacy, app) = with_legacy("").await;
    for request in [
        "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(PATIENCE, s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{request}: {out}");
        assert!(out.contains("\"error\":\"bad_request\""), "{out}");
    }
}

#[tokio::test]
async fn a_client_breaking_off_its_body_does_not_reach_the_upstream_as_complete() {
    let (got_tx, mut got_rx) = mpsc::unbounded_channel();
    let up = Upstream::serve(move |req: Request<Incoming>| {
        let got_tx = got_tx.clone();
        async move {
            let _ = got_tx.send(req.into_body().collect().await.is_ok());
            Response::new(empty())
        }
    })
    .await;
    let app = TestApp::spawn(&upstream::config(up.addr, "")).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes!")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_string(&mut out)).await;
    if !out.is_empty() {
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(out.contains("body_unreadable"), "{out}");
    }
    let upstream_saw_complete = tokio::time::timeout(PATIENCE, got_rx.recv())
        .await
        .expect("the upstream got the request")
        .unwrap();
    assert!(
        !upstream_saw_complete,
        "a cut body must not look complete upstream"
    );
}

// ------------------------------------------------------------ configuration

#[test]
fn upstream_configuration_defaults_and_settings() {
    let c =
        hookcast::config::from_yaml("test.yaml", "upstream:\n  url: http://app:3000\n").unwrap();
    let u = c.upstream.unwrap();
    assert_eq!(u.authority.as_str(), "app:3000");
    assert_eq!(u.base_path, "");
    assert_eq!(u.timeout, Duration::from_secs(30));
    assert_eq!(u.connect_timeout, Duration::from_secs(5));
    let c = hookcast::config::from_yaml(
        "test.yaml",
        "upstream:
  url: http://127.0.0.1:3000/app/
  timeout: 2s
  connect_timeout: 500ms
  pool_idle_timeout: 1m
  pool_max_idle_per_host: 0
",
    )
    .unwrap();
    let u = c.upstream.unwrap();
    assert_eq!(u.base_path, "/app");
    assert_eq!(u.timeout, Duration::from_secs(2));
    assert_eq!(u.connect_timeout, Duration::from_millis(500));
    assert_eq!(u.pool_idle_timeout, Duration::from_secs(60));
    assert_eq!(u.pool_max_idle_per_host, 0);
    assert!(
        hookcast::config::from_yaml("test.yaml", "{}")
            .unwrap()
            .upstream
            .is_none()
    );
}

#[test]
fn bad_upstream_settings_are_errors_at_the_value() {
    for (url, phrase) in [
        (
            "https://app:3000",
            "TLS to the upstream is left to nginx or the ingress",
        ),
        ("ftp://app", "scheme `ftp` is not supported"),
        ("app:3000", "has no scheme"),
        ("http://", "not a URL"),
        ("http://app:3000/x?y=1", "query"),
        ("http://user:pw@app", "credentials"),
        ("not a url", "not a URL"),
    ] {
        let e = config_error(&format!("upstream:\n  url: \"{url}\"\n"));
        assert!(e.starts_with("test.yaml:2:8: upstream.url"), "{url}: {e}");
        assert!(e.contains(phrase), "{url}: {e}");
    }
    let e = config_error("upstream:\n  url: http://app\n  timeout: 30\n");
    assert!(e.starts_with("test.yaml:3:12: upstream.timeout"), "{e}");
    assert!(e.contains("needs a unit"), "{e}");
    let e = config_error("upstream:\n  url: http://app\n  connect_timeout: 0ms\n");
    assert!(
        e.starts_with("test.yaml:3:20: upstream.connect_timeout must be at least"),
        "{e}"
    );
    let e = config_error("upstream:\n  url: http://app\n  tls: true\n");
    assert!(e.starts_with("test.yaml:3:3:"), "{e}");
    assert!(e.contains("tls"), "{e}");
    let e = config_error("upstream:\n  timeout: 5s\n");
    assert!(e.contains("url"), "{e}");
}

#[test]
fn forward_routes_need_an_upstream_and_may_read_the_response() {
    let route = "routes:
  - name: comments
    match: { path: /api/comments }
    mode: forward
    publish: { topic: comments, data: \"{response:/id}\" }
";
    let e = config_error(route);
    assert!(e.starts_with("test.yaml:4:11:"), "{e}");
    assert!(e.contains("no upstream is configured"), "{e}");
    let ok = format!("upstream: {{ url: \"http://app\" }}\n{route}");
    assert_eq!(
        hookcast::config::from_yaml("test.yaml", &ok)
            .unwrap()
            .router
            .len(),
        1
    );
    let publish = ok.replace("mode: forward", "mode: publish");
    assert!(config_error(&publish).contains("can never resolve in mode publish"));
}

// ------------------------------------------------------------ large bodies

/// `len` bytes in 64 KiB frames, made as they are read.
struct Repeat {
    left: u64,
    chunk: Bytes,
}

impl Repeat {
    fn new(len: u64) -> Repeat {
        Repeat {
            left: len,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = upstream::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// Bytes of a body, counted as they arrive and dropped.
async fn count(mut body: Incoming) -> u64 {
    let mut n = 0;
    while let Some(frame) = tokio::time::timeout(PATIENCE, body.frame())
        .await
        .expect("a frame in time")
    {
        if let Ok(d) = frame.expect("no body error").into_data() {
            n += d.len() as u64;
        }
    }
    n
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The real binary, so that its memory is its own.
struct Binary {
    child: std::process::Child,
    addr: SocketAddr,
    _config: TempConfig,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file under the temp dir, removed on drop.
struct TempConfig(std::path::PathBuf);

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn binary(yaml: &str) -> Binary {
    let addr = support::free_addr();
    let port = addr.port();
    let path =
        std::env::temp_dir().join(format!("hookcast-proxy-{}-{port}.yaml", std::process::id()));
    std::fs::write(
        &path,
        format!("listen: \"{addr}\"\nlog: {{ level: warn }}\n{yaml}"),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_hookcast"))
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let b = Binary {
        child,
        addr,
        _config: TempConfig(path),
    };
    support::wait_listening(addr, "hookcast").await;
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_and_download_pass_with_memory_that_does_not_grow_with_them() {
    const SIZE: u64 = 200 * 1000 * 1000;
    let up = Upstream::serve(|req: Request<Incoming>| async move {
        if req.uri().path() == "/upload" {
            let n = count(req.into_body()).await;
            Response::new(full(n.to_string()))
        } else {
            Response::new(Repeat::new(SIZE).boxed())
        }
    })
    .await;
    let hookcast = binary(&upstream::config(up.addr, "")).await;
    let pid = hookcast.child.id();
    let host = hookcast.addr.to_string();
    let request = |method: Method, path: &str, body: upstream::TestBody| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", &host)
            .body(body)
            .unwrap()
    };

    // Warm up, so that the baseline includes the pools and buffers of one transfer.
    let warm = send(
        hookcast.addr,
        request(Method::POST, "/upload", Repeat::new(1 << 20).boxed()),
    )
    .await;
    assert_eq!(reply_of(warm).await.text(), (1u64 << 20).to_string());
    let before = peak_rss(pid);

    let up_resp = send(
        hookcast.addr,
        request(Method::POST, "/upload", Repeat::new(SIZE).boxed()),
    )
    .await;
    assert_eq!(reply_of(up_resp).await.text(), SIZE.to_string());
    let down = send(hookcast.addr, request(Method::GET, "/download", empty())).await;
    assert_eq!(down.headers()["content-length"], SIZE.to_string());
    assert_eq!(count(down.into_body()).await, SIZE);

    let grown = peak_rss(pid).saturating_sub(before);
    eprintln!(
        "peak RSS {} KiB before, grew by {} KiB",
        before >> 10,
        grown >> 10
    );
    assert!(
        grown < 32 << 20,
        "peak memory grew by {} MiB while 2 x 200 MB passed through",
        grown >> 20
    );
}

// ------------------------------------------------------------ more clients

#[tokio::test]
async fn upstream_timeout_starts_when_the_request_body_has_been_sent() {
    // The upstream answers once it has the whole body.
    let up = Upstream::serve(|req: Request<Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Response::new(full(body))
    })
    .await;
    let yaml = format!(
        "upstream:\n  url: \"http://{}\"\n  timeout: 500ms\n",
        up.addr
    );
    let app = TestApp::spawn(&yaml).await;
    let (tx, body) = upstream::channel();
    let pending = tokio::spawn(send(
        app.addr,
        req(&app, Method::POST, "/slow-upload").body(body).unwrap(),
    ));
    tx.send(data("uploaded ")).await.unwrap();
    // A pause longer than upstream.timeout while the client is still sending.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    tx.send(data("slowly")).await.unwrap();
    drop(tx);
    let r = reply_of(pending.await.unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "uploaded slowly");
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_hookcast_and_the_body_passed_on() {
    let (_legacy, app) = with_legacy("").await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        b"PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 25];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(PATIENCE, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap();
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echo["body"], "hello");
    assert!(echoed(&echo, "expect").is_empty());
}

#[tokio::test]
async fn http2_clients_reach_the_upstream_over_http1_with_their_authority_as_host() {
    let (_legacy, app) = with_legacy("").await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::builder()
                .version(http::Version::HTTP_2)
                .uri("http://app.example.com:8080/h2?x=1")
                .header("x-multi", "one")
                .header("x-multi", "two")
                .body(full("h2 body"))
                .unwrap(),
        )
        .await
        .unwrap();
    let r = reply_of(resp).await;
    assert_eq!(r.status, StatusCode::OK);
    let echo = r.json();
    assert_eq!(echo["target"], "/h2?x=1");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["body"], "h2 body");
    assert_eq!(echoed(&echo, "host"), ["app.example.com:8080"]);
    assert_eq!(echoed(&echo, "x-forwarded-host"), ["app.example.com:8080"]);
    assert_eq!(echoed(&echo, "x-multi"), ["one", "two"]);
}

#[tokio::test]
async fn a_proxied_response_in_flight_finishes_during_shutdown() {
    let (up, mut senders) = manual_upstream("text/plain").await;
    let mut app = TestApp::spawn(&upstream::config(up.addr, "shutdown_grace: 10s\n")).await;
    let resp = send(
        app.addr,
        req(&app, Method::GET, "/report").body(empty()).unwrap(),
    )
    .await;
    let tx = senders.recv().await.unwrap();
    let mut body = resp.into_body();
    tx.send(data("part one, ")).await.unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "part one, ");

    let stopped = app.begin_shutdown();
    tx.send(data("part two")).await.unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "part two");
    drop(tx);
    assert_eq!(next_data(&mut body).await, None, "a clean end");
    tokio::time::timeout(PATIENCE, stopped)
        .await
        .expect("hookcast stops once the response is done")
        .unwrap()
        .unwrap();
}

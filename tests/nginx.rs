//! deploy/nginx/hookcast.conf in a real nginx, in front of hookcast and an
//! application: events arrive as published, heartbeats pass, `Last-Event-ID` reaches
//! hookcast, webhooks and proxied requests work; a stream route does the same.
//!
//! Needs nginx (Debian package `nginx`, installed by `.ci/run`) at `/usr/sbin/nginx`
//! or `$HOOKCAST_NGINX`; `HOOKCAST_NGINX=skip` skips these tests, saying so.

mod support;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::*;

/// nginx running a config built around the snippet; killed on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nginx_binary() -> Option<PathBuf> {
    match std::env::var("HOOKCAST_NGINX") {
        Ok(v) if v == "skip" => {
            eprintln!("HOOKCAST_NGINX=skip: the nginx tests did NOT run");
            None
        }
        Ok(v) => Some(PathBuf::from(v)),
        Err(_) => {
            let p = PathBuf::from("/usr/sbin/nginx");
            assert!(
                p.exists(),
                "nginx is needed at /usr/sbin/nginx (apt-get install nginx; .ci/run does), \
                 or set HOOKCAST_NGINX to it, or HOOKCAST_NGINX=skip"
            );
            Some(p)
        }
    }
}

async fn start_nginx(bin: PathBuf, hookcast: SocketAddr, app: SocketAddr) -> Nginx {
    let snippet = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/nginx/hookcast.conf"
    ))
    .unwrap();
    let addr = free_addr();
    let replaced = snippet
        .replace("server 127.0.0.1:8080;", &format!("server {hookcast};"))
        .replace("server 127.0.0.1:3000;", &format!("server {app};"))
        .replace("listen 80;", &format!("listen {addr};"));
    assert_ne!(replaced, snippet);
    let dir = std::env::temp_dir().join(format!(
        "hookcast-nginx-{}-{}",
        std::process::id(),
        addr.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hookcast.conf"), replaced).unwrap();
    let d = dir.display();
    let main = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         include {d}/hookcast.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let conf = dir.join("nginx.conf");
    let test = Command::new(&bin)
        .args(["-t", "-p"])
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&test.stderr)
    );
    let child = Command::new(&bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let nginx = Nginx { child, addr, dir };
    wait_listening(addr, "nginx").await;
    nginx
}

/// The application behind nginx: it names the path it was asked.
async fn app() -> upstream::Upstream {
    upstream::Upstream::serve(|req: http::Request<hyper::body::Incoming>| async move {
        http::Response::new(upstream::full(format!("app saw {}", req.uri().path())))
    })
    .await
}

/// Posts each body through nginx and reads it from `stream` before the next is
/// sent; returns the event ids.
async fn publish_each(
    front: SocketAddr,
    stream: &mut SseStream,
    path: &str,
    bodies: &[&str],
) -> Vec<String> {
    let mut ids = Vec::new();
    for body in bodies {
        let r = request(
            front,
            Method::POST,
            path,
            &[],
            Bytes::from(body.to_string()),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let ev = stream.next_event().await;
        assert_eq!(ev.data, *body);
        ids.push(ev.id);
    }
    ids
}

#[tokio::test]
async fn the_snippet_streams_events_heartbeats_and_replays_and_passes_the_rest() {
    let Some(bin) = nginx_binary() else { return };
    let app_upstream = app().await;
    let yaml = config(&format!(
        "upstream:\n  url: \"http://{}\"\n",
        app_upstream.addr
    ))
    .replace("heartbeat: 15s", "heartbeat: 1s");
    let hookcast = TestApp::spawn(&yaml).await;
    let nginx = start_nginx(bin, hookcast.addr, app_upstream.addr).await;
    let front = nginx.addr;

    let mut stream = open_stream(front, "/events?topic=room.a", &[]).await;
    assert_eq!(stream.status, StatusCode::OK);
    // Each event is read before the next is sent: nothing is held back.
    let ids = publish_each(
        front,
        &mut stream,
        "/hooks/a",
        &["event 0", "event 1", "event 2"],
    )
    .await;
    // With nothing to send, heartbeats pass through.
    let heartbeat = loop {
        match stream.next_item_within(Duration::from_secs(5)).await {
            Some(Item::Comment(c)) if c.contains("keepalive") => break true,
            Some(_) => continue,
            None => break false,
        }
    };
    assert!(heartbeat, "no heartbeat through nginx");
    drop(stream);

    // A reconnect with Last-Event-ID gets what came after it.
    let mut resumed = open_stream(
        front,
        "/events?topic=room.a",
        &[("Last-Event-ID", ids[0].as_str())],
    )
    .await;
    let replayed = resumed.events(2).await;
    assert_eq!(replayed[0].data, "event 1");
    assert_eq!(replayed[1].data, "event 2");

    // Anything else reaches the application.
    let r = request(front, Method::GET, "/orders/7", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "app saw /orders/7");
    hookcast.shutdown().await;
}

#[tokio::test]
async fn a_stream_route_streams_and_replays_through_the_snippet() {
    let Some(bin) = nginx_binary() else { return };
    let app_upstream = app().await;
    let yaml = config(&format!(
        "upstream:\n  url: \"http://{}\"\nstreams:\n  - name: matches\n    path: /matches\n    topics: [\"room.{{header:org-id}}\"]\n",
        app_upstream.addr
    ));
    let hookcast = TestApp::spawn(&yaml).await;
    let nginx = start_nginx(bin, hookcast.addr, app_upstream.addr).await;
    let front = nginx.addr;

    let mut stream = open_stream(front, "/matches", &[("org-id", "7")]).await;
    assert_eq!(stream.status, StatusCode::OK);
    let ids = publish_each(front, &mut stream, "/hooks/7", &["goal 0", "goal 1"]).await;
    drop(stream);
    let mut resumed = open_stream(
        front,
        "/matches",
        &[("org-id", "7"), ("Last-Event-ID", ids[0].as_str())],
    )
    .await;
    assert_eq!(resumed.next_event().await.data, "goal 1");
    // Other paths are still the application's.
    let r = request(front, Method::GET, "/matches/history", &[], Bytes::new()).await;
    assert_eq!(r.text(), "app saw /matches/history");
    hookcast.shutdown().await;
}

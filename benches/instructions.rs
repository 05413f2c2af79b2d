//! The hot paths, one scenario per run, for counting instructions under valgrind
//! (`scripts/instructions`): `instructions SCENARIO ITERATIONS`. Single-threaded
//! and free of timers, so two runs execute the same instructions give or take
//! hash seeds. Without arguments (as `cargo test --all-targets` runs it) every
//! scenario runs a few iterations, so the harness itself stays tested.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hookcast::app::App;
use hookcast::hub::{Direct, Feed, Hub, NewEvent, Recv, Subscription};
use hookcast::route::{Lookup, Router};
use hookcast::template::{Input, Template};
use hookcast::topic::Filter;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A scenario: its name, and what it runs for a number of iterations.
type Scenario = (&'static str, fn(u64));

const SCENARIOS: &[Scenario] = &[
    ("publish", publish),
    ("publish_100k_patterns", publish_100k_patterns),
    ("delivery", delivery),
    ("delivery_pattern", delivery_pattern),
    ("delivery_direct", delivery_direct),
    ("template", template),
    ("route", route),
    ("proxy", proxy),
    ("webhook", webhook),
    ("webhook_http", webhook_http),
];

/// Subscribers per event in `delivery`; the script divides by it.
const FAN_OUT: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [name, n] => {
            let n: u64 = n.parse().expect("ITERATIONS is a number");
            let Some((_, run)) = SCENARIOS.iter().find(|(s, _)| s == name) else {
                panic!("unknown scenario {name}");
            };
            run(n);
        }
        _ => SCENARIOS.iter().for_each(|(_, run)| run(10)),
    }
}

fn subscribe(hub: &Arc<Hub>, filter: &str) -> Subscription {
    let filters = vec![Filter::parse(filter).unwrap()];
    hub.subscribe(filters, None, None).unwrap()
}

fn event(topic: &str) -> NewEvent {
    NewEvent {
        topics: vec![topic.to_owned()],
        event: Some("push".into()),
        data: r#"{"repository":{"full_name":"acme/api"},"ref":"refs/heads/main","n":1}"#.into(),
        dedupe: None,
    }
}

/// Takes one live event, as a stream's body does.
fn take(sub: &mut Subscription, cx: &mut Context<'_>) {
    match sub.poll_recv(cx) {
        Poll::Ready(Recv::Event(ev)) => {
            black_box(ev.chunk.wire().clone());
        }
        _ => panic!("an event was queued"),
    }
}

/// One publish to a topic with one subscriber, among 1,000 other topics' and
/// 1,000 patterns' subscribers; history full, so every publish also trims.
fn publish(n: u64) {
    publish_among(n, 1000);
}

/// The same among 100,000 patterns, some sharing the topic's first segments:
/// the pattern index keeps it within a few percent of `publish`.
fn publish_100k_patterns(n: u64) {
    publish_among(n, 100_000);
}

fn publish_among(n: u64, patterns: usize) {
    let hub = Hub::new(common::limits());
    let topics = (0..1000).map(|i| format!("orders.{i}"));
    let patterns = (0..patterns).map(|i| match i % 3 {
        0 => format!("tenant.{i}.>"),
        1 => format!("repo.*.p{i}"),
        _ => format!("repo.acme.{i}.*"),
    });
    let _others: Vec<_> = topics
        .chain(patterns)
        .map(|f| subscribe(&hub, &f))
        .collect();
    let mut sub = subscribe(&hub, "repo.acme.api");
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        black_box(hub.publish(event("repo.acme.api")));
        take(&mut sub, &mut cx);
    }
}

/// One event to `FAN_OUT` subscribers, each taking it.
fn delivery(n: u64) {
    let hub = Hub::new(common::limits());
    let mut subs: Vec<_> = (0..FAN_OUT).map(|_| subscribe(&hub, "room.1")).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        hub.publish(event("room.1"));
        subs.iter_mut().for_each(|s| take(s, &mut cx));
    }
}

/// The same to `FAN_OUT` subscribers of a pattern, whose queues take events
/// from every shard and release them by the hub's watermark.
fn delivery_pattern(n: u64) {
    let hub = Hub::new(common::limits());
    let mut subs: Vec<_> = (0..FAN_OUT).map(|_| subscribe(&hub, "room.*")).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        hub.publish(event("room.1"));
        subs.iter_mut().for_each(|s| take(s, &mut cx));
    }
}

/// A stream writer whose socket takes everything: what the fan-out's own
/// delivery costs in the hub, without the system call.
#[derive(Debug)]
struct Sink;

impl Direct for Sink {
    fn deliver(&self, feed: &mut Feed<'_>) -> bool {
        while let Some(ev) = feed.take() {
            black_box(ev.chunk.wire().clone());
        }
        feed.parked()
    }
}

/// One event to `FAN_OUT` parked subscribers, each written to by the publish
/// itself (`hub::Direct`) rather than taking it from its queue.
fn delivery_direct(n: u64) {
    let hub = Hub::new(common::limits());
    let mut subs: Vec<_> = (0..FAN_OUT).map(|_| subscribe(&hub, "room.1")).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for s in &mut subs {
        s.deliver_through(Arc::new(Sink));
        // Parked: its waker is in its queue, as a writer waiting for events leaves it.
        assert!(s.poll_recv(&mut cx).is_pending());
    }
    for _ in 0..n {
        hub.publish(event("room.1"));
    }
    drop(subs);
}

/// A topic and an event name rendered from a GitHub-like request.
fn template(n: u64) {
    let topic = Template::parse("repo.{json:/repository/full_name}.{path:tenant}").unwrap();
    let name = Template::parse("{header:X-GitHub-Event}").unwrap();
    let body =
        br#"{"repository":{"full_name":"acme/api","private":false},"ref":"refs/heads/main"}"#;
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", HeaderValue::from_static("push"));
    let params = [("tenant".into(), "acme".to_owned())];
    let input = Input {
        path_params: &params,
        query: None,
        headers: &headers,
        body,
        json: Some(&json),
        response: None,
        identity: None,
    };
    for _ in 0..n {
        black_box(topic.render(black_box(&input)).unwrap());
        black_box(name.render(black_box(&input)).unwrap());
    }
}

/// The route chosen among 20 for a request that matches the last one's path.
fn route(n: u64) {
    let mut yaml = String::from("routes:\n");
    for i in 0..20 {
        yaml.push_str(&format!(
            "  - name: r{i}\n    match:\n      path: \"/hooks/{{tenant}}/s{i}\"\n      \
             headers: {{ X-GitHub-Event: \"*\" }}\n    publish:\n      topic: \"t.{{path:tenant}}\"\n"
        ));
    }
    let config = hookcast::config::from_yaml("bench.yaml", &yaml).unwrap();
    let router: &Router = &config.router;
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", HeaderValue::from_static("push"));
    for _ in 0..n {
        let Lookup::Candidates(candidates) =
            router.lookup(&Method::POST, black_box("/hooks/acme/s19"))
        else {
            panic!("the route matches");
        };
        let chosen = candidates.iter().find(|(r, _)| r.accepts(&headers, None));
        black_box(chosen.map(|(r, params)| (r.name.len(), params.len())));
    }
}

/// The upstream's answer in `proxy`: what a cheap app (nginx `return 200`) sends.
const UPSTREAM_ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nhello, world\n";

/// Runs `work` on a one-thread runtime with logging at level warn, as the
/// bench scripts run hookcast.
fn on_one_thread(work: impl std::future::Future<Output = ()>) {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::sink)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work);
}

/// Starts hookcast on `listener` with the config `yaml` and connects a client.
async fn serve(listener: TcpListener, yaml: &str) -> TcpStream {
    let config = hookcast::config::from_yaml("bench.yaml", yaml).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hookcast::server::run(
        listener,
        config,
        std::future::pending(),
    ));
    let client = TcpStream::connect(addr).await.unwrap();
    client.set_nodelay(true).unwrap();
    client
}

/// One GET proxied to the upstream over a keep-alive connection: the whole of
/// hookcast's path (accept loop, service, proxy, pooled client), on one thread,
/// with loopback sockets both sides and a client and upstream that only copy
/// bytes. Logging as in `bench/proxy.sh` (level warn).
fn proxy(n: u64) {
    on_one_thread(async {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (conn, _) = upstream.accept().await.unwrap();
                tokio::spawn(answer_heads(conn));
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let yaml = format!("listen: \"{addr}\"\nupstream:\n  url: \"http://{up}\"\n");
        let mut client = serve(listener, &yaml).await;
        let request = format!(
            "GET /app/page?id=7 HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
        );
        let mut buf = Vec::with_capacity(4096);
        // One first request opens the pooled upstream connection.
        for _ in 0..n + 1 {
            client.write_all(request.as_bytes()).await.unwrap();
            read_answer(&mut client, &mut buf, 200).await;
        }
    });
}

/// The upstream of `proxy`: answers every request head on `conn`.
async fn answer_heads(mut conn: TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if conn.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
            continue;
        };
        buf.drain(..end + 4);
        if conn.write_all(UPSTREAM_ANSWER).await.is_err() {
            return;
        }
    }
}

/// bench/run.sh's webhook (S4, W) over a keep-alive connection: the whole of
/// hookcast's path (accept loop, hyper, service, ingest, the memory broker, the
/// 202 written), on one thread, with a client that only copies bytes; logging
/// as in bench/run.sh (level warn).
fn webhook_http(n: u64) {
    on_one_thread(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let yaml = format!(
            "listen: \"{addr}\"\nsse:\n  history: 1000\nroutes:\n  - name: pub\n    \
             match: {{ path: \"/pub/{{topic}}\" }}\n    publish: {{ topic: \"{{path:topic}}\" }}\n"
        );
        let mut client = serve(listener, &yaml).await;
        let body = r#"{"seq":1,"ts_ns":0,"topic":"bench0","text":"a webhook of ordinary size"}"#;
        let request = format!(
            "POST /pub/bench0 HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\
             Content-Type: application/json\r\n\r\n{body}",
            body.len()
        );
        let mut buf = Vec::with_capacity(4096);
        // One first request: the connection's buffers and the route's counters.
        for _ in 0..n + 1 {
            client.write_all(request.as_bytes()).await.unwrap();
            read_answer(&mut client, &mut buf, 202).await;
        }
    });
}

/// Reads one whole response (a head with `content-length`, then its body).
async fn read_answer(conn: &mut TcpStream, buf: &mut Vec<u8>, status: u16) {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(buf).unwrap() {
            assert_eq!(resp.code, Some(status), "{}", String::from_utf8_lossy(buf));
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .expect("a content-length");
            if buf.len() >= head + len {
                buf.drain(..head + len);
                return;
            }
        }
        assert_ne!(conn.read_buf(buf).await.unwrap(), 0, "hookcast closed");
    }
}

/// One webhook through the handler hyper calls (`ingest::handle`, after the route
/// lookup `service` does), from the request to the 202, published into the memory
/// broker: bench/run.sh's route, history and wrk request (S4, W), with no
/// subscriber. The body is in memory rather than on a socket, and building the
/// request (what hyper's parser does) is counted too.
fn webhook(n: u64) {
    let yaml = "sse:\n  history: 1000\nroutes:\n  - name: pub\n    \
                match: { path: \"/pub/{topic}\" }\n    publish: { topic: \"{path:topic}\" }\n";
    let config = hookcast::config::from_yaml("bench.yaml", yaml).unwrap();
    let hub = Hub::new(hookcast::broker::hub_limits(&config));
    let app = App::new(config, hub);
    let body = Bytes::from_static(
        br#"{"seq":1,"ts_ns":0,"topic":"bench0","text":"a webhook of ordinary size"}"#,
    );
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        let req = Request::post("/pub/bench0")
            .header("host", "127.0.0.1:18080")
            .header("content-length", "75")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        let lookup = app.config.router.lookup(req.method(), req.uri().path());
        let handled = std::pin::pin!(hookcast::ingest::handle(&app, req, lookup));
        let Poll::Ready(resp) = handled.poll(&mut cx) else {
            panic!("a webhook into the memory broker is answered at once");
        };
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        black_box(resp);
    }
}

//! The fault suite: what holds when things go wrong, over real processes and
//! sockets. A real `redis-server` (on a free port) paused with SIGSTOP and
//! killed; the real binary under a low descriptor limit, behind a reader that
//! stopped reading, and through connection churn with resets. Each test prints
//! its figures (`cargo test --test faults -- --nocapture`); the README's
//! "Guarantees" section quotes them.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::broker::{BrokerServer, Kind};
use support::{
    AdminApp, PATIENCE, SseStream, TestApp, free_port, read_to_close, request, subscribe_ready,
    wait_listening,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_hookcast");

// ---------------------------------------------------------------------------
// Redis paused, Redis killed

fn redis_yaml(redis: &BrokerServer) -> String {
    let broker = redis.broker_yaml(&redis.url(), "1s");
    support::broker::replica_yaml("", &broker, "")
}

/// What one webhook got.
#[derive(Debug)]
struct Answer {
    seq: u64,
    status: StatusCode,
    message: String,
    /// When the answer came (ms since the epoch).
    answered_at: u64,
}

/// Posts webhooks numbered 0, 1, 2… every 10 ms, alternately to `a` and `b`,
/// each on its own connection and without waiting for the previous answer,
/// until `stop` is set; returns every answer.
fn publish_steadily(
    a: SocketAddr,
    b: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    tokio::spawn(async move {
        let mut pending = Vec::new();
        let mut seq = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let addr = if seq.is_multiple_of(2) { a } else { b };
            pending.push(tokio::spawn(async move {
                let r = request(
                    addr,
                    Method::POST,
                    "/hooks/room",
                    &[],
                    Bytes::from(seq.to_string()),
                )
                .await;
                let message = if r.status == StatusCode::ACCEPTED {
                    String::new()
                } else {
                    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable");
                    assert_eq!(r.headers["retry-after"], "5");
                    r.json()["message"].as_str().unwrap().to_owned()
                };
                Answer {
                    seq,
                    status: r.status,
                    message,
                    answered_at: epoch_ms(),
                }
            }));
            seq += 1;
        }
        let mut answers = Vec::new();
        for p in pending {
            answers.push(p.await.unwrap());
        }
        answers
    })
}

/// Publishes `end`, retrying while Redis comes back.
async fn publish_end(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let r = app.post("/hooks/room", &[], "end").await;
        if r.status == StatusCode::ACCEPTED {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `stream` up to the event `end`; returns the events before it (id, data).
async fn read_through_end(stream: &mut SseStream) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        let e = stream.next_event().await;
        if e.data == "end" {
            return got;
        }
        got.push((e.id, e.data));
    }
}

/// Redis stream ids (`<ms>-<seq>`), compared as numbers.
fn redis_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("a Redis stream id");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// How the 503s of a run were worded.
#[derive(Debug, Default, PartialEq, Eq)]
struct Refusals {
    /// "Nothing was published, and nothing will be."
    certain: usize,
    /// Redis stopped answering.
    stalled: usize,
    /// Of those, stored by Redis in the instant before it froze.
    stalled_stored_before: usize,
    /// Of those, stored by Redis after it woke, before their deadline, with
    /// an answer that came too late (a starved host).
    stalled_stored_late: usize,
    /// The connection broke and Redis could not be asked.
    unknown: usize,
}

/// Every accepted webhook is on the stream once, in id order. None refused as
/// "not stored" is; one refused because Redis stopped answering is only if
/// Redis stored it before the 503 was sent: before `froze_at` (ms since the
/// epoch), its answer frozen with it, or, on a host too busy to read the
/// answer in time, before its deadline. Nothing is stored after its 503.
fn check_delivery(
    name: &str,
    answers: &[Answer],
    got: &[(String, String)],
    froze_at: u64,
) -> Refusals {
    let accepted: HashSet<u64> = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .map(|a| a.seq)
        .collect();
    let mut seen = HashSet::new();
    for w in got.windows(2) {
        assert!(
            redis_id(&w[0].0) < redis_id(&w[1].0),
            "{name}: ids in order: {w:?}"
        );
    }
    let mut stored_at = BTreeMap::new();
    for (id, data) in got {
        let seq: u64 = data.parse().unwrap();
        assert!(seen.insert(seq), "{name}: webhook {seq} delivered twice");
        stored_at.insert(seq, redis_id(id).0);
    }
    let missing: Vec<_> = accepted.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{name}: accepted but never delivered: {missing:?}"
    );
    let mut r = Refusals::default();
    for a in answers.iter().filter(|a| a.status != StatusCode::ACCEPTED) {
        if a.message.contains("outcome is unknown") {
            r.unknown += 1;
        } else if a.message.contains("stopped answering") {
            r.stalled += 1;
            if let Some(&at) = stored_at.get(&a.seq) {
                assert!(
                    at <= a.answered_at,
                    "{name}: webhook {} was answered 503 at {} and stored later, at {at}",
                    a.seq,
                    a.answered_at
                );
                if at <= froze_at {
                    r.stalled_stored_before += 1;
                } else {
                    r.stalled_stored_late += 1;
                }
            }
        } else {
            assert!(
                a.message.contains("nothing will be"),
                "{name}: {}",
                a.message
            );
            assert!(
                !seen.contains(&a.seq),
                "{name}: webhook {} was answered 503 (not stored) and published anyway",
                a.seq
            );
            r.certain += 1;
        }
    }
    r
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn wait_ready(app: &AdminApp, want: StatusCode, what: &str) -> Duration {
    let started = tokio::time::Instant::now();
    loop {
        if app.admin_get("/readyz").await.status == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < PATIENCE, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two replicas on one Redis (`a` with an admin listener), each with a stream open.
struct Replicas {
    a: AdminApp,
    b: TestApp,
    at_a: SseStream,
    at_b: SseStream,
}

impl Replicas {
    async fn start(redis: &BrokerServer) -> Replicas {
        let a = AdminApp::spawn(&redis_yaml(redis)).await;
        let b = TestApp::spawn(&redis_yaml(redis)).await;
        let at_a = subscribe_ready(&a.app, "topic=room.room", &[]).await;
        let at_b = subscribe_ready(&b, "topic=room.room", &[]).await;
        wait_ready(&a, StatusCode::OK, "ready before the fault").await;
        Replicas { a, b, at_a, at_b }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// SIGKILL, then a new redis-server on the same port and data directory.
    Kill,
}

/// What a steady flow of webhooks met around a fault.
struct Outcome {
    answers: Vec<Answer>,
    refused: usize,
    /// When Redis was frozen or killed (ms since the epoch; the signal was sent).
    froze_at: u64,
    not_ready_after: Duration,
    ready_after: Duration,
}

impl Outcome {
    /// The figures the README's "Guarantees" section quotes.
    fn summary(&self, r: &Refusals) -> String {
        format!(
            "{} webhooks, {} answered 202 and delivered once in order; {} answered 503 ({} \"nothing will be\", {} \"stopped answering\" of which {} stored in the instant before the fault and {} before their deadline with a late answer, {} \"outcome unknown\"), none stored after its 503; readyz 503 after {} ms, 200 again {} ms after recovery",
            self.answers.len(),
            self.answers.len() - self.refused,
            self.refused,
            r.certain,
            r.stalled,
            r.stalled_stored_before,
            r.stalled_stored_late,
            r.unknown,
            self.not_ready_after.as_millis(),
            self.ready_after.as_millis(),
        )
    }
}

/// Runs `fault` for `hold` under a steady flow of webhooks (from half a second
/// before to half a second after), then publishes `end`. `/readyz` must turn 503
/// during the fault and 200 after it.
async fn under_fault(
    redis: &mut BrokerServer,
    r: &Replicas,
    fault: Fault,
    hold: Duration,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publish_steadily(r.a.app.addr, r.b.addr, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let began = tokio::time::Instant::now();
    match fault {
        Fault::Pause => redis.pause(),
        Fault::Kill => redis.kill(),
    }
    let froze_at = epoch_ms();
    let not_ready_after = wait_ready(
        &r.a,
        StatusCode::SERVICE_UNAVAILABLE,
        "readyz 503 during the fault",
    )
    .await;
    tokio::time::sleep_until(began + hold).await;
    let ended = tokio::time::Instant::now();
    match fault {
        Fault::Pause => redis.resume(),
        Fault::Kill => redis.restart().await,
    }
    wait_ready(&r.a, StatusCode::OK, "readyz 200 once Redis answers").await;
    let ready_after = ended.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = publishing.await.unwrap();
    let refused = answers
        .iter()
        .filter(|a| a.status != StatusCode::ACCEPTED)
        .count();
    assert!(refused > 0, "{fault:?}: webhooks were refused");
    publish_end(&r.a.app).await;
    Outcome {
        answers,
        refused,
        froze_at,
        not_ready_after,
        ready_after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_paused_past_the_timeout_publishes_nothing_it_refused() {
    let mut redis = BrokerServer::start(Kind::Redis).await;
    let mut r = Replicas::start(&redis).await;
    // Paused three times broker.timeout, as a stalled Redis would be.
    let o = under_fault(&mut redis, &r, Fault::Pause, Duration::from_secs(3)).await;
    let got_a = read_through_end(&mut r.at_a).await;
    let got_b = read_through_end(&mut r.at_b).await;
    let refusals = check_delivery("replica a", &o.answers, &got_a, o.froze_at);
    check_delivery("replica b", &o.answers, &got_b, o.froze_at);
    assert_eq!(refusals.unknown, 0, "a pause breaks no connection");
    assert!(
        refusals.stalled > 0,
        "webhooks sent during the pause: {refusals:?}"
    );
    assert_eq!(
        got_a, got_b,
        "both replicas deliver the same events in one order"
    );
    eprintln!(
        "faults: redis paused 3 s (broker.timeout 1s), two replicas delivering the same events in one order: {}",
        o.summary(&refusals)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_from_its_append_only_file() {
    // Without persistence, a kill loses what Redis acknowledged and had not yet
    // handed to every reader (the README's "Durability is Redis's").
    let mut redis = BrokerServer::start_persistent_redis().await;
    let mut r = Replicas::start(&redis).await;
    let o = under_fault(&mut redis, &r, Fault::Kill, Duration::from_millis(1000)).await;
    let got = read_through_end(&mut r.at_b).await;
    let refusals = check_delivery("replica b", &o.answers, &got, o.froze_at);
    eprintln!(
        "faults: redis (appendfsync always) killed for 1 s and restarted: {}",
        o.summary(&refusals)
    );
}

/// Where [`CuttingProxy`] cuts the connection that carries the next publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Before Redis receives it.
    BeforeRedis,
    /// After Redis ran it and answered, before the answer reaches hookcast.
    AfterAnswer,
}

/// A TCP proxy in front of Redis that, once armed, cuts the connection carrying
/// the next publish script (`EVALSHA`) at the chosen point.
struct CuttingProxy {
    addr: SocketAddr,
    armed: Arc<std::sync::Mutex<Option<Cut>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    async fn start(redis: &BrokerServer) -> CuttingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = SocketAddr::from(([127, 0, 0, 1], redis.port));
        let armed = Arc::new(std::sync::Mutex::new(None));
        let task = tokio::spawn({
            let armed = armed.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server = TcpStream::connect(upstream).await.unwrap();
                    tokio::spawn(Self::pump(client, server, armed.clone()));
                }
            }
        });
        CuttingProxy { addr, armed, task }
    }

    fn arm(&self, cut: Cut) {
        *self.armed.lock().unwrap() = Some(cut);
    }

    async fn pump(
        mut client: TcpStream,
        mut server: TcpStream,
        armed: Arc<std::sync::Mutex<Option<Cut>>>,
    ) {
        let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
        loop {
            tokio::select! {
                n = client.read(&mut up) => {
                    let Ok(n @ 1..) = n else { return };
                    let publish = up[..n].windows(7).any(|w| w == b"EVALSHA");
                    let cut = if publish { armed.lock().unwrap().take() } else { None };
                    if cut == Some(Cut::BeforeRedis) {
                        return;
                    }
                    if server.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                    if cut == Some(Cut::AfterAnswer) {
                        // Redis's answer proves it ran; hookcast never sees it.
                        let _ = server.read(&mut down).await;
                        return;
                    }
                }
                n = server.read(&mut down) => {
                    let Ok(n @ 1..) = n else { return };
                    if client.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_cut_off_mid_flight_is_settled_by_its_receipt() {
    let redis = BrokerServer::start(Kind::Redis).await;
    let proxy = CuttingProxy::start(&redis).await;
    let yaml = redis_yaml(&redis).replace(&redis.url(), &format!("redis://{}/0", proxy.addr));
    let app = TestApp::spawn(&yaml).await;
    let mut stream = subscribe_ready(&app, "topic=room.room", &[]).await;
    // The first publish loads the script; the cuts watch for EVALSHA after it.
    let r = app.post("/hooks/room", &[], "warm").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());

    // Redis ran it, but the answer was lost with the connection: asked
    // afterwards, Redis holds its receipt, so the webhook is accepted after all.
    proxy.arm(Cut::AfterAnswer);
    let ran = app.post("/hooks/room", &[], "ran").await;
    assert_eq!(ran.status, StatusCode::ACCEPTED, "{}", ran.text());
    let ran_id = ran.json()["id"].as_str().unwrap().to_owned();

    // Cut before Redis saw it: settled as never stored, and said so.
    proxy.arm(Cut::BeforeRedis);
    let lost = app.post("/hooks/room", &[], "lost").await;
    lost.assert_error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable");
    let message = lost.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("nothing will be"), "{message}");

    publish_end(&app).await;
    let got = read_through_end(&mut stream).await;
    let datas: Vec<&str> = got.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        datas,
        ["warm", "ran"],
        "the one that ran once, the other never"
    );
    assert_eq!(got[1].0, ran_id, "with the id its answer gave");
    eprintln!(
        "faults: a publish whose connection broke after Redis ran it answered 202 with its id (delivered once); one cut before Redis saw it answered 503 \"nothing will be\" and never appeared"
    );
}

// ---------------------------------------------------------------------------
// The real binary: memory, descriptors, churn

/// hookcast as its own process, with its logs in a file.
struct Binary {
    child: std::process::Child,
    addr: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

impl Binary {
    /// Starts the binary with `yaml`, under at most `max_fds` open files when given.
    async fn start(yaml: &str, max_fds: Option<u32>) -> Binary {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let tag = format!("hookcast-faults-{}-{}", std::process::id(), addr.port());
        let config = std::env::temp_dir().join(format!("{tag}.yaml"));
        let log = std::env::temp_dir().join(format!("{tag}.log"));
        std::fs::write(
            &config,
            format!(
                "listen: \"{addr}\"\nadmin:\n  listen: \"{admin}\"\nlog: {{ level: info }}\n{yaml}"
            ),
        )
        .unwrap();
        let limit = max_fds.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{limit}exec \"$0\" --config \"$1\""))
            .arg(BIN)
            .arg(&config)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let b = Binary {
            child,
            addr,
            admin,
            config,
            log,
        };
        wait_listening(admin, "hookcast").await;
        b
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of `/proc/<pid>/status`, in bytes (`VmRSS`, `VmHWM`).
    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in /proc status"));
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    async fn metric(&self, name: &str) -> f64 {
        let r = request(self.admin, Method::GET, "/metrics", &[], Bytes::new()).await;
        let text = r.text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    async fn post(&self, path: &str, body: impl Into<Bytes>) -> StatusCode {
        request(self.addr, Method::POST, path, &[], body.into())
            .await
            .status
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.log);
    }
}

const ROUTE: &str = r#"
routes:
  - name: room
    match:
      path: "/hooks/{room}"
    publish:
      topic: "room.{path:room}"
"#;

/// A stream request on a socket whose receive buffer is small, that is never read.
async fn stalled_reader(addr: SocketAddr, head: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_under_1_mib_events_is_cut_with_memory_bounded() {
    const EVENT: usize = 1 << 20;
    const EVENTS: usize = 80;
    const HISTORY: u64 = 4 << 20;
    const QUEUE: u64 = 8 << 20;
    let h = Binary::start(
        &format!(
            "sse:\n  history_bytes: 4MiB\n  subscriber_queue_bytes: 8MiB\nlimits:\n  max_body: 2MiB\n{ROUTE}"
        ),
        None,
    )
    .await;
    // Warm up with one event, so the baseline includes a webhook's buffers.
    assert_eq!(
        h.post("/hooks/warm", "x".repeat(EVENT)).await,
        StatusCode::ACCEPTED
    );
    let baseline = h.status_kib("VmRSS");

    // One stalled reader served straight on the socket, one through hyper (its
    // stream request follows another request on a keep-alive connection).
    let host = h.addr;
    let mut direct = stalled_reader(
        h.addr,
        &format!("GET /events?topic=room.big HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await;
    let mut hyper = stalled_reader(
        h.addr,
        &format!(
            "GET /nothing-here HTTP/1.1\r\nHost: {host}\r\n\r\nGET /events?topic=room.big HTTP/1.1\r\nHost: {host}\r\n\r\n"
        ),
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while h.metric("hookcast_subscribers").await < 2.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both readers subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..EVENTS {
        let mut body = format!("{i:05}:");
        body.extend(std::iter::repeat_n('x', EVENT - body.len()));
        assert_eq!(h.post("/hooks/big", body).await, StatusCode::ACCEPTED);
    }
    let peak = h.status_kib("VmHWM");
    let slow = h
        .metric("hookcast_subscribers_dropped_total{reason=\"slow\"}")
        .await;
    let published = (EVENTS * EVENT) as u64;

    // The README's bound ("Memory"): history, plus per stalled subscriber its
    // queue and what its writer holds (64 KiB and one event), plus a webhook in
    // flight (its body, its data, its encoded event), plus allocator slack.
    let event = EVENT as u64 + 64;
    let in_flight = 64 * 1024 + event;
    let bound = HISTORY + 2 * (QUEUE + in_flight) + 3 * event + (16 << 20);
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "faults: 2 stalled readers (direct and hyper), {EVENTS} events of 1 MiB: {slow} cut and counted slow; peak RSS {} MiB over a {} MiB baseline (+{} MiB; bound {} MiB; without the byte bound the queues would pin all {} MiB)",
        peak >> 20,
        baseline >> 20,
        growth >> 20,
        bound >> 20,
        published >> 20,
    );
    assert!(
        growth <= bound,
        "peak RSS grew {} MiB, over the bound of {} MiB",
        growth >> 20,
        bound >> 20
    );
    assert_eq!(slow, 2.0, "both stalled readers cut and counted as slow");
    // Whether each ended with HTTP/1.1's last chunk (a clean end) rather than being cut.
    let (direct_bytes, direct_clean) = {
        let c = read_to_close(&mut direct).await;
        (c.bytes.len(), c.ends_with_last_chunk())
    };
    let (hyper_bytes, hyper_clean) = {
        let c = read_to_close(&mut hyper).await;
        (c.bytes.len(), c.ends_with_last_chunk())
    };
    assert!(!direct_clean && !hyper_clean, "a cut is not a clean end");
    for got in [direct_bytes, hyper_bytes] {
        assert!(
            (got as u64) < published / 2,
            "cut, not served everything: {got} bytes"
        );
    }
    eprintln!(
        "faults: the stalled readers were cut after {} and {} KiB reached their sockets",
        direct_bytes / 1024,
        hyper_bytes / 1024
    );
    assert_eq!(h.metric("hookcast_subscribers").await, 0.0);
}

/// Opens a stream request; true if served (200), false if the connection was
/// closed without an answer. Panics if it hangs.
async fn try_stream(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET /events?topic=room.a HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            Err(_) => panic!("a connection was left hanging without an answer"),
            Ok(Ok(0)) | Ok(Err(_)) => {
                assert!(got.is_empty(), "closed after a partial answer");
                return None;
            }
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    assert!(
                        got.starts_with(b"HTTP/1.1 200"),
                        "{}",
                        String::from_utf8_lossy(&got)
                    );
                    return Some(s);
                }
            }
        }
    }
}

/// Sends a webhook on a new connection; `Some(status)` if answered, `None` if
/// the connection was closed first. Panics if it hangs.
async fn raw_webhook(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("the kernel accepts the connection");
    let req = format!(
        "POST /hooks/a HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return None;
    }
    let mut got = Vec::new();
    match tokio::time::timeout(PATIENCE, s.read_to_end(&mut got)).await {
        Err(_) => panic!("the webhook's connection was left hanging"),
        Ok(_) if got.is_empty() => None,
        Ok(_) => {
            let line = String::from_utf8_lossy(&got[..got.len().min(12)]).into_owned();
            Some(line[9..12].parse().unwrap())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_closes_new_connections_and_recovers() {
    const LIMIT: u32 = 64;
    let h = Binary::start(ROUTE, Some(LIMIT)).await;
    let baseline = h.open_fds();

    // More streams than descriptors: each is served or closed at once.
    let mut open = Vec::new();
    let mut closed = 0;
    for _ in 0..LIMIT + 16 {
        match try_stream(h.addr).await {
            Some(s) => open.push(s),
            None => closed += 1,
        }
    }
    assert!(closed > 0, "the limit was reached");
    // Out of descriptors: a webhook is closed at once, not left waiting.
    assert_eq!(raw_webhook(h.addr).await, None);
    // The config watcher reads its file once a second; at the limit it cannot.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(raw_webhook(h.addr).await, None);

    let served = open.len();
    drop(open);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while h.open_fds() > baseline {
        assert!(
            tokio::time::Instant::now() < deadline,
            "descriptors released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Served again: a client retrying is answered (the first try may still meet
    // the end of the episode while the last streams close).
    let mut tries = 1;
    while raw_webhook(h.addr).await != Some(202) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not serving again:\n{}",
            h.log()
        );
        tries += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let log = h.log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("out of file descriptors"),
        1,
        "one warning per episode:\n{log}"
    );
    assert!(count("cannot read the configuration files") <= 1, "{log}");
    assert_eq!(
        count("configuration reload"),
        0,
        "no reload attempted:\n{log}"
    );
    assert_eq!(
        count("configuration reloaded"),
        0,
        "no spurious reload:\n{log}"
    );
    eprintln!(
        "faults: {LIMIT} descriptors: {served} streams served, {closed} connections and 2 webhooks closed at once (none left hanging), 1 warning logged, no reload; after the streams closed, descriptors back to {baseline} and a webhook answered 202 at try {tries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_churn_with_resets_leaves_nothing_behind() {
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 500;
    let h = Binary::start(ROUTE, None).await;
    let baseline_fds = h.open_fds();
    let mut rss = BTreeMap::new();
    for round in 0..ROUNDS {
        let mut streams = Vec::with_capacity(PER_ROUND);
        for _ in 0..PER_ROUND {
            streams.push(try_stream(h.addr).await.expect("served"));
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while h.metric("hookcast_subscribers").await < PER_ROUND as f64 {
            assert!(tokio::time::Instant::now() < deadline, "all subscribed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(h.post("/hooks/a", "tick").await, StatusCode::ACCEPTED);
        for (i, s) in streams.into_iter().enumerate() {
            if i.is_multiple_of(2) {
                // A reset, as from a client that crashed or a NAT that forgot it.
                s.set_zero_linger().unwrap();
            }
            drop(s);
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while h.metric("hookcast_subscribers").await > 0.0 || h.open_fds() > baseline_fds {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: {} subscribers, {} descriptors (baseline {baseline_fds})",
                h.metric("hookcast_subscribers").await,
                h.open_fds()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rss.insert(round, h.status_kib("VmRSS"));
    }
    let settled = rss[&1];
    let last = rss[&(ROUNDS - 1)];
    eprintln!(
        "faults: churn, {ROUNDS} rounds of {PER_ROUND} subscribers, half closed by RST: subscribers back to 0 and descriptors to {baseline_fds} after every round; RSS {} KiB after round 2, {} KiB after round {ROUNDS}",
        settled / 1024,
        last / 1024
    );
    assert!(
        last <= settled + (4 << 20),
        "RSS grew from {} to {} KiB over the rounds",
        settled / 1024,
        last / 1024
    );
}

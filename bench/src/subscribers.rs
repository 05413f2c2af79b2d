//! Subscriber connections: bound to many loopback source addresses, rate-limited connects, incremental reads, and per-subscriber seq tracking.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::http::{self, BodyKind, Chunked, Target};
use crate::sse::{self, Item};
use crate::summary::{self, Accepted, ConnectReport, HistData, SubResult};
use crate::template::Values;

/// What this process's subscribers do.
#[derive(Debug)]
pub struct Spec {
    pub target: Target,
    pub topics: Rc<[String]>,
    /// Extra request header lines, each ending in CRLF.
    pub extra_headers: String,
    /// This process holds subscribers `start..start + count` of the whole run.
    pub start: usize,
    pub count: usize,
    pub source_addrs: usize,
    pub concurrency: usize,
    /// Connecting stops here.
    pub deadline: Instant,
}

/// The `k`-th source address: 127.0.0.2 .. 127.0.0.251, 127.0.1.2 .., 250 per /24.
pub fn source_addr(k: usize) -> Ipv4Addr {
    let hi = (k / 250) % 256;
    Ipv4Addr::new(127, 0, hi as u8, (2 + k % 250) as u8)
}

/// How one subscriber's stream has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Open,
    Failed,
}

/// One subscriber's view of its topic's sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    topic: u32,
    phase: Phase,
    /// Highest seq seen (0: none).
    pub last: u64,
    /// Distinct seqs seen.
    pub fresh: u64,
    pub reordered: u64,
    pub duplicates: u64,
    /// Seqs skipped over and not (yet) seen, as half-open ranges.
    gaps: Vec<(u64, u64)>,
}

/// What one received seq turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    InOrder,
    Reordered,
    Duplicate,
}

impl Track {
    pub fn new(topic: u32) -> Track {
        Track {
            topic,
            phase: Phase::Connecting,
            last: 0,
            fresh: 0,
            reordered: 0,
            duplicates: 0,
            gaps: Vec::new(),
        }
    }

    /// Records `seq` (from 1).
    pub fn see(&mut self, seq: u64) -> Seen {
        if seq > self.last {
            if seq > self.last + 1 {
                self.gaps.push((self.last + 1, seq));
            }
            self.last = seq;
            self.fresh += 1;
            return Seen::InOrder;
        }
        let Some(i) = self.gaps.iter().position(|&(a, b)| a <= seq && seq < b) else {
            self.duplicates += 1;
            return Seen::Duplicate;
        };
        let (a, b) = self.gaps[i];
        match (a == seq, seq + 1 == b) {
            (true, true) => {
                self.gaps.swap_remove(i);
            }
            (true, false) => self.gaps[i].0 = seq + 1,
            (false, true) => self.gaps[i].1 = seq,
            (false, false) => {
                self.gaps[i].1 = seq;
                self.gaps.push((seq + 1, b));
            }
        }
        self.fresh += 1;
        self.reordered += 1;
        Seen::Reordered
    }

    /// Accepted seqs not seen, and distinct seqs seen that were never accepted.
    pub fn lost_and_unexpected(&self, acc: &Accepted) -> (u64, u64) {
        let mut lost: u64 = self.gaps.iter().map(|&(a, b)| acc.count_in(a, b)).sum();
        lost += acc.count_in(self.last + 1, u64::MAX);
        let seen_accepted = acc.count() - lost;
        (lost, self.fresh.saturating_sub(seen_accepted))
    }
}

/// State shared by this process's subscriber tasks.
#[derive(Debug)]
struct Shared {
    subs: Vec<Track>,
    pending: usize,
    connected: u64,
    failed: u64,
    failures: BTreeMap<String, u64>,
    connect_s: f64,
    started: Instant,
    disconnected: u64,
    deliveries: u64,
    fresh: u64,
    unparsed: u64,
    comments: u64,
    first_recv_ns: Option<u64>,
    last_recv_ns: Option<u64>,
    latency: Histogram<u64>,
}

impl Shared {
    fn connect_done(&mut self, sub: usize, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.subs[sub].phase = Phase::Open;
                self.connected += 1;
            }
            Err(reason) => {
                self.subs[sub].phase = Phase::Failed;
                self.failed += 1;
                *self.failures.entry(reason).or_default() += 1;
            }
        }
        self.pending -= 1;
        if self.pending == 0 {
            self.connect_s = self.started.elapsed().as_secs_f64();
        }
    }

    fn item(&mut self, sub: usize, recv_ns: u64, item: Item<'_>) {
        let data = match item {
            Item::Comment(_) => {
                self.comments += 1;
                return;
            }
            Item::Event(e) => e.data,
        };
        self.deliveries += 1;
        self.first_recv_ns.get_or_insert(recv_ns);
        self.last_recv_ns = Some(recv_ns);
        let Some(seq) = sse::json_u64(data, b"\"seq\"") else {
            self.unparsed += 1;
            return;
        };
        if let Some(ts) = sse::json_u64(data, b"\"ts_ns\"") {
            self.latency.saturating_record(recv_ns.saturating_sub(ts));
        }
        if self.subs[sub].see(seq) != Seen::Duplicate {
            self.fresh += 1;
        }
    }
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// Unix time in nanoseconds.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// This process's subscribers, running as local tasks.
#[derive(Debug)]
pub struct Subscribers {
    shared: Rc<RefCell<Shared>>,
    tasks: Vec<JoinHandle<()>>,
    all_done: Rc<Notify>,
    deadline: Instant,
    requested: u64,
}

impl Subscribers {
    /// Starts connecting; must be called inside a `LocalSet`.
    pub fn start(spec: Spec) -> Subscribers {
        let topics_n = spec.topics.len();
        let shared = Rc::new(RefCell::new(Shared {
            subs: (0..spec.count)
                .map(|i| Track::new(((spec.start + i) % topics_n) as u32))
                .collect(),
            pending: spec.count,
            connected: 0,
            failed: 0,
            failures: BTreeMap::new(),
            connect_s: 0.0,
            started: Instant::now(),
            disconnected: 0,
            deliveries: 0,
            fresh: 0,
            unparsed: 0,
            comments: 0,
            first_recv_ns: None,
            last_recv_ns: None,
            latency: summary::histogram(),
        }));
        let all_done = Rc::new(Notify::new());
        let sem = Rc::new(Semaphore::new(spec.concurrency));
        let deadline = spec.deadline;
        let requested = spec.count as u64;
        let spec = Rc::new(spec);
        let tasks = (0..spec.count)
            .map(|i| {
                tokio::task::spawn_local(subscriber(
                    i,
                    spec.clone(),
                    shared.clone(),
                    sem.clone(),
                    all_done.clone(),
                ))
            })
            .collect();
        if requested == 0 {
            all_done.notify_one();
        }
        Subscribers {
            shared,
            tasks,
            all_done,
            deadline,
            requested,
        }
    }

    /// Waits until every subscriber has its response head or has failed, or the deadline.
    pub async fn connected(&self) -> ConnectReport {
        let timed_out = tokio::time::timeout_at(self.deadline, async {
            while self.shared.borrow().pending > 0 {
                self.all_done.notified().await;
            }
        })
        .await
        .is_err();
        let mut sh = self.shared.borrow_mut();
        if timed_out {
            sh.connect_s = sh.started.elapsed().as_secs_f64();
        }
        ConnectReport {
            connected: sh.connected,
            failed: sh.failed + sh.pending as u64,
            connect_s: sh.connect_s,
            timed_out,
        }
    }

    /// Distinct events received so far.
    pub fn fresh(&self) -> u64 {
        self.shared.borrow().fresh
    }

    /// Connected subscribers per topic index.
    pub fn open_per_topic(&self, topics: usize) -> Vec<u64> {
        let mut n = vec![0; topics];
        for t in &self.shared.borrow().subs {
            if t.phase == Phase::Open {
                n[t.topic as usize] += 1;
            }
        }
        n
    }

    /// Stops every subscriber and counts, against what each topic was sent.
    pub fn finish(self, accepted: &[Accepted]) -> SubResult {
        for t in &self.tasks {
            t.abort();
        }
        let sh = self.shared.borrow();
        let none = Accepted::default();
        let mut r = SubResult {
            requested: self.requested,
            connected: sh.connected,
            failed: sh.failed + sh.pending as u64,
            failures: sh.failures.clone(),
            connect_s: sh.connect_s,
            connect_timed_out: sh.pending > 0,
            disconnected: sh.disconnected,
            deliveries: sh.deliveries,
            unparsed: sh.unparsed,
            comments: sh.comments,
            first_recv_ns: sh.first_recv_ns,
            last_recv_ns: sh.last_recv_ns,
            latency_ns: HistData::from_histogram(&sh.latency),
            ..SubResult::default()
        };
        if sh.pending > 0 {
            *r.failures.entry("timeout".into()).or_default() += sh.pending as u64;
        }
        for t in sh.subs.iter().filter(|t| t.phase == Phase::Open) {
            let acc = accepted.get(t.topic as usize).unwrap_or(&none);
            let (lost, unexpected) = t.lost_and_unexpected(acc);
            r.expected += acc.count();
            r.lost += lost;
            r.unexpected += unexpected;
            r.reordered += t.reordered;
            r.duplicates += t.duplicates;
            r.subscribers_with_loss += u64::from(lost > 0);
            r.subscribers_with_reorder += u64::from(t.reordered > 0);
        }
        r
    }
}

/// The response body's framing for a stream.
#[derive(Debug)]
enum Body {
    Chunked(Chunked),
    Raw,
}

async fn subscriber(
    sub: usize,
    spec: Rc<Spec>,
    shared: Rc<RefCell<Shared>>,
    sem: Rc<Semaphore>,
    all_done: Rc<Notify>,
) {
    let permit = sem.acquire().await;
    let opened = tokio::time::timeout_at(spec.deadline, open(&spec, sub)).await;
    drop(permit);
    let result = match opened {
        Ok(r) => r,
        Err(_) => Err("timeout".to_owned()),
    };
    let (stream, rest, mut body) = {
        let mut sh = shared.borrow_mut();
        let out = match result {
            Ok(x) => {
                sh.connect_done(sub, Ok(()));
                Some(x)
            }
            Err(e) => {
                sh.connect_done(sub, Err(e));
                None
            }
        };
        if sh.pending == 0 {
            all_done.notify_one();
        }
        match out {
            Some(x) => x,
            None => return,
        }
    };
    let mut parser = sse::Parser::new();
    let mut ended = consume(&shared, sub, &mut body, &mut parser, &rest);
    while !ended {
        if stream.readable().await.is_err() {
            break;
        }
        // A short read drained the socket: report WouldBlock so tokio clears the
        // readiness now (as its own poll_read does), saving a read that would fail.
        let read = stream.try_io(Interest::READABLE, || {
            READ_BUF.with_borrow_mut(|buf| {
                let n = stream.try_read(buf)?;
                ended = n == 0 || consume(&shared, sub, &mut body, &mut parser, &buf[..n]);
                if n < buf.len() && !ended {
                    Err(ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            })
        });
        if read.is_err_and(|e| e.kind() != ErrorKind::WouldBlock) {
            break;
        }
    }
    shared.borrow_mut().disconnected += 1;
}

/// Feeds received bytes through the body decoder and the SSE parser. True when the body ended.
fn consume(
    shared: &RefCell<Shared>,
    sub: usize,
    body: &mut Body,
    parser: &mut sse::Parser,
    bytes: &[u8],
) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let recv_ns = now_ns();
    let mut sh = shared.borrow_mut();
    let sh = &mut *sh;
    let mut on_payload = |p: &[u8]| parser.feed(p, |it| sh.item(sub, recv_ns, it));
    match body {
        Body::Raw => {
            on_payload(bytes);
            false
        }
        Body::Chunked(c) => c.feed(bytes, &mut on_payload).is_err() || c.done(),
    }
}

/// Connects, sends the GET, and reads the response head; returns the stream and body bytes read past the head.
async fn open(spec: &Spec, sub: usize) -> Result<(TcpStream, Vec<u8>, Body), String> {
    let global = spec.start + sub;
    let socket = match spec.target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {:?}", e.kind()))?;
    if spec.source_addrs > 0 && spec.target.addr.is_ipv4() {
        let _ = socket.set_reuseaddr(true);
        let src = IpAddr::V4(source_addr(global % spec.source_addrs));
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("bind: {:?}", e.kind()))?;
    }
    let mut stream = socket
        .connect(spec.target.addr)
        .await
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let topic_i = global % spec.topics.len();
    let mut req = b"GET ".to_vec();
    spec.target.path.fill(
        &Values {
            topic: &spec.topics[topic_i],
            i: topic_i as u64,
            n: global as u64,
            ..Values::default()
        },
        &mut req,
    );
    req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    req.extend_from_slice(spec.target.host.as_bytes());
    req.extend_from_slice(b"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n");
    req.extend_from_slice(spec.extra_headers.as_bytes());
    req.extend_from_slice(b"\r\n");
    stream
        .write_all(&req)
        .await
        .map_err(|e| format!("write: {:?}", e.kind()))?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read: {:?}", e.kind()))?;
        if n == 0 {
            return Err("closed before response head".into());
        }
        if let Some(head) = http::parse_head(&buf)? {
            if head.status != 200 {
                return Err(format!("status {}", head.status));
            }
            let body = match head.body {
                BodyKind::Chunked => Body::Chunked(Chunked::new()),
                _ => Body::Raw,
            };
            return Ok((stream, buf.split_off(head.len), body));
        }
        if buf.len() > 64 * 1024 {
            return Err("response head too large".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(n: u64) -> Accepted {
        Accepted {
            sent: n,
            failed: vec![],
        }
    }

    #[test]
    fn in_order_stream() {
        let mut t = Track::new(0);
        for s in 1..=5 {
            assert_eq!(t.see(s), Seen::InOrder);
        }
        assert_eq!(t.lost_and_unexpected(&all(5)), (0, 0));
        assert_eq!(t.lost_and_unexpected(&all(8)), (3, 0));
    }

    #[test]
    fn reorders_duplicates_and_gaps() {
        let mut t = Track::new(0);
        assert_eq!(t.see(1), Seen::InOrder);
        assert_eq!(t.see(5), Seen::InOrder);
        assert_eq!(t.see(3), Seen::Reordered);
        assert_eq!(t.see(3), Seen::Duplicate);
        assert_eq!(t.see(5), Seen::Duplicate);
        assert_eq!(t.see(2), Seen::Reordered);
        assert_eq!((t.fresh, t.reordered, t.duplicates), (4, 2, 2));
        // 4 and 6 never came.
        assert_eq!(t.lost_and_unexpected(&all(6)), (2, 0));
        assert_eq!(t.see(4), Seen::Reordered);
        assert_eq!(t.lost_and_unexpected(&all(6)), (1, 0));
    }

    #[test]
    fn unaccepted_seqs_are_not_lost_but_unexpected() {
        let mut t = Track::new(0);
        for s in [1, 2, 4] {
            t.see(s);
        }
        let acc = Accepted {
            sent: 4,
            failed: vec![2, 3],
        };
        assert_eq!(t.lost_and_unexpected(&acc), (0, 1));
    }

    #[test]
    fn source_addresses_skip_network_and_broadcast_octets() {
        assert_eq!(source_addr(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(249), Ipv4Addr::new(127, 0, 0, 251));
        assert_eq!(source_addr(250), Ipv4Addr::new(127, 0, 1, 2));
    }
}

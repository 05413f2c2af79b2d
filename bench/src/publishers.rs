//! Webhook publishers: keep-alive HTTP/1.1 connections POSTing a body template round-robin over the topics, at a rate or as fast as possible.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::args::Rate;
use crate::http::{self, BodyKind, Chunked, Target};
use crate::subscribers::now_ns;
use crate::summary::{self, Accepted, HistData, PubResult};
use crate::template::{Template, Values};

/// What to publish.
#[derive(Debug)]
pub struct Spec {
    pub target: Target,
    pub topics: Rc<[String]>,
    pub body: Template,
    /// Header lines after `Host`, each ending in CRLF.
    pub headers: String,
    pub events: u64,
    pub rate: Rate,
    pub concurrency: usize,
    pub request_timeout: Duration,
    /// Publishing stops here.
    pub deadline: Instant,
}

#[derive(Debug)]
struct State {
    next: u64,
    accepted: u64,
    errors: BTreeMap<String, u64>,
    /// (topic, seq) of events not accepted.
    failed: Vec<(usize, u64)>,
    /// The event each worker is waiting on.
    in_flight: Vec<Option<u64>>,
    first_send_ns: Option<u64>,
    last_done: Option<Instant>,
    latency: Histogram<u64>,
}

/// Sends `spec.events` webhooks and reports what happened; must run inside a `LocalSet`.
pub async fn publish(spec: Spec) -> PubResult {
    let spec = Rc::new(spec);
    let state = Rc::new(RefCell::new(State {
        next: 0,
        accepted: 0,
        errors: BTreeMap::new(),
        failed: Vec::new(),
        in_flight: vec![None; spec.concurrency],
        first_send_ns: None,
        last_done: None,
        latency: summary::histogram(),
    }));
    let t0 = Instant::now();
    let mut workers: Vec<_> = (0..spec.concurrency)
        .map(|w| tokio::task::spawn_local(worker(w, t0, spec.clone(), state.clone())))
        .collect();
    let mut timed_out = false;
    for w in &mut workers {
        if tokio::time::timeout_at(spec.deadline, &mut *w)
            .await
            .is_err()
        {
            timed_out = true;
            break;
        }
    }
    for w in &workers {
        w.abort();
    }
    let mut st = state.borrow_mut();
    let aborted: Vec<u64> = st.in_flight.iter().flatten().copied().collect();
    for n in aborted {
        let k = spec.topics.len() as u64;
        st.failed.push(((n % k) as usize, n / k + 1));
        *st.errors.entry("aborted".into()).or_default() += 1;
    }
    let taken = st.next.min(spec.events);
    let k = spec.topics.len() as u64;
    let mut accepted_seqs: Vec<Accepted> = (0..k)
        .map(|t| Accepted {
            sent: taken / k + u64::from(t < taken % k),
            failed: Vec::new(),
        })
        .collect();
    for &(t, seq) in &st.failed {
        accepted_seqs[t].failed.push(seq);
    }
    for a in &mut accepted_seqs {
        a.failed.sort_unstable();
        a.failed.dedup();
    }
    PubResult {
        sent: taken,
        accepted: st.accepted,
        errors: st.errors.clone(),
        duration_s: st
            .last_done
            .map_or(0.0, |d| d.saturating_duration_since(t0).as_secs_f64()),
        first_send_ns: st.first_send_ns,
        timed_out,
        latency_ns: HistData::from_histogram(&st.latency),
        accepted_seqs,
    }
}

async fn worker(w: usize, t0: Instant, spec: Rc<Spec>, state: Rc<RefCell<State>>) {
    let k = spec.topics.len() as u64;
    let mut conn: Option<Conn> = None;
    let mut req = Vec::with_capacity(512);
    let mut body = Vec::with_capacity(256);
    loop {
        let n = {
            let mut st = state.borrow_mut();
            if st.next >= spec.events {
                return;
            }
            st.next += 1;
            st.in_flight[w] = Some(st.next - 1);
            st.next - 1
        };
        if let Rate::PerSecond(r) = spec.rate {
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(n as f64 / r)).await;
        }
        let topic = (n % k) as usize;
        let seq = n / k + 1;
        let ts_ns = now_ns();
        let v = Values {
            seq,
            ts_ns,
            topic: &spec.topics[topic],
            i: topic as u64,
            n,
        };
        build_request(&spec, &v, &mut body, &mut req);
        let start = Instant::now();
        let outcome = tokio::time::timeout(spec.request_timeout, exchange(&mut conn, &spec, &req))
            .await
            .unwrap_or_else(|_| Err("timeout".into()));
        let done = Instant::now();
        let mut st = state.borrow_mut();
        st.in_flight[w] = None;
        st.first_send_ns = Some(st.first_send_ns.map_or(ts_ns, |f| f.min(ts_ns)));
        st.last_done = Some(done);
        let err = match outcome {
            Ok(status) if (200..300).contains(&status) => {
                st.accepted += 1;
                st.latency
                    .saturating_record((done - start).as_nanos() as u64);
                None
            }
            Ok(status) => Some(status.to_string()),
            Err(e) => {
                conn = None;
                Some(e)
            }
        };
        if let Some(e) = err {
            *st.errors.entry(e).or_default() += 1;
            st.failed.push((topic, seq));
        }
    }
}

/// Writes the whole request for one event into `req`.
fn build_request(spec: &Spec, v: &Values<'_>, body: &mut Vec<u8>, req: &mut Vec<u8>) {
    body.clear();
    spec.body.fill(v, body);
    req.clear();
    req.extend_from_slice(b"POST ");
    spec.target.path.fill(v, req);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    req.extend_from_slice(spec.target.host.as_bytes());
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(spec.headers.as_bytes());
    req.extend_from_slice(b"Content-Length: ");
    req.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    req.extend_from_slice(b"\r\n\r\n");
    req.extend_from_slice(body);
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    reused: bool,
}

/// Why a round trip failed.
enum Fail {
    /// The server had closed a kept-alive connection before reading this request.
    Stale,
    Other(String),
}

/// One request and its response, on the kept connection or a new one; the status code.
async fn exchange(conn: &mut Option<Conn>, spec: &Spec, req: &[u8]) -> Result<u16, String> {
    for _ in 0..2 {
        let c = match conn {
            Some(c) => c,
            None => {
                let stream = TcpStream::connect(spec.target.addr)
                    .await
                    .map_err(|_| "connect".to_owned())?;
                let _ = stream.set_nodelay(true);
                conn.insert(Conn {
                    stream,
                    buf: Vec::with_capacity(4096),
                    reused: false,
                })
            }
        };
        let reused = c.reused;
        match round_trip(c, req).await {
            Ok((status, keep)) => {
                if keep {
                    c.reused = true;
                } else {
                    *conn = None;
                }
                return Ok(status);
            }
            Err(Fail::Stale) if reused => *conn = None,
            Err(Fail::Stale) => {
                *conn = None;
                return Err("io".into());
            }
            Err(Fail::Other(e)) => {
                *conn = None;
                return Err(e);
            }
        }
    }
    Err("io".into())
}

async fn round_trip(c: &mut Conn, req: &[u8]) -> Result<(u16, bool), Fail> {
    if c.stream.write_all(req).await.is_err() {
        return Err(Fail::Stale);
    }
    // The buffer keeps its capacity across requests, so one read takes a whole answer.
    c.buf.clear();
    let head = loop {
        if let Some(h) = http::parse_head(&c.buf).map_err(Fail::Other)? {
            break h;
        }
        if c.buf.capacity() == c.buf.len() {
            c.buf.reserve(4096);
        }
        let n = c
            .stream
            .read_buf(&mut c.buf)
            .await
            .map_err(|_| Fail::Stale)?;
        if n == 0 {
            return Err(if c.buf.is_empty() {
                Fail::Stale
            } else {
                Fail::Other("io".into())
            });
        }
    };
    let io = |_| Fail::Other("io".into());
    match head.body {
        BodyKind::None => {}
        BodyKind::Length(n) => {
            let end = head.len as u64 + n;
            while (c.buf.len() as u64) < end {
                c.buf.reserve(4096);
                if c.stream.read_buf(&mut c.buf).await.map_err(io)? == 0 {
                    return Err(Fail::Other("io".into()));
                }
            }
        }
        BodyKind::Chunked => {
            let mut dec = Chunked::new();
            let mut from = head.len;
            loop {
                dec.feed(&c.buf[from..], &mut |_| {}).map_err(Fail::Other)?;
                if dec.done() {
                    break;
                }
                c.buf.clear();
                from = 0;
                c.buf.reserve(4096);
                if c.stream.read_buf(&mut c.buf).await.map_err(io)? == 0 {
                    return Err(Fail::Other("io".into()));
                }
            }
        }
        BodyKind::Close => {
            c.buf.reserve(4096);
            while c.stream.read_buf(&mut c.buf).await.map_err(io)? > 0 {
                c.buf.reserve(4096);
            }
        }
    }
    Ok((head.status, !head.close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_post() {
        let spec = Spec {
            target: Target::parse("http://127.0.0.1:8080/hooks/{topic}").unwrap(),
            topics: vec!["a".to_owned()].into(),
            body: Template::parse(r#"{"seq":{seq},"ts_ns":{ts_ns}}"#),
            headers: "Content-Type: application/json\r\n".into(),
            events: 1,
            rate: Rate::Max,
            concurrency: 1,
            request_timeout: Duration::from_secs(1),
            deadline: Instant::now(),
        };
        let (mut body, mut req) = (Vec::new(), Vec::new());
        let v = Values {
            seq: 3,
            ts_ns: 99,
            topic: "a",
            ..Values::default()
        };
        build_request(&spec, &v, &mut body, &mut req);
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "POST /hooks/a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"seq\":3,\"ts_ns\":99}"
        );
    }
}

//! The least an SSE server can do for the benchmark's scenarios, as a reference
//! beside the servers compared: what the load tool measures when the server
//! spends nothing above the system calls themselves.
//!
//!   bench-floor-server PORT
//!
//! One thread. `GET /sub?topic=T` (or `/sub/T`) answers an SSE head with chunked
//! framing and files the socket under T; `POST /pub/T` reads its body, answers
//! `202` and then writes `id: N` / `data: BODY` framed as one HTTP/1.1 chunk to
//! every socket of T, one `write` each, straight from the publisher's task: no
//! queue, no task woken per subscriber, no buffer, no history, no heartbeat.
//! A socket that does not take the whole chunk at once is dropped and counted
//! on standard error (the load tool then reports its events as lost), so the
//! figures it gives hold only when nothing was dropped. It is a yardstick for
//! `bench/run.sh`, not a server for anything else.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sockets by topic, each behind an `Rc` shared with the task that watches it.
type Topics = Rc<RefCell<HashMap<String, Vec<Rc<TcpStream>>>>>;

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
cache-control: no-cache\r\nx-accel-buffering: no\r\ntransfer-encoding: chunked\r\n\r\n";
const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
/// Largest request head or body read.
const MAX_REQUEST: usize = 64 * 1024;

fn main() -> io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8099);
    rlimit::increase_nofile_limit(u64::MAX)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let topics: Topics = Rc::default();
        let next_id = Rc::new(RefCell::new(0u64));
        loop {
            let (socket, _) = listener.accept().await?;
            socket.set_nodelay(true)?;
            let (topics, next_id) = (topics.clone(), next_id.clone());
            tokio::task::spawn_local(async move {
                let _ = serve(socket, topics, next_id).await;
            });
        }
    })
}

/// Serves one connection: keep-alive publishes, or one subscription.
async fn serve(mut socket: TcpStream, topics: Topics, next_id: Rc<RefCell<u64>>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let head_end = loop {
            if let Some(at) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > MAX_REQUEST || read_more(&mut socket, &mut buf).await? == 0 {
                return Ok(());
            }
        };
        let head = std::str::from_utf8(&buf[..head_end]).unwrap_or("");
        let mut words = head.split(' ');
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let length = content_length(head);
        if method == "GET" {
            let Some(topic) = target
                .strip_prefix("/sub?topic=")
                .or_else(|| target.strip_prefix("/sub/"))
            else {
                return socket.write_all(NOT_FOUND).await;
            };
            let topic = topic.to_owned();
            socket.write_all(SSE_HEAD).await?;
            return subscribe(socket, topic, topics).await;
        }
        let Some(topic) = target.strip_prefix("/pub/").map(str::to_owned) else {
            return socket.write_all(NOT_FOUND).await;
        };
        while buf.len() < head_end + length {
            if length > MAX_REQUEST || read_more(&mut socket, &mut buf).await? == 0 {
                return Ok(());
            }
        }
        let id = {
            let mut n = next_id.borrow_mut();
            *n += 1;
            *n
        };
        let chunk = frame(id, &buf[head_end..head_end + length]);
        buf.drain(..head_end + length);
        socket.write_all(ACCEPTED).await?;
        fan_out(&topics, &topic, &chunk);
    }
}

/// Files the socket under its topic, then waits for the client to leave.
async fn subscribe(socket: TcpStream, topic: String, topics: Topics) -> io::Result<()> {
    let socket = Rc::new(socket);
    topics
        .borrow_mut()
        .entry(topic.clone())
        .or_default()
        .push(socket.clone());
    let mut scratch = [0u8; 64];
    loop {
        socket.readable().await?;
        match socket.try_read(&mut scratch) {
            Ok(0) => break,
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => break,
            _ => {}
        }
    }
    if let Some(list) = topics.borrow_mut().get_mut(&topic) {
        list.retain(|s| !Rc::ptr_eq(s, &socket));
    }
    Ok(())
}

/// One `write` per subscriber, from here; a socket that takes less is dropped.
fn fan_out(topics: &Topics, topic: &str, chunk: &[u8]) {
    let mut topics = topics.borrow_mut();
    let Some(list) = topics.get_mut(topic) else {
        return;
    };
    let before = list.len();
    list.retain(|s| matches!(s.try_write(chunk), Ok(n) if n == chunk.len()));
    if list.len() < before {
        eprintln!(
            "bench-floor-server: dropped {} subscribers of {topic}",
            before - list.len()
        );
    }
}

/// An SSE event (`id`, one `data` line) as one HTTP/1.1 chunk.
fn frame(id: u64, data: &[u8]) -> Vec<u8> {
    let mut event = Vec::with_capacity(data.len() + 32);
    event.extend_from_slice(b"id: ");
    event.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    event.extend_from_slice(b"\ndata: ");
    event.extend_from_slice(data);
    event.extend_from_slice(b"\n\n");
    let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
    chunk.extend_from_slice(&event);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

fn content_length(head: &str) -> usize {
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn read_more(socket: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = socket.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

//! Raw sockets: free addresses, and reading HTTP/1.1 answers byte for byte where
//! a test must see exactly what was written (no client library in between).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::PATIENCE;

/// An address on 127.0.0.1 that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// Waits until `addr` accepts connections; `what` names the server if it never does.
pub async fn wait_listening(addr: impl tokio::net::ToSocketAddrs + Copy, what: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a connection carried until the peer closed it.
#[derive(Debug)]
pub struct Closed {
    /// Every byte read.
    pub bytes: Vec<u8>,
    /// The connection ended with an error (a reset), not an orderly close.
    pub reset: bool,
}

impl Closed {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Whether the bytes end with HTTP/1.1's last chunk (a stream ended cleanly).
    pub fn ends_with_last_chunk(&self) -> bool {
        self.bytes.ends_with(b"0\r\n\r\n")
    }
}

/// Reads until the peer closes or resets the connection; panics if it is still
/// open after [`PATIENCE`] without a byte.
pub async fn read_to_close(s: &mut TcpStream) -> Closed {
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            Err(_) => panic!(
                "the server neither answered nor closed ({} bytes read): {:?}",
                bytes.len(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(2048)])
            ),
            Ok(Ok(0)) => {
                return Closed {
                    bytes,
                    reset: false,
                };
            }
            Ok(Err(_)) => return Closed { bytes, reset: true },
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// One HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    /// The head, status line first, without the blank line that ends it.
    pub head: String,
    pub status: u16,
    /// `Content-Length` bytes after the head (none without that header).
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response head and its `Content-Length` body within `within`; the
/// error says what came before the connection closed or the time ran out.
pub async fn read_response(s: &mut TcpStream, within: Duration) -> Result<RawResponse, String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| {
                        v.trim()
                            .parse::<usize>()
                            .unwrap_or_else(|e| panic!("Content-Length {v:?}: {e}"))
                    })
                })
                .unwrap_or(0);
            let start = end + 4;
            if got.len() >= start + len {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad status line: {head}"));
                return Ok(RawResponse {
                    status,
                    body: got[start..start + len].to_vec(),
                    head,
                });
            }
        }
        let got_so_far = || String::from_utf8_lossy(&got).into_owned();
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return Err(format!("no whole response in time: {:?}", got_so_far())),
            Ok(Ok(0)) => {
                return Err(format!(
                    "closed before a whole response: {:?}",
                    got_so_far()
                ));
            }
            Ok(Err(e)) => return Err(format!("read failed ({e}) after {:?}", got_so_far())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads more of an answer into `buf`; 0 when the connection ended.
pub async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut piece = [0u8; 16 * 1024];
    let n = tokio::time::timeout(PATIENCE, s.read(&mut piece))
        .await
        .expect("in time")
        .unwrap_or(0);
    buf.extend_from_slice(&piece[..n]);
    n
}

/// One response as the client got it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    /// As sent: chunk framing included.
    pub body: Vec<u8>,
}

/// Reads one response from `buf` and `s`; `None` if the connection ended first.
pub async fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>, no_body: bool) -> Option<Answer> {
    let (status, head_len, len, chunked) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(buf) {
            let find = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let len: usize = find("content-length").map_or(0, |v| v.parse().unwrap());
            let chunked = find("transfer-encoding").is_some();
            break (resp.code.unwrap(), n, len, chunked);
        }
        if read_more(s, buf).await == 0 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    buf.drain(..head_len);
    let body_len = if no_body {
        0
    } else if chunked {
        loop {
            // The last chunk and trailers end with an empty line after `0`.
            if let Some(at) = find_end_of_chunks(buf) {
                break at;
            }
            if read_more(s, buf).await == 0 {
                return None;
            }
        }
    } else {
        len
    };
    while buf.len() < body_len {
        if read_more(s, buf).await == 0 {
            return None;
        }
    }
    let body = buf.drain(..body_len).collect();
    Some(Answer { status, head, body })
}

pub fn find_end_of_chunks(buf: &[u8]) -> Option<usize> {
    let at = buf.windows(3).position(|w| w == b"\n0\r" || w == b"\n0;")?;
    let rest = &buf[at..];
    rest.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| at + p + 4)
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The JSON error's code.
    pub fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    /// The status line and the headers but `date`, sorted: what hyper's path
    /// and the plain path must agree on.
    pub fn normalized_head(&self) -> Vec<String> {
        let mut lines = self.head.lines();
        let status = lines.next().unwrap_or_default().to_owned();
        let mut headers: Vec<String> = lines
            .filter(|l| !l.is_empty() && !l.to_lowercase().starts_with("date:"))
            .map(str::to_lowercase)
            .collect();
        headers.sort();
        let mut all = vec![status];
        all.extend(headers);
        all
    }
}

/// What a [`raw_upstream`] does after writing its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Reads the next request on the same connection.
    KeepGoing,
    /// Closes the connection.
    Close,
}

/// An upstream over a raw socket, for answers no HTTP library would write:
/// each whole request (head and `Content-Length` body) gets `answer` as it is,
/// then the connection goes on or closes, as `then` says.
pub async fn raw_upstream(answer: &'static [u8], then: Then) -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut piece = [0u8; 4096];
                loop {
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut req = httparse::Request::new(&mut headers);
                    if let Ok(httparse::Status::Complete(n)) = req.parse(&seen) {
                        let len: usize = req
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .map_or(0, |h| {
                                std::str::from_utf8(h.value).unwrap().parse().unwrap()
                            });
                        if seen.len() >= n + len {
                            seen.drain(..n + len);
                            if s.write_all(answer).await.is_err() || then == Then::Close {
                                let _ = s.shutdown().await;
                                return;
                            }
                            continue;
                        }
                    }
                    match s.read(&mut piece).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => seen.extend_from_slice(&piece[..k]),
                    }
                }
            });
        }
    });
    addr
}

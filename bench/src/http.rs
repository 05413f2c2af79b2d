//! Minimal HTTP/1.1 pieces: loopback-only URL targets, response heads, and an incremental chunked decoder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Error;
use crate::template::Template;

/// Where a URL template points: a loopback socket address and a path template.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL.
    pub host: String,
    pub path: Template,
}

impl Target {
    /// Parses `http://HOST[:PORT]/PATH?QUERY`. HOST must be loopback: an address in
    /// 127.0.0.0/8, `[::1]` or `localhost`; anything else is refused, before any traffic.
    pub fn parse(url: &str) -> Result<Target, Error> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            Error::Usage(format!(
                "`{url}`: only http:// URLs are supported (no TLS on loopback)"
            ))
        })?;
        let slash = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(slash);
        if authority.contains(['{', '@']) || authority.is_empty() {
            return Err(Error::Usage(format!(
                "`{url}`: the host part must be a plain host[:port]"
            )));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| Error::Usage(format!("`{url}`: bad host or port")))?;
        let ip = loopback_ip(host).ok_or_else(|| Error::NotLoopback(host.to_owned()))?;
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            host: authority.to_owned(),
            path: Template::parse(&path),
        })
    }
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']')?;
        let port = match &v6[end + 1..] {
            "" => 80,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((&authority[..end + 2], port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, p.parse().ok()?)),
        None => Some((authority, 80)),
    }
}

/// The address of a loopback host, or `None` for any other host.
pub fn loopback_ip(host: &str) -> Option<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: Ipv6Addr = v6.parse().ok()?;
        return ip.is_loopback().then_some(IpAddr::V6(ip));
    }
    let ip: Ipv4Addr = host.parse().ok()?;
    ip.is_loopback().then_some(IpAddr::V4(ip))
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, including the blank line.
    pub len: usize,
    pub body: BodyKind,
    /// The connection cannot carry another request.
    pub close: bool,
}

/// Parses a response head from the start of `buf`: `Ok(None)` if it is not complete yet.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    let status: u16 = words
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line `{status_line}`"));
    }
    let mut close = version == "HTTP/1.0";
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad content-length `{value}`"))?,
            );
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyKind::None
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(n) = length {
        BodyKind::Length(n)
    } else {
        close = true;
        BodyKind::Close
    };
    Ok(Some(Head {
        status,
        len: end + 4,
        body,
        close,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { any: bool },
    Ext,
    Data(u64),
    DataEnd,
    Trailer { empty: bool },
    Done,
}

/// Decodes a chunked body incrementally, from any split of its bytes.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    size: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { any: false },
            size: 0,
        }
    }
}

impl Chunked {
    pub fn new() -> Chunked {
        Chunked::default()
    }

    /// Whether the last chunk and trailers have been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, passing payload slices to `out`. Returns how many bytes
    /// were used: all of them, unless the body ended inside `input`.
    pub fn feed(&mut self, input: &[u8], out: &mut impl FnMut(&[u8])) -> Result<usize, String> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { any } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or("chunk size overflows")?;
                        self.state = State::Size { any: true };
                    }
                    b'\n' if any => self.size_done(),
                    _ if any => self.state = State::Ext,
                    _ => return Err(format!("bad chunk size byte {b:#04x}")),
                },
                State::Ext => {
                    if b == b'\n' {
                        self.size_done();
                    }
                }
                State::Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    out(&input[i..i + take]);
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    i += take;
                    continue;
                }
                State::DataEnd => match b {
                    b'\r' => {}
                    b'\n' => self.state = State::Size { any: false },
                    _ => return Err("chunk data longer than its size".into()),
                },
                State::Trailer { empty } => match b {
                    b'\r' => {}
                    b'\n' if empty => {
                        self.state = State::Done;
                        return Ok(i + 1);
                    }
                    b'\n' => self.state = State::Trailer { empty: true },
                    _ => self.state = State::Trailer { empty: false },
                },
                State::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }

    fn size_done(&mut self) {
        self.state = if self.size == 0 {
            State::Trailer { empty: true }
        } else {
            State::Data(self.size)
        };
        self.size = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        for ok in [
            "127.0.0.1",
            "127.1.2.3",
            "localhost",
            "LOCALHOST",
            "[::1]",
            "127.255.255.254",
        ] {
            assert!(loopback_ip(ok).is_some(), "{ok}");
        }
        for bad in [
            "10.0.0.1",
            "192.168.1.1",
            "0.0.0.0",
            "8.8.8.8",
            "example.com",
            "localhost.example.com",
            "[::]",
            "[fe80::1]",
            "::1",
            "128.0.0.1",
            "",
        ] {
            assert!(loopback_ip(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:8080/events?topic={topic}").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:8080");
        let v = crate::template::Values {
            topic: "demo.a",
            ..Default::default()
        };
        assert_eq!(t.path.render(&v), "/events?topic=demo.a");

        let t = Target::parse("http://[::1]:9/x").unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(t.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(t.path.render(&v), "/");
    }

    #[test]
    fn refuses_other_hosts() {
        for url in [
            "http://10.1.2.3:8080/",
            "http://example.com/x",
            "http://[2001:db8::1]:80/",
        ] {
            assert!(
                matches!(Target::parse(url), Err(Error::NotLoopback(_))),
                "{url}"
            );
        }
        for url in [
            "https://127.0.0.1/",
            "http://127.0.0.1:x/",
            "http://{topic}/",
            "http://u@127.0.0.1/",
        ] {
            assert!(matches!(Target::parse(url), Err(Error::Usage(_))), "{url}");
        }
    }

    #[test]
    fn parses_heads() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nxyz";
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.body, BodyKind::Chunked);
        assert_eq!(h.len, raw.len() - 3);
        assert!(!h.close);
        let h =
            parse_head(b"HTTP/1.1 202 Accepted\r\ncontent-length: 12\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            (h.status, h.body, h.close),
            (202, BodyKind::Length(12), true)
        );
        let h = parse_head(b"HTTP/1.0 503 Busy\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.body, h.close), (BodyKind::Close, true));
        let h = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::None);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_any_split() {
        let body = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for i in 0..=body.len() {
            let mut d = Chunked::new();
            let mut got = Vec::new();
            let a = d
                .feed(&body[..i], &mut |p| got.extend_from_slice(p))
                .unwrap();
            assert_eq!(a, i.min(body.len() - 4));
            let b = d
                .feed(&body[a..], &mut |p| got.extend_from_slice(p))
                .unwrap();
            assert_eq!(&body[a + b..], b"NEXT", "split at {i}");
            assert!(d.done());
            assert_eq!(got, b"hello, world");
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut d = Chunked::new();
        assert!(d.feed(b"zz\r\n", &mut |_| {}).is_err());
        let mut d = Chunked::new();
        assert!(d.feed(b"1\r\nab\r\n", &mut |_| {}).is_err());
    }
}

//! The Server-Sent Events wire format: an event's fields to bytes, and the
//! HTTP/1.1 chunk that carries a frame. Pure functions over their arguments;
//! nothing here knows the hub or a connection.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// The fields of one SSE block, written in this order: comment, retry, id, event, data.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fields<'a> {
    pub comment: Option<&'a str>,
    pub retry: Option<Duration>,
    pub id: Option<&'a str>,
    pub event: Option<&'a str>,
    pub data: Option<&'a str>,
}

/// Encodes one block, ending in a blank line.
///
/// Data is split on CRLF, CR and LF into one `data:` line each, since a CR inside a
/// value would end the line for the client. `comment`, `id` and `event` must not
/// contain line breaks; callers check them.
pub fn encode(f: &Fields<'_>) -> Bytes {
    let data_len = f.data.map_or(0, |d| d.len() + 8 + d.len() / 8);
    let mut buf = BytesMut::with_capacity(32 + data_len + f.event.map_or(0, str::len));
    if let Some(c) = f.comment {
        buf.put_u8(b':');
        if !c.is_empty() {
            buf.put_u8(b' ');
            buf.put_slice(c.as_bytes());
        }
        buf.put_u8(b'\n');
    }
    if let Some(r) = f.retry {
        let mut s = String::new();
        let _ = writeln!(s, "retry: {}", r.as_millis());
        buf.put_slice(s.as_bytes());
    }
    if let Some(id) = f.id {
        put_field(&mut buf, b"id", id);
    }
    if let Some(ev) = f.event {
        put_field(&mut buf, b"event", ev);
    }
    if let Some(data) = f.data {
        let mut rest = data;
        loop {
            // Bytes, not chars: a `char` pattern decodes UTF-8 as it goes, several
            // times the cost, and this runs over every event's data.
            let end = rest
                .bytes()
                .position(|b| b == b'\r' || b == b'\n')
                .unwrap_or(rest.len());
            put_field(&mut buf, b"data", &rest[..end]);
            if end == rest.len() {
                break;
            }
            let skip = if rest[end..].starts_with("\r\n") {
                2
            } else {
                1
            };
            rest = &rest[end + skip..];
        }
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

fn put_field(buf: &mut BytesMut, name: &[u8], value: &str) {
    buf.put_slice(name);
    buf.put_u8(b':');
    if !value.is_empty() {
        buf.put_u8(b' ');
        buf.put_slice(value.as_bytes());
    }
    buf.put_u8(b'\n');
}

/// Whether a value may stand in an `event:` or `id:` field.
pub fn is_field_safe(s: &str) -> bool {
    !s.contains(['\r', '\n', '\0'])
}

/// Event names starting with `hookcast.` are hookcast's own (`hookcast.resync`):
/// a webhook must not be able to forge one.
pub fn is_reserved_event(name: &str) -> bool {
    name.starts_with("hookcast.")
}

/// A frame framed as one HTTP/1.1 chunk, `{len:x}\r\n{frame}\r\n`, in one buffer.
/// Events are framed once when published, so every HTTP/1.1 subscriber writes
/// the very same bytes; HTTP/2 and hyper's path take the frame as a slice of it.
#[derive(Debug, Clone)]
pub struct Chunk {
    wire: Bytes,
    start: usize,
}

impl Chunk {
    /// Frames the concatenation of `parts`.
    pub fn from_parts(parts: &[&[u8]]) -> Chunk {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let head = format!("{len:x}\r\n");
        let mut wire = BytesMut::with_capacity(head.len() + len + 2);
        wire.put_slice(head.as_bytes());
        for p in parts {
            wire.put_slice(p);
        }
        wire.put_slice(b"\r\n");
        Chunk {
            wire: wire.freeze(),
            start: head.len(),
        }
    }

    /// The SSE frame alone.
    pub fn frame(&self) -> Bytes {
        self.wire.slice(self.start..self.wire.len() - 2)
    }

    /// The frame with its chunk framing.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }
}

/// Everything of an event's frame after its `id:` line: the `event:` and
/// `data:` lines and the blank line. Encoded apart from the id so that it can be
/// done before the id is known (outside the hub's lock).
pub fn event_tail(event: Option<&str>, data: &str) -> Bytes {
    encode(&Fields {
        event,
        data: Some(data),
        ..Default::default()
    })
}

/// An event's whole frame, `id:` line first, framed as one HTTP/1.1 chunk.
pub fn event_chunk(id: &str, tail: &[u8]) -> Chunk {
    Chunk::from_parts(&[b"id: ", id.as_bytes(), b"\n", tail])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: Fields<'_>) -> String {
        String::from_utf8(encode(&f).to_vec()).unwrap()
    }

    #[test]
    fn encodes_fields_in_order() {
        let f = Fields {
            id: Some("42"),
            event: Some("order.created"),
            data: Some("{\"id\":1}"),
            ..Default::default()
        };
        assert_eq!(enc(f), "id: 42\nevent: order.created\ndata: {\"id\":1}\n\n");
        assert_eq!(
            enc(Fields {
                data: Some("a\r\nb\rc"),
                ..Default::default()
            }),
            "data: a\ndata: b\ndata: c\n\n"
        );
        assert_eq!(
            enc(Fields {
                data: Some(""),
                ..Default::default()
            }),
            "data:\n\n"
        );
        assert_eq!(
            enc(Fields {
                data: Some("x\n"),
                ..Default::default()
            }),
            "data: x\ndata:\n\n"
        );
        assert_eq!(
            enc(Fields {
                comment: Some(""),
                retry: Some(Duration::from_secs(3)),
                ..Default::default()
            }),
            ":\nretry: 3000\n\n"
        );
    }
}

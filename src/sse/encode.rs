//! The Server-Sent Events wire format: an event's fields to bytes, and the
//! HTTP/1.1 chunk that carries a frame. Pure functions over their arguments;
//! nothing here knows the hub or a connection.

use std::time::Duration;

use bytes::Bytes;

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
    let mut retry = itoa::Buffer::new();
    let retry = f.retry.map(|r| retry.format(r.as_millis()));
    let len = f.comment.map_or(0, |c| field_len(b"", c))
        + retry.map_or(0, |r| field_len(b"retry", r))
        + f.id.map_or(0, |id| field_len(b"id", id))
        + fields_len(f.event, f.data);
    // Of the exact size: `Bytes` takes a full `Vec` over as it is, while a
    // spare capacity would cost it one more allocation.
    let mut buf = Vec::with_capacity(len);
    if let Some(c) = f.comment {
        put_field(&mut buf, b"", c);
    }
    if let Some(r) = retry {
        put_field(&mut buf, b"retry", r);
    }
    if let Some(id) = f.id {
        put_field(&mut buf, b"id", id);
    }
    put_fields(&mut buf, f.event, f.data);
    debug_assert_eq!(buf.len(), len);
    Bytes::from(buf)
}

/// The `event:` and `data:` lines and the blank line that ends the block.
fn put_fields(buf: &mut Vec<u8>, event: Option<&str>, data: Option<&str>) {
    if let Some(ev) = event {
        put_field(buf, b"event", ev);
    }
    for line in data.into_iter().flat_map(lines) {
        put_field(buf, b"data", line);
    }
    buf.push(b'\n');
}

/// What [`put_fields`] writes, in bytes.
fn fields_len(event: Option<&str>, data: Option<&str>) -> usize {
    event.map_or(0, |ev| field_len(b"event", ev))
        + data
            .into_iter()
            .flat_map(lines)
            .map(|l| field_len(b"data", l))
            .sum::<usize>()
        + 1
}

/// The lines of a data value, split on CRLF, CR and LF.
fn lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        // Found with SIMD: this runs over every event's data, twice.
        match memchr::memchr2(b'\r', b'\n', r.as_bytes()) {
            None => {
                rest = None;
                Some(r)
            }
            Some(end) => {
                let skip = if r[end..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&r[end + skip..]);
                Some(&r[..end])
            }
        }
    })
}

fn put_field(buf: &mut Vec<u8>, name: &[u8], value: &str) {
    buf.extend_from_slice(name);
    buf.push(b':');
    if !value.is_empty() {
        buf.push(b' ');
        buf.extend_from_slice(value.as_bytes());
    }
    buf.push(b'\n');
}

fn field_len(name: &[u8], value: &str) -> usize {
    name.len() + 2 + if value.is_empty() { 0 } else { 1 + value.len() }
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

/// Hex digits of a chunk size: a `usize`'s at most.
const HEX_DIGITS: usize = 16;

/// `n` in lowercase hex, as chunk sizes are written, on the stack.
fn hex(n: usize, out: &mut [u8; HEX_DIGITS]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = HEX_DIGITS;
    let mut n = n;
    loop {
        i -= 1;
        out[i] = DIGITS[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &out[i..];
        }
    }
}

impl Chunk {
    /// Frames the concatenation of `parts`.
    pub fn from_parts(parts: &[&[u8]]) -> Chunk {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut digits = [0; HEX_DIGITS];
        let head = hex(len, &mut digits);
        let mut wire = Vec::with_capacity(head.len() + 2 + len + 2);
        wire.extend_from_slice(head);
        wire.extend_from_slice(b"\r\n");
        for p in parts {
            wire.extend_from_slice(p);
        }
        wire.extend_from_slice(b"\r\n");
        Chunk {
            wire: Bytes::from(wire),
            start: head.len() + 2,
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

/// Everything of an event's frame after its `id:` line (the `event:` and
/// `data:` lines and the blank line) and the chunk's closing CRLF. Encoded
/// apart from the id so that it can be done before the id is known (outside
/// the hub's lock), with room left in front of it for the chunk size and the
/// `id:` line, so that [`event_chunk`] frames it where it is.
#[derive(Debug)]
pub struct Tail {
    /// The room, zeroed, then the tail and CRLF; of the exact size.
    buf: Vec<u8>,
    room: usize,
}

impl Tail {
    /// The tail's bytes, without the room and the CRLF.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.room..self.buf.len() - 2]
    }
}

/// The tail of an event whose id will have at most `max_id` bytes.
pub fn event_tail(event: Option<&str>, data: &str, max_id: usize) -> Tail {
    // The chunk size and CRLF, then `id: `, the id and LF.
    let room = HEX_DIGITS + 2 + 4 + max_id + 1;
    let len = room + fields_len(event, Some(data)) + 2;
    let mut buf = Vec::with_capacity(len);
    buf.resize(room, 0);
    put_fields(&mut buf, event, Some(data));
    buf.extend_from_slice(b"\r\n");
    debug_assert_eq!(buf.len(), len);
    Tail { buf, room }
}

/// An event's whole frame, `id:` line first, framed as one HTTP/1.1 chunk:
/// written into the room in front of `tail`, so its bytes are not copied.
pub fn event_chunk(id: &str, tail: Tail) -> Chunk {
    let frame_len = 4 + id.len() + 1 + tail.buf.len() - tail.room - 2;
    let mut digits = [0; HEX_DIGITS];
    let size = hex(frame_len, &mut digits);
    let head_len = size.len() + 2 + 4 + id.len() + 1;
    let Some(start) = tail.room.checked_sub(head_len) else {
        // An id longer than the tail was made for.
        return Chunk::from_parts(&[b"id: ", id.as_bytes(), b"\n", tail.bytes()]);
    };
    let mut buf = tail.buf;
    let mut at = start;
    for piece in [size, b"\r\n", b"id: ", id.as_bytes(), b"\n"] {
        buf[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    }
    let mut wire = Bytes::from(buf);
    // Moves the start; the buffer stays one allocation.
    bytes::Buf::advance(&mut wire, start);
    Chunk {
        wire,
        start: size.len() + 2,
    }
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

    /// An event's chunk, made in the room before its tail, is the one framed
    /// from its parts; an id longer than the room was made for is framed apart.
    #[test]
    fn an_event_chunk_is_its_parts_framed() {
        let long = "x".repeat(60);
        for (id, max_id, event, data) in [
            ("abc-1", 31, None, ""),
            ("abc-12345", 31, Some("push"), "a\r\nb\rc\n"),
            ("7", 1, Some("e"), &*"d".repeat(300)),
            (&*long, 31, None, "x"),
        ] {
            let tail = encode(&Fields {
                event,
                data: Some(data),
                ..Default::default()
            });
            let want = Chunk::from_parts(&[b"id: ", id.as_bytes(), b"\n", &tail]);
            let got = event_chunk(id, event_tail(event, data, max_id));
            assert_eq!(got.wire(), want.wire(), "{id}");
            assert_eq!(got.frame(), want.frame(), "{id}");
        }
        let wire = Chunk::from_parts(&[&[b'a'; 0x1f0][..]]);
        assert!(wire.wire().starts_with(b"1f0\r\naaa"));
        assert!(wire.wire().ends_with(b"a\r\n"));
    }
}

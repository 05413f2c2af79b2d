//! An incremental Server-Sent Events parser: bytes in any chunking, CR / LF / CRLF line ends, `id`, `event`, `data` and comments.
//!
//! It follows the WHATWG event-stream rules for what it keeps: one optional space
//! after the colon is dropped, `data` lines are joined with `\n`, a blank line
//! dispatches, a block without `data` dispatches nothing, and the last `id` persists.
//! `retry` and unknown fields are ignored. Complete lines are parsed straight from
//! the input; only a line split across reads is copied.

/// One dispatched event; the slices live until the next call to [`Parser::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The last `id` seen on this stream (empty if none).
    pub id: &'a [u8],
    /// The `event` field of this block (empty means `message`).
    pub event: &'a [u8],
    /// The `data` lines joined with `\n`.
    pub data: &'a [u8],
}

/// What the parser reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Event(Event<'a>),
    /// A comment line's text after the `:` (heartbeats, preludes).
    Comment(&'a [u8]),
}

/// Parser state for one stream.
#[derive(Debug, Default)]
pub struct Parser {
    partial: Vec<u8>,
    after_cr: bool,
    started: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Vec<u8>,
    id: Vec<u8>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Parses the next bytes of the stream, calling `f` for each comment and event.
    pub fn feed(&mut self, mut input: &[u8], mut f: impl FnMut(Item<'_>)) {
        if self.after_cr && !input.is_empty() {
            self.after_cr = false;
            if input[0] == b'\n' {
                input = &input[1..];
            }
        }
        while let Some(pos) = memchr::memchr2(b'\r', b'\n', input) {
            if self.partial.is_empty() {
                self.line(&input[..pos], &mut f);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&input[..pos]);
                self.line(&line, &mut f);
                line.clear();
                self.partial = line;
            }
            let cr = input[pos] == b'\r';
            input = &input[pos + 1..];
            if cr {
                match input.first() {
                    None => self.after_cr = true,
                    Some(b'\n') => input = &input[1..],
                    Some(_) => {}
                }
            }
        }
        self.partial.extend_from_slice(input);
    }

    fn line(&mut self, mut line: &[u8], f: &mut impl FnMut(Item<'_>)) {
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            if self.has_data {
                self.data.pop();
                f(Item::Event(Event {
                    id: &self.id,
                    event: &self.event,
                    data: &self.data,
                }));
            }
            self.data.clear();
            self.has_data = false;
            self.event.clear();
            return;
        }
        if line[0] == b':' {
            f(Item::Comment(&line[1..]));
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            b"id" if !value.contains(&0) => {
                self.id.clear();
                self.id.extend_from_slice(value);
            }
            _ => {}
        }
    }
}

/// Finds the unsigned integer JSON field `key` (given with its quotes, e.g. `b"\"seq\""`)
/// anywhere in `data`: the first occurrence followed by optional spaces, `:`, optional
/// spaces and digits. Cheap enough to run on every delivery; no JSON is parsed.
pub fn json_u64(data: &[u8], key: &[u8]) -> Option<u64> {
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&data[from..], key) {
        let mut rest = &data[from + at + key.len()..];
        rest = trim_start(rest);
        if let Some(r) = rest.strip_prefix(b":") {
            let r = trim_start(r);
            let digits = r.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 && digits <= 20 {
                let mut n: u64 = 0;
                for &d in &r[..digits] {
                    n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
                }
                return Some(n);
            }
        }
        from += at + key.len();
    }
    None
}

fn trim_start(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Event(String, String, String),
        Comment(String),
    }

    fn s(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<Owned> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |it| {
                out.push(match it {
                    Item::Event(e) => Owned::Event(s(e.id), s(e.event), s(e.data)),
                    Item::Comment(c) => Owned::Comment(s(c)),
                })
            });
        }
        out
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: hello\r\nretry: 3000\r\n\r\nid: 1\r\nevent: tick\r\ndata: {\"seq\":1}\r\n\r\ndata:a\rdata: b\r\rid\n:\ndata\n\nfield-without-colon\ndata:  two spaces\n\n: end";

    fn expected() -> Vec<Owned> {
        vec![
            Owned::Comment(" hello".into()),
            Owned::Event("1".into(), "tick".into(), "{\"seq\":1}".into()),
            Owned::Event("1".into(), "".into(), "a\nb".into()),
            Owned::Comment("".into()),
            Owned::Event("".into(), "".into(), "".into()),
            Owned::Event("".into(), "".into(), " two spaces".into()),
        ]
    }

    #[test]
    fn parses_whole_stream() {
        assert_eq!(parse_chunks(&[STREAM]), expected());
    }

    #[test]
    fn chunk_boundaries_anywhere() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let got = parse_chunks(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]);
                assert_eq!(got, expected(), "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_chunks(&chunks), expected());
    }

    #[test]
    fn crlf_split_between_reads_is_one_line_end() {
        let got = parse_chunks(&[b"data: x\r", b"\n\r", b"\ndata: y\r", b"\r"]);
        assert_eq!(
            got,
            vec![
                Owned::Event("".into(), "".into(), "x".into()),
                Owned::Event("".into(), "".into(), "y".into())
            ]
        );
    }

    #[test]
    fn block_without_data_dispatches_nothing_and_resets_event() {
        let got = parse_chunks(&[b"event: a\n\ndata: d\n\n"]);
        assert_eq!(got, vec![Owned::Event("".into(), "".into(), "d".into())]);
    }

    #[test]
    fn incomplete_event_is_not_dispatched() {
        assert!(parse_chunks(&[b"data: x\n"]).is_empty());
    }

    #[test]
    fn finds_json_numbers() {
        let d = br#"{"topic":"seq","seq" : 42,"ts_ns":1700000000000000001}"#;
        assert_eq!(json_u64(d, b"\"seq\""), Some(42));
        assert_eq!(json_u64(d, b"\"ts_ns\""), Some(1_700_000_000_000_000_001));
        assert_eq!(json_u64(d, b"\"missing\""), None);
        assert_eq!(json_u64(br#"{"seq":"7"}"#, b"\"seq\""), None);
        assert_eq!(
            json_u64(br#"{"seq":99999999999999999999}"#, b"\"seq\""),
            None
        );
        assert_eq!(json_u64(b"", b"\"seq\""), None);
    }
}

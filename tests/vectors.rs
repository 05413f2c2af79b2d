//! The event-stream vectors (`tests/fixtures/vectors/sse-event-stream.json`):
//! the test parser against the WHATWG / web-platform-tests parse vectors, the encoder
//! against the encode vectors byte for byte, and encode-then-parse as a property.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use hookcast::sse::{Fields, encode};
use proptest::prelude::*;
use serde_json::Value;
use support::{Item, Parser, SseEvent};

/// Where they come from and how they were checked: `tests/fixtures/vectors/README.md`.
fn vectors() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vectors/sse-event-stream.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the SSE vectors at {} ({e})", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    let items = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("the vectors have no `{key}` list"));
    assert!(!items.is_empty(), "`{key}` is empty");
    items
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

/// Standard base64 with padding, as the vectors use it.
fn base64(s: &str) -> Vec<u8> {
    fn sextet(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    }
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        assert!(chunk.len() > 1, "truncated base64");
        let n = chunk
            .iter()
            .enumerate()
            .fold(0, |n, (i, &c)| n | (sextet(c) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// What a client saw: (type, data, lastEventId) per event, and the reconnection time.
type Seen = (Vec<(String, String, String)>, Option<u64>);

fn expected(events: &Value, reconnection: &Value) -> Seen {
    let events = events
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|e| {
            (
                str_field(e, "type").to_owned(),
                str_field(e, "data").to_owned(),
                str_field(e, "lastEventId").to_owned(),
            )
        })
        .collect();
    (events, reconnection.as_u64())
}

/// Parses `bytes` fed in the given pieces.
fn parse<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Item>, Seen) {
    let mut parser = Parser::new();
    let items: Vec<Item> = pieces.into_iter().flat_map(|p| parser.feed(p)).collect();
    let events = items
        .iter()
        .filter_map(|i| match i {
            Item::Event(SseEvent { event, data, id }) => {
                Some((event.clone(), data.clone(), id.clone()))
            }
            _ => None,
        })
        .collect();
    (items, (events, parser.reconnection_ms))
}

/// Parses `bytes` whole, one byte at a time, and split in two at every boundary;
/// all must agree. Returns what the whole parse saw.
fn parse_every_way(name: &str, bytes: &[u8]) -> Seen {
    let (whole_items, whole) = parse([bytes]);
    let (bytewise_items, bytewise) = parse(bytes.chunks(1));
    assert_eq!(
        bytewise_items, whole_items,
        "{name}: fed one byte at a time"
    );
    assert_eq!(bytewise, whole, "{name}: fed one byte at a time");
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        let (items, seen) = parse([a, b]);
        assert_eq!(items, whole_items, "{name}: split at byte {at}");
        assert_eq!(seen, whole, "{name}: split at byte {at}");
    }
    whole
}

#[test]
fn base64_decoder_decodes_known_values() {
    assert_eq!(base64(""), b"");
    assert_eq!(base64("Zg=="), b"f");
    assert_eq!(base64("Zm8="), b"fo");
    assert_eq!(base64("Zm9v"), b"foo");
    assert_eq!(base64("//79"), [0xFF, 0xFE, 0xFD]);
}

#[test]
fn parser_follows_every_parse_vector() {
    let v = vectors();
    for vector in list(&v, "parse_vectors") {
        let name = str_field(vector, "name");
        let input = base64(str_field(vector, "input_base64"));
        if let Ok(text) = std::str::from_utf8(&input) {
            assert_eq!(text, str_field(vector, "input_text"), "{name}: input_text");
        }
        let want = expected(
            &vector["expected_events"],
            &vector["expected_reconnection_time_ms"],
        );
        assert_eq!(parse_every_way(name, &input), want, "parse vector {name}");
    }
}

#[test]
fn encoder_matches_every_encode_vector() {
    let v = vectors();
    for vector in list(&v, "encode_vectors") {
        let name = str_field(vector, "name");
        let ev = &vector["event"];
        let opt = |k: &str| ev.get(k).map(|_| str_field(ev, k).to_owned());
        let (comment, id, event, data) = (opt("comment"), opt("id"), opt("event"), opt("data"));
        let fields = Fields {
            comment: comment.as_deref(),
            retry: ev
                .get("retry")
                .map(|r| Duration::from_millis(r.as_u64().expect("retry in ms"))),
            id: id.as_deref(),
            event: event.as_deref(),
            data: data.as_deref(),
        };
        let wire = encode(&fields);
        let want_wire = str_field(vector, "expected_wire");
        assert_eq!(
            base64(str_field(vector, "expected_wire_base64")),
            want_wire.as_bytes(),
            "{name}: the vector's two wires differ"
        );
        assert_eq!(
            String::from_utf8_lossy(&wire),
            want_wire,
            "encode vector {name}"
        );
        assert_eq!(&wire[..], want_wire.as_bytes(), "encode vector {name}");
        let want = expected(
            &vector["client_sees"],
            &vector["client_reconnection_time_ms"],
        );
        assert_eq!(
            parse_every_way(name, &wire),
            want,
            "encode vector {name}: parsed"
        );
    }
}

/// Data with the awkward parts made likely: line breaks of each kind, leading spaces,
/// colons, NUL, and any other character.
fn data() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<char>().prop_map(String::from),
        2 => "[a-z]{1,4}",
        1 => Just("\r\n".to_owned()),
        1 => Just("\r".to_owned()),
        1 => Just("\n".to_owned()),
        1 => Just(" ".to_owned()),
        1 => Just(":".to_owned()),
        1 => Just("\0".to_owned()),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_parse_round_trips(
        data in data(),
        event in proptest::option::of("[^\r\n\0]{0,16}"),
        id in proptest::option::of("[A-Za-z0-9._~-]{1,128}"),
        split in any::<prop::sample::Index>(),
    ) {
        let wire = encode(&Fields {
            id: id.as_deref(),
            event: event.as_deref(),
            data: Some(&data),
            ..Default::default()
        });
        let (a, b) = wire.split_at(split.index(wire.len() + 1));
        let (items, (events, retry)) = parse([a, b]);
        prop_assert_eq!(retry, None);
        prop_assert_eq!(items.len(), 1, "one item from {:?}: {:?}", wire, items);
        let want_type = match event.as_deref() {
            None | Some("") => "message",
            Some(e) => e,
        };
        let want_data = data.replace("\r\n", "\n").replace('\r', "\n");
        prop_assert_eq!(
            &events[0],
            &(want_type.to_owned(), want_data, id.unwrap_or_default())
        );
    }

    #[test]
    fn parser_never_panics(
        bytes in prop::collection::vec(
            prop_oneof![
                any::<u8>(),
                prop::sample::select(b"\r\n\r\n: data event id retry 0123\xEF\xBB\xBF".to_vec()),
            ],
            0..512,
        ),
        chunk in 1usize..64,
    ) {
        let mut parser = Parser::new();
        for piece in bytes.chunks(chunk) {
            for item in parser.feed(piece) {
                if let Item::Event(e) = item {
                    prop_assert!(!e.event.is_empty());
                }
            }
        }
    }
}

//! The event ids of the shared brokers: two numbers, `<a>-<b>`, ordered as the
//! pair (Redis: the stream id, milliseconds and a sequence; NATS: the stream's
//! epoch and its sequence), so that any replica can tell which of two ids is
//! newer. The hub mints ids of its own for `broker: memory` and knows nothing
//! of these.

use crate::hub::Subscription;

/// An id `<a>-<b>` of two decimal numbers, as a pair that orders as the broker
/// orders them; `None` for anything else (a hub id, a malformed one).
pub fn parse_stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Another replica sent the client events through `id`, further than this
/// replica's reader has read: those must not come again when they arrive live.
pub(super) fn skip_through(sub: &mut Subscription, id: (u64, u64)) {
    sub.skip_while_sent(move |live| parse_stream_id(live).is_some_and(|live| live <= id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_as_the_broker_does() {
        assert_eq!(
            parse_stream_id("1700000000000-0"),
            Some((1_700_000_000_000, 0))
        );
        assert!(parse_stream_id("9-10") > parse_stream_id("9-9"));
        assert!(parse_stream_id("10-0") > parse_stream_id("9-99"));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1",
            "1-2-3",
            "a-1",
            "1-+2",
            "99999999999999999999999-0",
        ] {
            assert_eq!(parse_stream_id(bad), None, "{bad}");
        }
    }
}

//! Event ids: `<epoch>-<seq>`, where the epoch is drawn at start, so that an id
//! from an earlier process is recognised as unknown rather than mistaken for a
//! position in this one. Ids use only `A-Z a-z 0-9 -`, increase with `seq`, and
//! stay far below the 128-byte limit.

use std::sync::Arc;

/// Longest id a client may send back; longer ones are unknown without parsing.
pub const MAX_ID_LEN: usize = 128;

/// Longest id this process mints: the epoch's 10 characters, `-` and at most
/// 20 digits.
pub(crate) const MAX_MINTED_LEN: usize = 31;

#[derive(Debug, Clone)]
pub(crate) struct Epoch(String);

impl Epoch {
    pub(crate) fn random() -> Self {
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut n = fastrand::u64(..);
        let mut s = String::with_capacity(10);
        for _ in 0..10 {
            s.push(DIGITS[(n % 36) as usize] as char);
            n /= 36;
        }
        Epoch(s)
    }

    /// Written on the stack, so that the id costs one allocation, its `Arc`'s.
    pub(crate) fn format(&self, seq: u64) -> Arc<str> {
        let mut buf = [0u8; MAX_MINTED_LEN];
        let epoch = self.0.as_bytes();
        buf[..epoch.len()].copy_from_slice(epoch);
        buf[epoch.len()] = b'-';
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(seq).as_bytes();
        let len = epoch.len() + 1 + digits.len();
        buf[epoch.len() + 1..len].copy_from_slice(digits);
        Arc::from(std::str::from_utf8(&buf[..len]).expect("ASCII"))
    }

    /// The sequence number of an id minted by this epoch.
    pub(crate) fn parse(&self, id: &str) -> Option<u64> {
        if id.len() > MAX_ID_LEN {
            return None;
        }
        let (epoch, seq) = id.rsplit_once('-')?;
        if epoch != self.0 || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        seq.parse().ok()
    }
}

/// Whether `id` uses only the bytes an event id may hold (`A-Z a-z 0-9 . _ ~ -`),
/// within [`MAX_ID_LEN`].
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign_ids() {
        let e = Epoch::random();
        let id = e.format(42);
        assert!(is_valid_id(&id));
        assert_eq!(e.parse(&id), Some(42));
        let other = Epoch::random();
        assert_eq!(other.parse(&id), None);
        assert_eq!(e.parse("42"), None);
        assert_eq!(e.parse(&format!("{}-", e.0)), None);
        assert_eq!(e.parse(&format!("{}-+1", e.0)), None);
        for seq in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            assert_eq!(&*e.format(seq), format!("{}-{seq}", e.0));
        }
    }
}

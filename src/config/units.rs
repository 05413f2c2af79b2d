//! Durations (`500ms`, `1.5s`, `1h30m`, `1d`) and sizes (`1024`, `64KiB`, `1Mi`, `1MB`)
//! as written in YAML.
//!
//! Numbers may have a decimal fraction; it is computed exactly (no floating point),
//! so `0.1s` is 100 ms and `1.5KiB` is 1536 bytes.

use std::fmt;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::Checker;

const DURATION_UNITS: &str = "d, h, m, s or ms";
const SIZE_UNITS: &str = "KiB, MiB, GiB (or Ki, Mi, Gi), KB, MB or GB";

/// Why a duration was refused; each variant holds the text as written (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DurationError {
    Empty,
    NotDuration(String),
    NoUnit(String),
    UnknownUnit(String),
    /// `1m1h`: parts must go from the largest unit down, each once.
    Order(String),
    TooLarge(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => write!(
                f,
                "an empty string is not a duration; write a number with a unit ({DURATION_UNITS})"
            ),
            DurationError::NotDuration(s) => write!(
                f,
                "`{s}` is not a duration; write a number with a unit ({DURATION_UNITS}): \
                 500ms, 1.5s, 10m, 1h30m, 1d"
            ),
            DurationError::NoUnit(s) => write!(
                f,
                "duration `{s}` needs a unit: {DURATION_UNITS} (e.g. `{s}s`)"
            ),
            DurationError::UnknownUnit(unit) => {
                write!(f, "`{unit}` is not a duration unit; use {DURATION_UNITS}")
            }
            DurationError::Order(s) => write!(
                f,
                "duration `{s}`: write its parts from the largest unit down, each once (e.g. 1h30m)"
            ),
            DurationError::TooLarge(s) => write!(f, "`{s}` is too large a duration"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Why a size was refused; each variant holds the text as written (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SizeError {
    NotSize(String),
    UnknownUnit(String),
    NotWhole(String),
    TooLarge(String),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::NotSize(s) => write!(
                f,
                "`{s}` is not a size; write bytes, or a number with {SIZE_UNITS}"
            ),
            SizeError::UnknownUnit(unit) => {
                write!(f, "`{unit}` is not a size unit; use {SIZE_UNITS}")
            }
            SizeError::NotWhole(s) => write!(f, "`{s}` is not a whole number of bytes"),
            SizeError::TooLarge(s) => write!(f, "`{s}` is too large a size"),
        }
    }
}

impl std::error::Error for SizeError {}

/// A decimal number as `mantissa / 10^scale`, and the rest of `s` after it.
fn number(s: &str) -> Option<((u128, u32), &str)> {
    let int = s.bytes().take_while(u8::is_ascii_digit).count();
    if int == 0 {
        return None;
    }
    let (mut mantissa, mut scale) = (0u128, 0u32);
    let mut rest = &s[int..];
    for b in s[..int].bytes() {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(b - b'0'))?;
    }
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        for b in frac[..n].bytes() {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(u128::from(b - b'0'))?;
            scale += 1;
        }
        rest = &frac[n..];
    }
    Some(((mantissa, scale), rest))
}

/// `mantissa / 10^scale * per_unit`, and whether it came out whole.
fn scaled((mantissa, scale): (u128, u32), per_unit: u128) -> Option<(u128, bool)> {
    let div = 10u128.checked_pow(scale)?;
    let total = mantissa.checked_mul(per_unit)?;
    Some((total / div, total % div == 0))
}

/// Parses a duration that carries its units: one or more `<number><unit>` parts from
/// the largest unit down, each unit at most once (`1h30m`, `2m30s`, `1.5s`).
fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    const NANOS: [(&str, u128); 5] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    let s = s.trim();
    let too_large = || DurationError::TooLarge(s.to_owned());
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = s;
    let mut nanos: u128 = 0;
    // Units must come in decreasing order; this is the index of the next allowed one.
    let mut next = 0;
    while !rest.is_empty() {
        let Some((n, after)) = number(rest) else {
            return Err(DurationError::NotDuration(s.to_owned()));
        };
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::NoUnit(s.to_owned()));
        }
        let Some(i) = NANOS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit(unit.to_owned()));
        };
        if i < next {
            return Err(DurationError::Order(s.to_owned()));
        }
        next = i + 1;
        let (part, _) = scaled(n, NANOS[i].1).ok_or_else(too_large)?;
        nanos = nanos.checked_add(part).ok_or_else(too_large)?;
        rest = tail;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    // Below u64::MAX seconds so that adding it to an Instant stays meaningful.
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Parses a size: a bare number is bytes; KiB/MiB/GiB (or Ki/Mi/Gi, as Kubernetes
/// writes them) are powers of 1024, KB/MB/GB of 1000.
fn parse_size(s: &str) -> Result<u64, SizeError> {
    let s = s.trim();
    let Some((n, unit)) = number(s) else {
        return Err(SizeError::NotSize(s.to_owned()));
    };
    let mult: u128 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(SizeError::UnknownUnit(other.to_owned())),
    };
    let too_large = || SizeError::TooLarge(s.to_owned());
    let (bytes, whole) = scaled(n, mult).ok_or_else(too_large)?;
    if !whole {
        return Err(SizeError::NotWhole(s.to_owned()));
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Durations, sizes and counts, each reported under its key.
impl Checker<'_> {
    pub(super) fn duration(
        &mut self,
        key: &str,
        v: Option<Spanned<String>>,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(&v.value) {
            Ok(d) if d < min => {
                self.error(
                    &v.referenced,
                    format!("{key} must be at least {}ms", min.as_millis()),
                );
                default
            }
            Ok(d) => d,
            Err(msg) => {
                self.error(&v.referenced, format!("{key}: {msg}"));
                default
            }
        }
    }

    pub(super) fn size(&mut self, key: &str, v: Option<Spanned<String>>, default: u64) -> u64 {
        let Some(v) = v else { return default };
        match parse_size(&v.value) {
            Ok(0) => {
                self.error(&v.referenced, format!("{key} must be at least 1 byte"));
                default
            }
            Ok(n) => n,
            Err(msg) => {
                self.error(&v.referenced, format!("{key}: {msg}"));
                default
            }
        }
    }

    pub(super) fn count(
        &mut self,
        key: &str,
        v: Option<Spanned<u64>>,
        default: usize,
        why: &str,
    ) -> usize {
        let Some(v) = v else { return default };
        if v.value == 0 {
            self.error(&v.referenced, format!("{key} must be at least 1{why}"));
            return default;
        }
        usize::try_from(v.value).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("500ms", ms(500)),
            ("15s", ms(15_000)),
            ("10m", ms(600_000)),
            ("1h", ms(3_600_000)),
            ("1d", ms(86_400_000)),
            ("1h30m", ms(5_400_000)),
            ("2m30s", ms(150_000)),
            ("1d2h3m4s5ms", ms(93_784_005)),
            ("1.5s", ms(1_500)),
            ("0.1s", ms(100)),
            ("1.5h", ms(5_400_000)),
            ("0.5ms", Duration::from_micros(500)),
            (" 15s ", ms(15_000)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in [
            "15",
            "s",
            "1.s",
            ".5s",
            "-1s",
            "10x",
            "",
            "1m1h",
            "1s1s",
            "1h 30m",
            "1h30",
            "99999999999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(
            parse_duration("1m1h")
                .unwrap_err()
                .to_string()
                .contains("largest unit down")
        );
        assert_eq!(
            parse_duration("15"),
            Err(DurationError::NoUnit("15".into()))
        );
        assert!(
            parse_duration("15")
                .unwrap_err()
                .to_string()
                .contains("needs a unit: d, h, m, s or ms (e.g. `15s`)")
        );
    }

    #[test]
    fn sizes() {
        for (text, want) in [
            ("1024", 1024),
            ("1MiB", 1 << 20),
            ("1Mi", 1 << 20),
            ("64Ki", 64 << 10),
            ("2Gi", 2 << 30),
            ("16MiB", 16 << 20),
            ("1.5KiB", 1536),
            ("2KB", 2000),
            ("1GB", 1_000_000_000),
            ("0.5MB", 500_000),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in [
            "MiB",
            "-1",
            "1mb",
            "1 TiB",
            "1.5",
            "0.1KiB",
            "1e3",
            "99999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(
            parse_size("1.5")
                .unwrap_err()
                .to_string()
                .contains("whole number of bytes")
        );
    }
}

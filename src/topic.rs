//! Topic names and subscriber patterns: validation and matching.
//!
//! A topic is made of non-empty `.`-separated segments of `A-Z a-z 0-9 . _ - : /`,
//! at most 256 bytes. A pattern may use `*` (exactly one segment) and, as its
//! last segment, `>` (one or more segments).

use std::fmt;
use std::sync::Arc;

/// Longest topic or pattern accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Whether `b` may appear in a topic name.
pub fn is_topic_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/')
}

/// Why a topic or pattern was refused; `Display` is a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    TooLong(usize),
    ForbiddenChar(char),
    EmptySegment,
    Wildcard,
    MisplacedWildcard,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("topic is empty"),
            Self::TooLong(n) => write!(f, "topic is {n} bytes long, at most {MAX_TOPIC_LEN} are allowed"),
            Self::ForbiddenChar(c) => write!(f, "topic contains {c:?}; only A-Z a-z 0-9 . _ - : / are allowed"),
            Self::EmptySegment => f.write_str("topic has an empty segment (leading, trailing or double `.`)"),
            Self::Wildcard => f.write_str("a topic cannot contain the wildcards `*` or `>`"),
            Self::MisplacedWildcard => {
                f.write_str("wildcards must be whole segments, and `>` only the last one (`orders.*`, `tenant.7.>`)")
            }
        }
    }
}

impl std::error::Error for TopicError {}

/// Checks a concrete topic name (no wildcards).
pub fn validate_topic(s: &str) -> Result<(), TopicError> {
    // Every webhook's topics come through here: one pass over the bytes accepts a
    // valid name; the checks below find which error an invalid one gets.
    if s.len() <= MAX_TOPIC_LEN {
        let mut prev = b'.';
        let mut valid = true;
        for &b in s.as_bytes() {
            if !is_topic_byte(b) || (b == b'.' && prev == b'.') {
                valid = false;
                break;
            }
            prev = b;
        }
        if valid && prev != b'.' {
            return Ok(());
        }
    }
    check_common(s)?;
    for seg in s.split('.') {
        if seg.is_empty() {
            return Err(TopicError::EmptySegment);
        }
    }
    Ok(())
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii() && is_topic_byte(c as u8)) && c != '*' && c != '>')
    {
        return Err(TopicError::ForbiddenChar(c));
    }
    if s.contains(['*', '>']) {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// What a subscriber asked for: one exact topic, or a pattern with wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Filter {
    Topic(Arc<str>),
    Pattern(Pattern),
}

impl Filter {
    /// Parses what a subscriber sent in `?topic=`.
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        if s.contains(['*', '>']) {
            Pattern::parse(s).map(Filter::Pattern)
        } else {
            validate_topic(s)?;
            Ok(Filter::Topic(Arc::from(s)))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Filter::Topic(t) => t,
            Filter::Pattern(p) => p.as_str(),
        }
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Filter::Topic(t) => &**t == topic,
            Filter::Pattern(p) => p.matches(topic),
        }
    }

    /// Whether every topic this filter matches is also matched by `outer`.
    pub fn within(&self, outer: &Filter) -> bool {
        match (self, outer) {
            (_, Filter::Topic(t)) => self.as_str() == &**t,
            (Filter::Topic(t), Filter::Pattern(p)) => p.matches(t),
            (Filter::Pattern(inner), Filter::Pattern(p)) => p.covers(inner),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Literal(Box<str>),
    One,
    Rest,
}

/// A subscriber pattern such as `orders.*` or `tenant.7.>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    source: Arc<str>,
    segments: Box<[Segment]>,
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        if s.is_empty() {
            return Err(TopicError::Empty);
        }
        if s.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong(s.len()));
        }
        if let Some(c) = s
            .chars()
            .find(|&c| !(c.is_ascii() && (is_topic_byte(c as u8) || c == '*' || c == '>')))
        {
            return Err(TopicError::ForbiddenChar(c));
        }
        let parts: Vec<&str> = s.split('.').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            segments.push(match *part {
                "" => return Err(TopicError::EmptySegment),
                "*" => Segment::One,
                ">" if i == last => Segment::Rest,
                p if p.contains(['*', '>']) => return Err(TopicError::MisplacedWildcard),
                p => Segment::Literal(p.into()),
            });
        }
        Ok(Pattern {
            source: Arc::from(s),
            segments: segments.into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        for seg in self.segments.iter() {
            match seg {
                Segment::Rest => return parts.next().is_some(),
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if parts.next() != Some(&**l) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// Whether every topic matched by `inner` is matched by `self`.
    pub fn covers(&self, inner: &Pattern) -> bool {
        let (outer, inner) = (&self.segments, &inner.segments);
        for (i, seg) in outer.iter().enumerate() {
            match (seg, inner.get(i)) {
                (Segment::Rest, Some(_)) => return true,
                (_, None) => return false,
                (Segment::One, Some(Segment::Rest)) => return false,
                (Segment::One, Some(_)) => {}
                (Segment::Literal(a), Some(Segment::Literal(b))) if a == b => {}
                (Segment::Literal(_), Some(_)) => return false,
            }
        }
        outer.len() == inner.len()
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert!(validate_topic("orders.eu:1/x_y-z").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a b", "a*", "ä"] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_topic(&"a".repeat(257)),
            Err(TopicError::TooLong(257))
        );
        assert!(validate_topic(&"a".repeat(256)).is_ok());
    }

    #[test]
    fn patterns() {
        let p = Pattern::parse("orders.*").unwrap();
        assert!(p.matches("orders.eu"));
        assert!(!p.matches("orders"));
        assert!(!p.matches("orders.eu.created"));
        let p = Pattern::parse("tenant.7.>").unwrap();
        assert!(p.matches("tenant.7.a"));
        assert!(p.matches("tenant.7.a.b"));
        assert!(!p.matches("tenant.7"));
        assert!(Pattern::parse("*.x.*").unwrap().matches("a.x.b"));
        assert!(Pattern::parse(">").unwrap().matches("a"));
        for bad in ["ord*", "a.>.b", "a..b", "a.", "a.*x", ">x"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn coverage() {
        let f = |s: &str| Filter::parse(s).unwrap();
        assert!(f("orders.eu").within(&f("orders.*")));
        assert!(f("orders.*").within(&f("orders.>")));
        assert!(f("orders.*.x").within(&f("orders.>")));
        assert!(!f("orders.>").within(&f("orders.*")));
        assert!(!f("orders.*").within(&f("orders.eu")));
        assert!(f("a.b").within(&f("a.b")));
    }
}

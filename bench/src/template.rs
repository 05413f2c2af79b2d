//! URL and body templates: `{seq}`, `{ts_ns}`, `{topic}`, `{i}`, `{n}`, parsed once and filled without allocating.
//!
//! Only these five names are placeholders; every other brace is literal text, so a
//! JSON body such as `{"seq":{seq}}` needs no escaping.

/// A placeholder's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// The event's sequence number within its topic, from 1.
    Seq,
    /// Unix time in nanoseconds, taken just before the request is written.
    TsNs,
    /// The topic name (from `--topic-template`).
    Topic,
    /// The topic's index, from 0.
    I,
    /// The event's number over all topics, from 0.
    N,
}

const NAMES: [(&str, Var); 5] = [
    ("seq", Var::Seq),
    ("ts_ns", Var::TsNs),
    ("topic", Var::Topic),
    ("i", Var::I),
    ("n", Var::N),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Vec<u8>),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values a template is filled with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Values<'a> {
    pub seq: u64,
    pub ts_ns: u64,
    pub topic: &'a str,
    pub i: u64,
    pub n: u64,
}

impl Template {
    /// Parses `s`; it cannot fail, since unknown `{...}` stays literal.
    pub fn parse(s: &str) -> Template {
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            lit.extend_from_slice(&rest.as_bytes()[..open]);
            let after = &rest[open + 1..];
            let var = NAMES.iter().find_map(|&(name, v)| {
                after
                    .strip_prefix(name)
                    .filter(|r| r.starts_with('}'))
                    .map(|_| (v, name.len()))
            });
            match var {
                Some((v, len)) => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(v));
                    rest = &after[len + 1..];
                }
                None => {
                    lit.push(b'{');
                    rest = after;
                }
            }
        }
        lit.extend_from_slice(rest.as_bytes());
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Template { parts }
    }

    /// Whether the template contains `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }

    /// Appends the filled template to `out`.
    pub fn fill(&self, v: &Values<'_>, out: &mut Vec<u8>) {
        let mut num = itoa::Buffer::new();
        for part in &self.parts {
            match part {
                Part::Lit(b) => out.extend_from_slice(b),
                Part::Var(Var::Topic) => out.extend_from_slice(v.topic.as_bytes()),
                Part::Var(var) => {
                    let n = match var {
                        Var::Seq => v.seq,
                        Var::TsNs => v.ts_ns,
                        Var::I => v.i,
                        Var::N | Var::Topic => v.n,
                    };
                    out.extend_from_slice(num.format(n).as_bytes());
                }
            }
        }
    }

    /// The filled template as a string.
    pub fn render(&self, v: &Values<'_>) -> String {
        let mut out = Vec::new();
        self.fill(v, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The topic names: `--topic-template` filled with `{i}` = 0..count.
pub fn topic_names(template: &str, count: usize) -> Vec<String> {
    let t = Template::parse(template);
    (0..count as u64)
        .map(|i| {
            t.render(&Values {
                i,
                n: i,
                ..Values::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_json_body() {
        let t = Template::parse(r#"{"seq":{seq},"ts_ns":{ts_ns},"topic":"{topic}"}"#);
        let v = Values {
            seq: 7,
            ts_ns: 1_700_000_000_123_456_789,
            topic: "bench.3",
            i: 3,
            n: 27,
        };
        assert_eq!(
            t.render(&v),
            r#"{"seq":7,"ts_ns":1700000000123456789,"topic":"bench.3"}"#
        );
        assert!(t.uses(Var::Seq) && t.uses(Var::TsNs) && t.uses(Var::Topic));
        assert!(!t.uses(Var::N));
    }

    #[test]
    fn unknown_and_unclosed_braces_stay_literal() {
        let t = Template::parse("{a}{{seq}}{seq{topic");
        let v = Values {
            seq: 1,
            ..Values::default()
        };
        assert_eq!(t.render(&v), "{a}{1}{seq{topic");
        assert_eq!(Template::parse("").render(&v), "");
        assert_eq!(Template::parse("{").render(&v), "{");
    }

    #[test]
    fn fills_paths_and_appends() {
        let t = Template::parse("/hooks/{topic}?n={n}&i={i}");
        let mut out = b"POST ".to_vec();
        t.fill(
            &Values {
                topic: "demo.x",
                n: 0,
                i: 12,
                ..Values::default()
            },
            &mut out,
        );
        assert_eq!(out, b"POST /hooks/demo.x?n=0&i=12");
    }

    #[test]
    fn topic_names_count_from_zero() {
        assert_eq!(
            topic_names("bench.{i}", 3),
            ["bench.0", "bench.1", "bench.2"]
        );
        assert_eq!(topic_names("one", 2), ["one", "one"]);
    }
}

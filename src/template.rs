//! Templates that build a topic, event name, data or dedupe key from a request.
//!
//! `{path:NAME}`, `{query:NAME}`, `{header:NAME}`, `{json:/pointer}`, `{body}`,
//! for forwarded requests `{response:/pointer}`, and on stream routes the
//! subscriber's identity: `{claim:/pointer}` (JWT) and `{auth:/pointer}` (the auth
//! endpoint's answer). `{{` is a literal `{`; a `{` not
//! followed by a lowercase word and `:` or `}` is literal too, so JSON-shaped
//! templates like `{"repo":"{json:/repository/name}"}` read as they look.

use std::borrow::Cow;
use std::fmt;

use http::HeaderMap;
use http::header::HeaderName;
use serde_json::Value;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Path(String),
    Query(String),
    Header(HeaderName),
    Json(String),
    Response(String),
    Body,
    /// A verified token's claim (stream routes under `subscribers.auth: jwt`).
    Claim(String),
    /// The auth endpoint's JSON answer (stream routes under `subscribers.auth: upstream`).
    Auth(String),
}

impl Part {
    /// Whether the value comes from who the subscriber is, not from what the request says.
    pub fn is_identity(&self) -> bool {
        matches!(self, Part::Claim(_) | Part::Auth(_))
    }
}

/// A parsed template, rendered once per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template that cannot be parsed; `Display` is the message shown in config errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `{word` without its `}`.
    Unclosed {
        word: String,
    },
    /// `{path}`, `{query:}`, `{header}`: the kind needs a name.
    NeedsName {
        word: String,
    },
    /// `{json:id}`: a pointer must start with `/`.
    NotPointer {
        word: String,
        pointer: String,
    },
    BadHeaderName {
        name: String,
    },
    /// `{body:…}`.
    BodyArgument,
    UnknownKind {
        word: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unclosed { word } => {
                write!(f, "placeholder `{{{word}` is not closed with `}}`")
            }
            Self::NeedsName { word } => {
                write!(f, "placeholder `{{{word}:…}}` needs a name after `:`")
            }
            Self::NotPointer { word, pointer } => write!(
                f,
                "`{{{word}:{pointer}}}` is not a JSON Pointer; it must start with `/` (e.g. `{{{word}:/id}}`)"
            ),
            Self::BadHeaderName { name } => write!(
                f,
                "`{name}` in `{{header:{name}}}` is not a valid header name"
            ),
            Self::BodyArgument => f.write_str("`{body}` takes no argument"),
            Self::UnknownKind { word } => write!(
                f,
                "unknown placeholder kind `{word}`; expected path, query, header, json, response, body, claim or auth"
            ),
        }
    }
}

impl std::error::Error for ParseError {}

impl Template {
    pub fn parse(src: &str) -> Result<Self, ParseError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while let Some(pos) = rest.find('{') {
            lit.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('{') {
                lit.push('{');
                rest = tail;
                continue;
            }
            let word_len = after.bytes().take_while(|b| b.is_ascii_lowercase()).count();
            let (word, tail) = after.split_at(word_len);
            let is_placeholder = word_len > 0 && (tail.starts_with(':') || tail.starts_with('}'));
            if !is_placeholder {
                lit.push('{');
                rest = after;
                continue;
            }
            let close = tail.find('}').ok_or_else(|| ParseError::Unclosed {
                word: word.to_owned(),
            })?;
            let arg = tail[..close].strip_prefix(':');
            let part = placeholder(word, arg)?;
            if !lit.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut lit)));
            }
            parts.push(part);
            rest = &tail[close + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Ok(Template { parts })
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether the template is plain text with no placeholder.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    pub fn uses_json(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Json(_)))
    }

    pub fn uses_body(&self) -> bool {
        self.parts.contains(&Part::Body)
    }

    pub fn uses_response(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Response(_)))
    }

    pub fn uses_header(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Header(_)))
    }

    /// Whether a placeholder reads the subscriber's identity (`{claim:}`, `{auth:}`).
    pub fn uses_identity(&self) -> bool {
        self.parts.iter().any(Part::is_identity)
    }

    /// Whether every part is literal text or the subscriber's identity, so that
    /// the request itself chose nothing of it.
    pub fn identity_only(&self) -> bool {
        self.parts
            .iter()
            .all(|p| matches!(p, Part::Literal(_)) || p.is_identity())
    }

    /// Appends the rendering as JSON: a template that is exactly one `{json:}`,
    /// `{response:}`, `{claim:}` or `{auth:}` placeholder keeps the JSON type of
    /// its value; anything else is a JSON string of the rendered text.
    pub fn render_json(&self, input: &Input<'_>, out: &mut String) -> Result<(), RenderError> {
        let value = match self.parts.as_slice() {
            [part @ (Part::Json(_) | Part::Response(_) | Part::Claim(_) | Part::Auth(_))] => {
                input.value(part)?
            }
            _ => {
                push_json_str(out, &self.render(input)?);
                return Ok(());
            }
        };
        match value {
            Value::String(text) => push_json_str(out, text),
            // Writing a `Value` to a `String` cannot fail.
            other => out.push_str(&other.to_string()),
        }
        Ok(())
    }

    /// Renders against one request; every placeholder must resolve.
    pub fn render(&self, input: &Input<'_>) -> Result<String, RenderError> {
        // A template of one part (`{body}`, `{path:topic}`) is the common case:
        // one allocation of the exact size, rather than a String grown to it.
        if let [part] = self.parts.as_slice() {
            return Ok(match part {
                Part::Literal(s) => s.clone(),
                Part::Body => input.body_text()?.to_owned(),
                other => input.resolve(other)?.into_owned(),
            });
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Body => out.push_str(input.body_text()?),
                other => out.push_str(&input.resolve(other)?),
            }
        }
        Ok(out)
    }
}

fn placeholder(word: &str, arg: Option<&str>) -> Result<Part, ParseError> {
    let need = |arg: Option<&str>| match arg {
        Some(a) if !a.is_empty() => Ok(a.to_owned()),
        _ => Err(ParseError::NeedsName {
            word: word.to_owned(),
        }),
    };
    let pointer = |arg: Option<&str>| {
        let p = arg.unwrap_or_default();
        if p.is_empty() || p.starts_with('/') {
            Ok(p.to_owned())
        } else {
            Err(ParseError::NotPointer {
                word: word.to_owned(),
                pointer: p.to_owned(),
            })
        }
    };
    Ok(match word {
        "path" => Part::Path(need(arg)?),
        "query" => Part::Query(need(arg)?),
        "header" => {
            let name = need(arg)?;
            Part::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ParseError::BadHeaderName { name: name.clone() })?,
            )
        }
        "json" => Part::Json(pointer(arg)?),
        "response" => Part::Response(pointer(arg)?),
        "claim" => Part::Claim(pointer(arg)?),
        "auth" => Part::Auth(pointer(arg)?),
        "body" if arg.is_none() => Part::Body,
        "body" => return Err(ParseError::BodyArgument),
        other => {
            return Err(ParseError::UnknownKind {
                word: other.to_owned(),
            });
        }
    })
}

/// Why a template could not be rendered for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// A placeholder named something the request does not have.
    Unresolved(String),
    /// A `{json:}` placeholder on a body that is not JSON.
    InvalidJson,
    /// A `{claim:}` or `{auth:}` placeholder that the subscriber's identity does not carry.
    NotInIdentity(String),
    /// `{body}` on a body that is not UTF-8.
    BodyNotUtf8,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unresolved(what) => write!(f, "{what} is not in the request"),
            Self::InvalidJson => f.write_str("the request body is not valid JSON"),
            Self::NotInIdentity(what) => write!(f, "{what} is not in the subscriber's identity"),
            Self::BodyNotUtf8 => f.write_str("the request body is not valid UTF-8 text"),
        }
    }
}

impl std::error::Error for RenderError {}

/// What a template reads from one request.
#[derive(Debug)]
pub struct Input<'a> {
    pub path_params: &'a [(std::sync::Arc<str>, String)],
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The body parsed as JSON, if it is JSON; parsed once by the caller.
    pub json: Option<&'a Value>,
    /// The upstream's JSON answer, in forward mode.
    pub response: Option<&'a Value>,
    /// On a stream route: the verified token's claims, or the auth endpoint's answer.
    pub identity: Option<&'a Value>,
}

impl Input<'_> {
    fn body_text(&self) -> Result<&str, RenderError> {
        std::str::from_utf8(self.body).map_err(|_| RenderError::BodyNotUtf8)
    }

    fn resolve<'s>(&'s self, part: &'s Part) -> Result<Cow<'s, str>, RenderError> {
        match part {
            Part::Path(name) => self
                .path_params
                .iter()
                .find(|(k, _)| **k == **name)
                .map(|(_, v)| Cow::Borrowed(v.as_str()))
                .ok_or_else(|| RenderError::Unresolved(format!("path segment `{name}`"))),
            Part::Query(name) => self
                .query
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name))
                .map(|(_, v)| Cow::Owned(v.into_owned()))
                .ok_or_else(|| RenderError::Unresolved(format!("query parameter `{name}`"))),
            Part::Header(name) => self
                .headers
                .get(name)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                .map(Cow::Borrowed)
                .ok_or_else(|| RenderError::Unresolved(format!("header `{name}`"))),
            Part::Json(_) => self.value(part).map(json_text),
            Part::Response(_) | Part::Claim(_) | Part::Auth(_) => self.value(part).map(json_text),
            Part::Literal(s) => Ok(Cow::Borrowed(s)),
            Part::Body => self.body_text().map(Cow::Borrowed),
        }
    }
}

impl Input<'_> {
    /// The JSON value a pointer placeholder names.
    fn value<'s>(&'s self, part: &Part) -> Result<&'s Value, RenderError> {
        match part {
            Part::Json(ptr) => {
                let json = self.json.ok_or(RenderError::InvalidJson)?;
                pointer(json, ptr)
                    .ok_or_else(|| RenderError::Unresolved(format!("JSON field `{ptr}`")))
            }
            Part::Response(ptr) => self
                .response
                .and_then(|r| pointer(r, ptr))
                .ok_or_else(|| RenderError::Unresolved(format!("response field `{ptr}`"))),
            Part::Claim(ptr) => self
                .identity
                .and_then(|r| pointer(r, ptr))
                .ok_or_else(|| RenderError::NotInIdentity(format!("claim `{ptr}`"))),
            Part::Auth(ptr) => self
                .identity
                .and_then(|r| pointer(r, ptr))
                .ok_or_else(|| RenderError::NotInIdentity(format!("auth answer field `{ptr}`"))),
            other => Err(RenderError::Unresolved(format!("{other:?}"))),
        }
    }
}

/// The bytes a JSON string escapes: `"`, `\` and the controls below 0x20.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// How many bytes [`push_json_str`] writes for `s`.
pub fn json_str_len(s: &str) -> usize {
    let escapes: usize = s
        .bytes()
        .filter(|&b| NEEDS_ESCAPE[usize::from(b)])
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            _ => 5,
        })
        .sum();
    s.len() + 2 + escapes
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it, with no
/// intermediate `Value` or `String`: event data and answers are written per webhook.
pub fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if !NEEDS_ESCAPE[usize::from(b)] {
            continue;
        }
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `value.pointer(ptr)`, as serde_json resolves it, without allocating for each
/// token: templates and `json:` conditions resolve pointers on every webhook.
pub fn pointer<'v>(value: &'v Value, ptr: &str) -> Option<&'v Value> {
    if ptr.is_empty() {
        return Some(value);
    }
    let rest = ptr.strip_prefix('/')?;
    rest.split('/').try_fold(value, |target, token| {
        let token = if token.contains('~') {
            Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(token)
        };
        match target {
            Value::Object(map) => map.get(&*token),
            Value::Array(list) => array_index(&token).and_then(|i| list.get(i)),
            _ => None,
        }
    })
}

/// An array index in a pointer: decimal digits, no sign, no leading zero.
fn array_index(s: &str) -> Option<usize> {
    if s.starts_with('+') || (s.starts_with('0') && s.len() != 1) {
        return None;
    }
    s.parse().ok()
}

/// A JSON string renders as its text; anything else as compact JSON.
fn json_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_placeholders_and_literals() {
        let t = Template::parse("repo.{json:/repository/full_name}.{header:X-Kind}").unwrap();
        assert_eq!(t.parts().len(), 4);
        let t = Template::parse(r#"{"a":"{path:id}","b":{{}"#).unwrap();
        assert_eq!(
            t.parts(),
            &[
                Part::Literal(r#"{"a":""#.into()),
                Part::Path("id".into()),
                Part::Literal(r#"","b":{}"#.into())
            ]
        );
        assert_eq!(Template::parse("{body}").unwrap().parts(), &[Part::Body]);
    }

    #[test]
    fn rejects_bad_placeholders() {
        for (src, want) in [
            ("{foo:bar}", "unknown placeholder kind `foo`"),
            ("{path:}", "needs a name"),
            ("{json:id}", "JSON Pointer"),
            ("{header:a b}", "not a valid header name"),
            ("{path:x", "not closed"),
            ("{body:x}", "takes no argument"),
            ("{bodies}", "unknown placeholder kind"),
        ] {
            let err = Template::parse(src).unwrap_err().to_string();
            assert!(err.contains(want), "{src}: {err}");
        }
    }

    #[test]
    fn renders_json_values() {
        let json: Value = serde_json::json!({"s": "x", "n": 1, "o": {"a": [1, 2]}});
        let headers = HeaderMap::new();
        let input = Input {
            path_params: &[("id".into(), "7".into())],
            query: Some("q=a%20b&q=c"),
            headers: &headers,
            body: b"{}",
            json: Some(&json),
            response: None,
            identity: None,
        };
        let t = Template::parse("{json:/s}|{json:/n}|{json:/o}|{path:id}|{query:q}").unwrap();
        assert_eq!(t.render(&input).unwrap(), r#"x|1|{"a":[1,2]}|7|a b"#);
        let t = Template::parse("{json:/missing}").unwrap();
        assert!(matches!(t.render(&input), Err(RenderError::Unresolved(_))));
        let t = Template::parse("{header:x-a}").unwrap();
        assert!(matches!(t.render(&input), Err(RenderError::Unresolved(_))));
    }

    #[test]
    fn body_must_be_utf8_only_when_used() {
        let headers = HeaderMap::new();
        let input = Input {
            path_params: &[],
            query: None,
            headers: &headers,
            body: &[0xff, 0xfe],
            json: None,
            response: None,
            identity: None,
        };
        assert_eq!(
            Template::parse("{body}").unwrap().render(&input),
            Err(RenderError::BodyNotUtf8)
        );
        assert_eq!(
            Template::parse("fixed").unwrap().render(&input).unwrap(),
            "fixed"
        );
        assert_eq!(
            Template::parse("{json:/a}").unwrap().render(&input),
            Err(RenderError::InvalidJson)
        );
    }

    #[test]
    fn pointers_resolve_as_serde_json_resolves_them() {
        let v: Value = serde_json::json!({
            "a": {"b/c": 1, "d~e": [10, {"f": "x"}], "": 2, "~1": 3},
            "0": "zero", "list": [0, 1, 2]
        });
        for ptr in [
            "",
            "/",
            "/a",
            "/a/b~1c",
            "/a/d~0e",
            "/a/d~0e/1/f",
            "/a/d~0e/01",
            "/a/d~0e/+1",
            "/a/d~0e/2",
            "/a/",
            "/a/~01",
            "/0",
            "/list/0",
            "/list/00",
            "/list/-1",
            "/list/x",
            "a",
            "/missing/x",
            "/a/b~1c/x",
            "/list/18446744073709551616",
        ] {
            assert_eq!(pointer(&v, ptr), v.pointer(ptr), "{ptr:?}");
        }
    }

    proptest! {
        #[test]
        fn json_strings_are_escaped_as_serde_json_escapes_them(s in "(\\PC|[\\x00-\\x1f\"\\\\\\x7f])*") {
            let mut out = String::from("x");
            push_json_str(&mut out, &s);
            prop_assert_eq!(&out[1..], serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn pointers_agree_with_serde_json(ptr in "(/[a0-2~/+]{0,3}){0,3}") {
            let v: Value = serde_json::json!({
                "a": {"~": [1, {"0": 2}], "/": {"a": 3}}, "0": [4, 5, 6], "": {"": 7},
                "~1": 8, "~0": 9
            });
            prop_assert_eq!(pointer(&v, &ptr), v.pointer(&ptr));
        }

        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = Template::parse(&s);
        }

        #[test]
        fn plain_text_without_braces_is_literal(s in "[^{]*") {
            let t = Template::parse(&s).unwrap();
            prop_assert_eq!(t.literal(), Some(s.as_str()));
        }
    }
}

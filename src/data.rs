//! A route's `publish.data`: text from one template, or JSON built from a YAML
//! mapping or sequence, so that a quote or a brace in a webhook can never change
//! the shape of the event (README "JSON-safe data").

use std::fmt;

use serde::Deserialize;

use crate::template::{Input, ParseError, RenderError, Template, push_json_str};

/// `publish.data`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A string: the rendered text, exactly as rendered.
    Text(Template),
    /// A mapping or sequence: compact JSON of this shape.
    Json(Shape),
}

/// One node of a JSON-shaped `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `null`, a boolean or a number, kept as written (compact JSON).
    Scalar(String),
    /// A string leaf: one placeholder keeps its value's JSON type, other text is a string.
    Leaf(Template),
    Array(Vec<Shape>),
    /// Keys are literal, in the order written.
    Object(Vec<(String, Shape)>),
}

impl Data {
    /// Every template in it, for what a route reads (`{json:}`, `{body}`, …).
    pub fn templates(&self) -> Vec<&Template> {
        fn walk<'a>(s: &'a Shape, out: &mut Vec<&'a Template>) {
            match s {
                Shape::Scalar(_) => {}
                Shape::Leaf(t) => out.push(t),
                Shape::Array(items) => items.iter().for_each(|i| walk(i, out)),
                Shape::Object(fields) => fields.iter().for_each(|(_, v)| walk(v, out)),
            }
        }
        let mut out = Vec::new();
        match self {
            Data::Text(t) => out.push(t),
            Data::Json(s) => walk(s, &mut out),
        }
        out
    }

    /// Whether any template in it satisfies `f`, without collecting them.
    pub fn any_template(&self, f: &impl Fn(&Template) -> bool) -> bool {
        fn walk(s: &Shape, f: &impl Fn(&Template) -> bool) -> bool {
            match s {
                Shape::Scalar(_) => false,
                Shape::Leaf(t) => f(t),
                Shape::Array(items) => items.iter().any(|i| walk(i, f)),
                Shape::Object(fields) => fields.iter().any(|(_, v)| walk(v, f)),
            }
        }
        match self {
            Data::Text(t) => f(t),
            Data::Json(s) => walk(s, f),
        }
    }

    pub fn render(&self, input: &Input<'_>) -> Result<String, RenderError> {
        match self {
            Data::Text(t) => t.render(input),
            Data::Json(shape) => {
                let mut out = String::new();
                shape.render(input, &mut out)?;
                Ok(out)
            }
        }
    }
}

impl Shape {
    fn render(&self, input: &Input<'_>, out: &mut String) -> Result<(), RenderError> {
        match self {
            Shape::Scalar(s) => out.push_str(s),
            Shape::Leaf(t) => t.render_json(input, out)?,
            Shape::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render(input, out)?;
                }
                out.push(']');
            }
            Shape::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_str(out, key);
                    out.push(':');
                    value.render(input, out)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }
}

/// `publish.data` as written, before its templates are parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum RawData {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<RawData>),
    /// Kept in file order: serde_json's map would sort the keys.
    Map(Vec<(String, RawData)>),
}

/// Where `data` could not be compiled: the key path and the problem there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    /// `order.items[0]`; empty for `data` itself.
    pub at: String,
    pub problem: DataProblem,
}

/// What is wrong at a [`DataError`]'s key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataProblem {
    Template(ParseError),
    /// An unquoted `{json:/id}` key with no value: YAML read it as a mapping.
    UnquotedPlaceholder(String),
}

impl fmt::Display for DataProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataProblem::Template(e) => write!(f, "{e}"),
            DataProblem::UnquotedPlaceholder(k) => write!(
                f,
                "YAML reads `{{{k}}}` as a mapping; put the template in quotes: \"{{{k}}}\""
            ),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "at `{}`: {}", self.at, self.problem)
        }
    }
}

impl std::error::Error for DataError {}

impl RawData {
    /// Compiles a string into [`Data::Text`], anything else into [`Data::Json`].
    pub fn compile(self) -> Result<Data, DataError> {
        match self {
            RawData::String(s) => Template::parse(&s).map(Data::Text).map_err(|e| DataError {
                at: String::new(),
                problem: DataProblem::Template(e),
            }),
            other => other.shape(String::new()).map(Data::Json),
        }
    }

    fn shape(self, at: String) -> Result<Shape, DataError> {
        Ok(match self {
            RawData::Null => Shape::Scalar("null".into()),
            RawData::Bool(b) => Shape::Scalar(b.to_string()),
            RawData::Number(n) => Shape::Scalar(n.to_string()),
            RawData::String(s) => Shape::Leaf(Template::parse(&s).map_err(|e| DataError {
                at,
                problem: DataProblem::Template(e),
            })?),
            RawData::Seq(items) => Shape::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| item.shape(format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            RawData::Map(fields) => Shape::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| {
                        if v == RawData::Null && looks_like_placeholder(&k) {
                            return Err(DataError {
                                at: at.clone(),
                                problem: DataProblem::UnquotedPlaceholder(k),
                            });
                        }
                        let here = if at.is_empty() {
                            k.clone()
                        } else {
                            format!("{at}.{k}")
                        };
                        v.shape(here).map(|s| (k, s))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

impl<'de> Deserialize<'de> for RawData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawData;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a template string, or a mapping or sequence to send as JSON")
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<RawData, E> {
                Ok(RawData::Null)
            }

            fn visit_none<E: serde::de::Error>(self) -> Result<RawData, E> {
                Ok(RawData::Null)
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawData, E> {
                Ok(RawData::Bool(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawData, E> {
                Ok(RawData::Number(v.into()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawData, E> {
                Ok(RawData::Number(v.into()))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawData, E> {
                serde_json::Number::from_f64(v)
                    .map(RawData::Number)
                    .ok_or_else(|| E::custom("JSON has no NaN or infinity; put it in quotes"))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawData, E> {
                Ok(RawData::String(v.to_owned()))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawData, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawData::Seq(items))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawData, A::Error> {
                let mut fields: Vec<(String, RawData)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<Key, RawData>()? {
                    if fields.iter().any(|(k, _)| *k == key.0) {
                        return Err(serde::de::Error::custom(format!(
                            "key `{}` appears twice in data",
                            key.0
                        )));
                    }
                    fields.push((key.0, value));
                }
                Ok(RawData::Map(fields))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `body` or `json:/a`: what `{body}` written without quotes leaves as a key.
fn looks_like_placeholder(key: &str) -> bool {
    let word = key.split(':').next().unwrap_or_default();
    matches!(
        word,
        "path" | "query" | "header" | "json" | "response" | "body" | "claim" | "auth"
    )
}

/// A mapping key: YAML may write `1:` or `true:`; JSON keys are strings.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key: a string, number or boolean")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
        }
        // As a string, so that YAML 1.1 does not read a key `n` or `on` as a boolean.
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use serde_json::{Value, json};

    use super::*;

    fn data(yaml: &str) -> Data {
        serde_saphyr::from_str::<RawData>(yaml)
            .unwrap()
            .compile()
            .unwrap()
    }

    #[test]
    fn mapping_keeps_types_order_and_escapes_text() {
        let d = data(
            "order: \"{json:/order}\"\nregion: \"r-{json:/region}\"\nsrc: \"{header:x-src}\"\nn: 3\nok: true\nnone: null\nlist: [\"{json:/order}\", 1]\n",
        );
        let body = json!({"order": {"id": "1,\"admin\":true"}, "region": "eu\"}"});
        let mut headers = HeaderMap::new();
        headers.insert("x-src", "a\"b".parse().unwrap());
        let out = d
            .render(&Input {
                path_params: &[],
                query: None,
                headers: &headers,
                body: b"",
                json: Some(&body),
                response: None,
                identity: None,
            })
            .unwrap();
        assert!(out.starts_with(r#"{"order":{"id":"#), "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"order": {"id": "1,\"admin\":true"}, "region": "r-eu\"}", "src": "a\"b",
                   "n": 3, "ok": true, "none": null, "list": [{"id": "1,\"admin\":true"}, 1]})
        );
    }

    #[test]
    fn a_string_stays_text_and_bad_templates_name_their_key() {
        assert!(matches!(data("\"{body}\""), Data::Text(_)));
        let err = serde_saphyr::from_str::<RawData>("a: {b: [\"{json:x}\"]}")
            .unwrap()
            .compile()
            .unwrap_err();
        assert_eq!(err.at, "a.b[0]");
        let err = serde_saphyr::from_str::<RawData>("{body}")
            .unwrap()
            .compile()
            .unwrap_err();
        assert!(err.to_string().contains("in quotes"), "{err}");
    }
}

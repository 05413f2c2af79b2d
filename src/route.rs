//! Webhook routes: what a request must look like to match, and what it publishes.

use std::fmt;
use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderMap, Method};
use serde_json::Value;

use crate::data::Data;
use crate::template::Template;
use crate::verify::Verifier;

/// A configured webhook route, compiled.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: Arc<str>,
    pub path: PathPattern,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderMatch)>,
    /// JSON Pointer -> required value; a non-JSON body never matches.
    pub json: Vec<(String, Value)>,
    pub mode: Mode,
    /// The signature every request must carry, when set.
    pub verify: Option<Arc<Verifier>>,
    pub publish: Publish,
    /// Its place in the [`Router`] (set there): what is kept per route beside
    /// the config, such as its counters, is found by it.
    pub index: usize,
}

/// Who answers a matched request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// hookcast publishes and answers 202.
    Publish,
    /// The upstream answers; hookcast publishes when that answer is 2xx.
    Forward,
}

/// What a matched request publishes.
#[derive(Debug, Clone)]
pub struct Publish {
    pub topics: Vec<Template>,
    pub event: Option<Template>,
    pub data: Data,
    pub dedupe: Option<Template>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    Present,
    Exact(String),
}

impl Route {
    /// Whether the body needs parsing as JSON to match or render this route.
    pub fn needs_json(&self) -> bool {
        !self.json.is_empty() || self.any_template(Template::uses_json)
    }

    /// Whether matching or rendering reads the request body (`json:`, `{json:}`, `{body}`).
    pub fn reads_body(&self) -> bool {
        !self.json.is_empty() || self.any_template(|t| t.uses_json() || t.uses_body())
    }

    /// Whether matching, verifying or rendering this route reads a request
    /// header (header conditions, a signature, `{header:}`).
    pub fn reads_headers(&self) -> bool {
        !self.headers.is_empty()
            || self.verify.is_some()
            || self.any_template(Template::uses_header)
    }

    /// Whether a template reads the upstream's answer (`{response:}`).
    pub fn reads_response(&self) -> bool {
        self.any_template(Template::uses_response)
    }

    /// Whether any of the publish templates satisfies `f`; asked per webhook, so
    /// it walks them without collecting.
    fn any_template(&self, f: impl Fn(&Template) -> bool) -> bool {
        let p = &self.publish;
        p.topics.iter().any(&f)
            || [&p.event, &p.dedupe].into_iter().flatten().any(&f)
            || p.data.any_template(&f)
    }

    /// The header and JSON conditions; path and method were checked by [`Router::lookup`].
    pub fn accepts(&self, headers: &HeaderMap, json: Option<&Value>) -> bool {
        self.unmet(headers, json).is_none()
    }

    /// The first header or JSON condition that does not hold, if any.
    pub fn unmet(&self, headers: &HeaderMap, json: Option<&Value>) -> Option<Unmet> {
        for (name, want) in &self.headers {
            match (want, headers.get(name)) {
                (_, None) => return Some(Unmet::HeaderMissing(name.to_string())),
                (HeaderMatch::Present, Some(_)) => {}
                (HeaderMatch::Exact(v), Some(got)) if got.as_bytes() == v.as_bytes() => {}
                (HeaderMatch::Exact(v), Some(_)) => {
                    return Some(Unmet::HeaderValue(name.to_string(), v.clone()));
                }
            }
        }
        if self.json.is_empty() {
            return None;
        }
        let Some(j) = json else {
            return Some(Unmet::NotJson);
        };
        self.json
            .iter()
            .find(|(ptr, want)| crate::template::pointer(j, ptr) != Some(want))
            .map(|(ptr, want)| Unmet::Json(ptr.clone(), want.clone()))
    }

    /// The first reason this route does not take the request; `None` when it does.
    /// `json` is the body parsed as JSON, if it is JSON.
    pub fn mismatch(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        json: Option<&Value>,
    ) -> Option<Unmet> {
        if self.path.matches(path).is_none() {
            Some(Unmet::Path(self.path.as_str().to_owned()))
        } else if self.method != *method {
            Some(Unmet::Method(self.method.to_string()))
        } else {
            self.unmet(headers, json)
        }
    }
}

/// Why a route does not take a request: the first of its conditions that fails,
/// in the order they are checked (path, method, headers, JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// The path does not match this pattern.
    Path(String),
    /// The route takes this method only.
    Method(String),
    HeaderMissing(String),
    /// The header is present with another value than this one.
    HeaderValue(String, String),
    /// The route has `json:` conditions and the body is not JSON.
    NotJson,
    /// The value at this pointer is not the one required.
    Json(String, Value),
}

impl Unmet {
    /// A short machine word for the kind of condition.
    pub fn kind(&self) -> &'static str {
        match self {
            Unmet::Path(_) => "path",
            Unmet::Method(_) => "method",
            Unmet::HeaderMissing(_) | Unmet::HeaderValue(..) => "header",
            Unmet::NotJson | Unmet::Json(..) => "json",
        }
    }
}

impl std::fmt::Display for Unmet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unmet::Path(p) => write!(f, "path does not match {p}"),
            Unmet::Method(m) => write!(f, "method is not {m}"),
            Unmet::HeaderMissing(h) => write!(f, "header {h} is missing"),
            Unmet::HeaderValue(h, v) => write!(f, "header {h} is not {v:?}"),
            Unmet::NotJson => f.write_str("body is not JSON (the route has json: conditions)"),
            Unmet::Json(p, v) => write!(f, "JSON pointer {p} is not {v}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// Shared with every match's [`Params`]: no allocation per request for the name.
    Param(Arc<str>),
}

/// A route path such as `/hooks/{tenant}/orders`; `{name}` matches one non-empty segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
    /// How many segments are `{name}`s.
    params: usize,
}

/// Why a route or stream path is not a [`PathPattern`]; each variant holds the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NoLeadingSlash(String),
    /// `{name}` with characters other than A-Z a-z 0-9 _ -, or empty.
    BadName {
        name: String,
        path: String,
    },
    Twice {
        name: String,
        path: String,
    },
    /// `/a{id}`: a placeholder shares its segment with text.
    NotWholeSegment(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NoLeadingSlash(s) => write!(f, "route path `{s}` must start with `/`"),
            PathError::BadName { name, path } => write!(
                f,
                "`{{{name}}}` in route path `{path}` is not a valid segment name"
            ),
            PathError::Twice { name, path } => write!(
                f,
                "segment `{{{name}}}` appears twice in route path `{path}`"
            ),
            PathError::NotWholeSegment(s) => write!(
                f,
                "route path `{s}`: a `{{name}}` placeholder must be a whole segment"
            ),
        }
    }
}

impl std::error::Error for PathError {}

impl PathPattern {
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if !s.starts_with('/') {
            return Err(PathError::NoLeadingSlash(s.to_owned()));
        }
        let mut segments = Vec::new();
        let mut seen = Vec::new();
        for seg in s[1..].split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(PathError::BadName {
                        name: name.to_owned(),
                        path: s.to_owned(),
                    });
                }
                if seen.contains(&name) {
                    return Err(PathError::Twice {
                        name: name.to_owned(),
                        path: s.to_owned(),
                    });
                }
                seen.push(name);
                segments.push(Segment::Param(name.into()));
            } else if seg.contains(['{', '}']) {
                return Err(PathError::NotWholeSegment(s.to_owned()));
            } else {
                segments.push(Segment::Literal(seg.to_owned()));
            }
        }
        Ok(PathPattern {
            source: s.to_owned(),
            params: seen.len(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(&**p),
            Segment::Literal(_) => None,
        })
    }

    /// The `{name}` values when `path` matches.
    pub fn matches(&self, path: &str) -> Option<Params> {
        let mut buf = [""; MAX_SEGMENTS];
        let segs = PathSegments::new(path, &mut buf)?;
        self.is_match(segs.as_slice())
            .then(|| self.params_of(segs.as_slice()))
    }

    /// Whether a path cut into `segs` matches, without collecting the `{name}`
    /// values: most routes a request is tried against do not match, and should
    /// cost no allocation.
    fn is_match(&self, segs: &[&str]) -> bool {
        self.segments.len() == segs.len()
            && self.segments.iter().zip(segs).all(|(seg, part)| match seg {
                Segment::Literal(l) => l == part,
                Segment::Param(_) => !part.is_empty(),
            })
    }

    /// The `{name}` values of a path whose segments [`Self::is_match`].
    fn params_of(&self, segs: &[&str]) -> Params {
        let mut params = Vec::with_capacity(self.params);
        for (seg, part) in self.segments.iter().zip(segs) {
            if let Segment::Param(name) = seg {
                params.push((name.clone(), (*part).to_owned()));
            }
        }
        params
    }
}

/// Segments kept on the stack when a path is cut; longer paths use the heap.
const MAX_SEGMENTS: usize = 16;

/// A request path cut at its slashes once, for every pattern to compare with.
enum PathSegments<'p, 'b> {
    Stack(&'b [&'p str]),
    Heap(Vec<&'p str>),
}

impl<'p, 'b> PathSegments<'p, 'b> {
    /// `None` for a path without its leading `/`, which no pattern matches.
    fn new(path: &'p str, buf: &'b mut [&'p str; MAX_SEGMENTS]) -> Option<Self> {
        let rest = path.strip_prefix('/')?;
        // A byte loop: request paths are short, and `split` costs more per segment.
        let mut n = 0;
        let mut start = 0;
        for (i, b) in rest.bytes().enumerate() {
            if b == b'/' {
                if n == MAX_SEGMENTS - 1 {
                    return Some(PathSegments::Heap(rest.split('/').collect()));
                }
                buf[n] = &rest[start..i];
                n += 1;
                start = i + 1;
            }
        }
        buf[n] = &rest[start..];
        Some(PathSegments::Stack(&buf[..=n]))
    }

    fn as_slice(&self) -> &[&'p str] {
        match self {
            PathSegments::Stack(s) => s,
            PathSegments::Heap(v) => v,
        }
    }
}

/// The routes, tried in order.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

/// A route whose path and method match, with its `{name}` segment values.
pub type Candidate = (Arc<Route>, Params);

/// A matched path's `{name}` values, in the pattern's order.
pub type Params = Vec<(Arc<str>, String)>;

/// What the path and method of a request select.
#[derive(Debug)]
pub enum Lookup {
    /// Routes whose path and method match, in order, with their path parameters.
    Candidates(Vec<Candidate>),
    /// Routes exist for this path, but only for these methods.
    WrongMethod(Vec<Method>),
    NoRoute,
}

impl Lookup {
    /// Whether some route may take the request.
    pub fn is_candidates(&self) -> bool {
        matches!(self, Lookup::Candidates(_))
    }
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        Router {
            routes: routes
                .into_iter()
                .enumerate()
                .map(|(index, route)| Arc::new(Route { index, ..route }))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    pub fn lookup(&self, method: &Method, path: &str) -> Lookup {
        let mut buf = [""; MAX_SEGMENTS];
        let Some(segs) = PathSegments::new(path, &mut buf) else {
            return Lookup::NoRoute;
        };
        let segs = segs.as_slice();
        let mut candidates = Vec::new();
        let mut other_methods: Vec<Method> = Vec::new();
        for route in &self.routes {
            if !route.path.is_match(segs) {
                continue;
            }
            if route.method == *method {
                candidates.push((route.clone(), route.path.params_of(segs)));
            } else if !other_methods.contains(&route.method) {
                other_methods.push(route.method.clone());
            }
        }
        if !candidates.is_empty() {
            Lookup::Candidates(candidates)
        } else if !other_methods.is_empty() {
            Lookup::WrongMethod(other_methods)
        } else {
            Lookup::NoRoute
        }
    }

    /// Every route in order, with the first reason it does not take the request
    /// (`None` for a route that does).
    pub fn explain<'a>(
        &'a self,
        method: &'a Method,
        path: &'a str,
        headers: &'a HeaderMap,
        json: Option<&'a Value>,
    ) -> impl Iterator<Item = (&'a Arc<Route>, Option<Unmet>)> + 'a {
        self.routes
            .iter()
            .map(move |r| (r, r.mismatch(method, path, headers, json)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        let p = PathPattern::parse("/hooks/{tenant}/orders").unwrap();
        assert_eq!(
            p.matches("/hooks/acme/orders"),
            Some(vec![("tenant".into(), "acme".into())])
        );
        assert_eq!(p.matches("/hooks//orders"), None);
        assert_eq!(p.matches("/hooks/acme/orders/x"), None);
        assert_eq!(p.matches("/hooks/acme"), None);
        assert_eq!(p.matches("hooks/acme/orders"), None);
        assert_eq!(p.matches("/hooks/acme/orders/"), None);
        // Past the segments kept on the stack, the same answers.
        let long = format!("/{}{{x}}", "a/".repeat(MAX_SEGMENTS + 3));
        let p = PathPattern::parse(&long).unwrap();
        let path = format!("/{}7", "a/".repeat(MAX_SEGMENTS + 3));
        assert_eq!(p.matches(&path), Some(vec![("x".into(), "7".into())]));
        assert_eq!(p.matches(&format!("{path}/")), None);
        assert_eq!(p.matches(&path.replacen("a", "b", 1)), None);
        assert!(
            PathPattern::parse("/hooks/github")
                .unwrap()
                .matches("/hooks/github")
                .is_some()
        );
        for bad in ["hooks", "/a/{}", "/a/x{y}", "/{a}/{a}"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            PathPattern::parse("/{a}/{a}"),
            Err(PathError::Twice {
                name: "a".into(),
                path: "/{a}/{a}".into()
            })
        );
    }
}

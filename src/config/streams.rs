//! `streams:`: event streams on the application's own URLs, checked so that every
//! topic template can resolve for some request under the configured auth mode.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Location;

use super::raw::{OneOrMany, S};
use super::{Checker, Sse, auth, is_reserved};
use crate::route::PathPattern;
use crate::streams::{StreamRoute, Streams};
use crate::template::{Part, Template};
use crate::topic::{self, Filter};

/// One `streams:` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    name: S<String>,
    path: S<String>,
    topics: S<OneOrMany>,
}

impl Checker<'_> {
    pub(super) fn streams(&mut self, raw: Vec<RawStream>, sse: &Sse, auth: &auth::Mode) -> Streams {
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        let mut routes = Vec::new();
        for s in raw {
            self.once(&mut names, &s.name, "stream name", "names must be unique");
            self.once(
                &mut paths,
                &s.path,
                "stream path",
                "the first would always win",
            );
            if let Some(route) = self.stream(s, sse, auth) {
                routes.push(route);
            }
        }
        Streams::new(routes)
    }

    fn stream(&mut self, s: RawStream, sse: &Sse, auth: &auth::Mode) -> Option<StreamRoute> {
        let before = self.diagnostics.len();
        let name = s.name.value.trim().to_owned();
        if name.is_empty() {
            self.error(&s.name.referenced, "stream name cannot be empty");
        }
        let what = format!("stream `{name}`");
        let path = match PathPattern::parse(&s.path.value) {
            Ok(p) if p.as_str() == sse.path || is_reserved(p.as_str()) => {
                self.error(
                    &s.path.referenced,
                    format!(
                        "{what}: path `{}` is taken by hookcast itself (sse.path or /_hookcast/)",
                        p.as_str()
                    ),
                );
                None
            }
            Ok(p) => Some(p),
            Err(msg) => {
                self.error(&s.path.referenced, format!("{what}: {msg}"));
                None
            }
        };
        let srcs = match s.topics.value {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        };
        let at = s.topics.referenced;
        if srcs.is_empty() {
            self.error(&at, format!("{what}: topics lists no topic"));
        }
        if srcs.len() > sse.max_topics_per_subscriber {
            self.error(
                &at,
                format!(
                    "{what}: topics lists {} topics, more than sse.max_topics_per_subscriber ({})",
                    srcs.len(),
                    sse.max_topics_per_subscriber
                ),
            );
        }
        let params: Vec<&str> = path.iter().flat_map(PathPattern::params).collect();
        let mut topics = Vec::new();
        for src in &srcs {
            match Template::parse(src) {
                Ok(t) => {
                    self.stream_topic(&what, &t, &params, path.is_some(), auth, &at);
                    topics.push(t);
                }
                Err(e) => self.error(&at, format!("{what}: topics: {e}")),
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(StreamRoute {
            name: Arc::from(name),
            path: path?,
            topics,
        })
    }

    /// Every placeholder of a stream topic must be able to resolve from a GET
    /// request and the subscriber's identity.
    fn stream_topic(
        &mut self,
        what: &str,
        t: &Template,
        params: &[&str],
        checked_path: bool,
        auth: &auth::Mode,
        at: &Location,
    ) {
        for part in t.parts() {
            let problem = match (part, auth) {
                (Part::Path(p), _) if checked_path && !params.contains(&p.as_str()) => Some(
                    format!("`{{path:{p}}}` can never resolve: the stream path has no `{{{p}}}` segment"),
                ),
                (Part::Body | Part::Json(_) | Part::Response(_), _) => Some(
                    "`{body}`, `{json:…}` and `{response:…}` read a webhook; a stream request has none (use path, query, header, claim or auth)".to_owned(),
                ),
                (Part::Claim(_), auth::Mode::Jwt(_)) | (Part::Auth(_), auth::Mode::Upstream(_)) => None,
                (Part::Claim(_), other) => Some(format!(
                    "`{{claim:…}}` reads a verified token, but subscribers.auth is {}; set auth: jwt",
                    other.name()
                )),
                (Part::Auth(_), other) => Some(format!(
                    "`{{auth:…}}` reads the auth endpoint's answer, but subscribers.auth is {}; set auth: upstream",
                    other.name()
                )),
                _ => None,
            };
            if let Some(problem) = problem {
                self.error(at, format!("{what}: topics: {problem}"));
            }
        }
        // The auth endpoint is asked before its answer is known, so it cannot
        // vouch for a topic that needs both the request and the answer.
        let from_request = t
            .parts()
            .iter()
            .any(|p| matches!(p, Part::Path(_) | Part::Query(_) | Part::Header(_)));
        if matches!(auth, auth::Mode::Upstream(_)) && t.uses_identity() && from_request {
            self.error(
                at,
                format!("{what}: topics: a topic cannot mix `{{auth:…}}` with path, query or header placeholders: the auth endpoint is asked before its answer is known, so it could not vouch for the request's part; use two topics"),
            );
        }
        match t.literal() {
            Some(lit) => {
                if let Err(e) = Filter::parse(lit) {
                    self.error(at, format!("{what}: topic `{lit}`: {e}"));
                }
            }
            None => {
                for part in t.parts() {
                    if let Part::Literal(s) = part
                        && let Some(c) = s.chars().find(|&c| {
                            !(c.is_ascii()
                                && (topic::is_topic_byte(c as u8) || c == '*' || c == '>'))
                        })
                    {
                        self.error(
                            at,
                            format!("{what}: topics: {c:?} is not allowed; only A-Z a-z 0-9 . _ - : / and the patterns * and > are"),
                        );
                    }
                }
            }
        }
    }
}

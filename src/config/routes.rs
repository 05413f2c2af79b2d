//! `routes:`: each webhook route's match, mode, `publish:` templates and `verify:`,
//! checked so that every template can resolve for some request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::Method;
use http::header::HeaderName;
use serde_saphyr::{Location, Spanned};

use super::raw::{self, S};
use super::{Checker, is_reserved};
use crate::data::Data;
use crate::route::{HeaderMatch, Mode, PathPattern, Publish, Route, Router};
use crate::template::{Part, Template};
use crate::topic;

/// What a route's templates may refer to.
struct TemplateCtx<'a> {
    route: &'a str,
    params: &'a [String],
    /// False when the path itself was invalid, so `{path:}` checks would only add noise.
    checked_path: bool,
    mode: Mode,
}

impl Checker<'_> {
    /// Reports `v` when `seen` already holds it: "route name `x` is used twice; {why}".
    pub(super) fn once(
        &mut self,
        seen: &mut HashSet<String>,
        v: &Spanned<String>,
        what: &str,
        why: &str,
    ) {
        if !seen.insert(v.value.clone()) {
            self.error(
                &v.referenced,
                format!("{what} `{}` is used twice; {why}", v.value),
            );
        }
    }

    pub(super) fn routes(
        &mut self,
        raw: Vec<raw::Route>,
        sse_path: &str,
        has_upstream: bool,
    ) -> Router {
        let mut names = HashSet::new();
        let mut routes = Vec::new();
        for r in raw {
            self.once(&mut names, &r.name, "route name", "names must be unique");
            if let Some(route) = self.route(r, sse_path, has_upstream) {
                routes.push(route);
            }
        }
        Router::new(routes)
    }

    /// One route, checked part by part in file order; `None` when any part had a
    /// problem (each one reported).
    fn route(&mut self, r: raw::Route, sse_path: &str, has_upstream: bool) -> Option<Route> {
        let before = self.diagnostics.len();
        let name = r.name.value.trim().to_owned();
        if name.is_empty() {
            self.error(&r.name.referenced, "route name cannot be empty");
        }
        let mode = self.route_mode(&name, r.mode.as_ref(), has_upstream);
        let m = r.matcher;
        let path = self.route_path(&name, &m.path, sse_path);
        let method = self.route_method(&name, m.method);
        let headers = self.route_headers(&name, m.headers);
        let json = self.route_json(&name, m.json);
        let params: Vec<String> = path
            .iter()
            .flat_map(|p| p.params().map(str::to_owned))
            .collect();
        let ctx = TemplateCtx {
            route: &name,
            params: &params,
            checked_path: path.is_some(),
            mode,
        };
        let publish = self.publish(&ctx, r.publish);
        let verify = r.verify.and_then(|v| self.verify(&name, v));
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Route {
            name: Arc::from(name),
            path: path?,
            method,
            headers,
            json,
            mode,
            verify,
            publish: publish?,
            index: 0,
        })
    }

    /// `mode:`; forward needs an upstream to forward to.
    fn route_mode(&mut self, name: &str, mode: Option<&S<String>>, has_upstream: bool) -> Mode {
        let Some(m) = mode else {
            return Mode::Publish;
        };
        match m.value.as_str() {
            "publish" => Mode::Publish,
            "forward" if !has_upstream => {
                self.error(
                    &m.referenced,
                    format!(
                        "route `{name}`: mode forward passes the request to the upstream, but no upstream is configured; set upstream.url"
                    ),
                );
                Mode::Forward
            }
            "forward" => Mode::Forward,
            other => {
                self.error(
                    &m.referenced,
                    format!("route `{name}`: unknown mode `{other}`; expected publish or forward"),
                );
                Mode::Publish
            }
        }
    }

    /// `match.path`, which must leave hookcast's own paths alone.
    fn route_path(&mut self, name: &str, raw: &S<String>, sse_path: &str) -> Option<PathPattern> {
        match PathPattern::parse(&raw.value) {
            Ok(p) if p.as_str() == sse_path || is_reserved(p.as_str()) => {
                self.error(
                    &raw.referenced,
                    format!(
                        "route `{name}`: path `{}` is taken by hookcast itself (sse.path or /_hookcast/)",
                        p.as_str()
                    ),
                );
                None
            }
            Ok(p) => Some(p),
            Err(e) => {
                self.error(&raw.referenced, format!("route `{name}`: {e}"));
                None
            }
        }
    }

    /// `match.method`, POST by default; written in capitals.
    fn route_method(&mut self, name: &str, raw: Option<S<String>>) -> Method {
        let Some(v) = raw else {
            return Method::POST;
        };
        match Method::from_bytes(v.value.as_bytes()) {
            Ok(method) if v.value.bytes().all(|b| b.is_ascii_uppercase()) => method,
            _ => {
                self.error(
                    &v.referenced,
                    format!(
                        "route `{name}`: `{}` is not an HTTP method such as POST",
                        v.value
                    ),
                );
                Method::POST
            }
        }
    }

    /// `match.headers`: each header equal to its value, or present when the value is `*`.
    fn route_headers(
        &mut self,
        name: &str,
        raw: HashMap<S<String>, S<String>>,
    ) -> Vec<(HeaderName, HeaderMatch)> {
        let mut headers = Vec::new();
        for (k, v) in raw {
            match HeaderName::from_bytes(k.value.as_bytes()) {
                Ok(h) => headers.push((
                    h,
                    if v.value == "*" {
                        HeaderMatch::Present
                    } else {
                        HeaderMatch::Exact(v.value)
                    },
                )),
                Err(_) => self.error(
                    &k.referenced,
                    format!("route `{name}`: `{}` is not a valid header name", k.value),
                ),
            }
        }
        headers
    }

    /// `match.json`: JSON Pointers and the values found there, sorted by pointer.
    fn route_json(
        &mut self,
        name: &str,
        raw: HashMap<S<String>, S<serde_json::Value>>,
    ) -> Vec<(String, serde_json::Value)> {
        let mut json = Vec::new();
        for (k, v) in raw {
            if !k.value.is_empty() && !k.value.starts_with('/') {
                self.error(
                    &k.referenced,
                    format!(
                        "route `{name}`: `{}` is not a JSON Pointer; it must start with `/`",
                        k.value
                    ),
                );
            }
            json.push((k.value, v.value));
        }
        json.sort_by(|a, b| a.0.cmp(&b.0));
        json
    }

    /// `publish:`; `None` only when a problem was reported.
    fn publish(&mut self, ctx: &TemplateCtx<'_>, p: raw::Publish) -> Option<Publish> {
        let topics = self.publish_topics(ctx, p.topic);
        let event = p.event.and_then(|v| self.publish_event(ctx, v));
        let data = self.publish_data(ctx, p.data);
        let dedupe = p
            .dedupe
            .and_then(|v| self.template(ctx, "publish.dedupe", &v.value, &v.referenced));
        Some(Publish {
            topics,
            event,
            data: data?,
            dedupe,
        })
    }

    /// `publish.topic`: one template or a list, each a valid topic once rendered.
    fn publish_topics(&mut self, ctx: &TemplateCtx<'_>, raw: S<raw::OneOrMany>) -> Vec<Template> {
        let name = ctx.route;
        let srcs: Vec<String> = match raw.value {
            raw::OneOrMany::One(s) => vec![s],
            raw::OneOrMany::Many(v) => v,
        };
        if srcs.is_empty() {
            self.error(
                &raw.referenced,
                format!("route `{name}`: publish.topic lists no topic"),
            );
        }
        let mut topics = Vec::new();
        for src in &srcs {
            if let Some(t) = self.template(ctx, "publish.topic", src, &raw.referenced) {
                let what = format!("route `{name}`: publish.topic");
                self.topic_literals(&what, &t, &raw.referenced);
                topics.push(t);
            }
        }
        topics
    }

    /// `publish.event`: one line, and not one of hookcast's own event names.
    fn publish_event(&mut self, ctx: &TemplateCtx<'_>, v: S<String>) -> Option<Template> {
        let name = ctx.route;
        let t = self.template(ctx, "publish.event", &v.value, &v.referenced)?;
        let bad = t
            .parts()
            .iter()
            .any(|part| matches!(part, Part::Literal(s) if s.contains(['\r', '\n', '\0'])));
        if bad {
            self.error(
                &v.referenced,
                format!("route `{name}`: publish.event cannot contain line breaks"),
            );
        }
        if let Some(Part::Literal(first)) = t.parts().first()
            && crate::sse::encode::is_reserved_event(first)
        {
            self.error(
                &v.referenced,
                format!("route `{name}`: publish.event `{}` is reserved: names starting with `hookcast.` are hookcast's own events", v.value),
            );
        }
        Some(t)
    }

    /// `publish.data`: the body by default, a text template, or JSON built from YAML.
    fn publish_data(
        &mut self,
        ctx: &TemplateCtx<'_>,
        raw: Option<S<crate::data::RawData>>,
    ) -> Option<Data> {
        let Some(v) = raw else {
            return Some(Data::Text(
                Template::parse("{body}").expect("static template"),
            ));
        };
        match v.value.compile() {
            Ok(data) => {
                for t in data.templates() {
                    self.template_parts(ctx, "publish.data", t, &v.referenced);
                }
                Some(data)
            }
            Err(e) => {
                let name = ctx.route;
                self.error(&v.referenced, format!("route `{name}`: publish.data: {e}"));
                None
            }
        }
    }

    fn template(
        &mut self,
        ctx: &TemplateCtx<'_>,
        key: &str,
        src: &str,
        at: &Location,
    ) -> Option<Template> {
        let route = ctx.route;
        let t = match Template::parse(src) {
            Ok(t) => t,
            Err(e) => {
                self.error(at, format!("route `{route}`: {key}: {e}"));
                return None;
            }
        };
        self.template_parts(ctx, key, &t, at);
        Some(t)
    }

    /// The placeholders of a parsed route template that can never resolve.
    fn template_parts(&mut self, ctx: &TemplateCtx<'_>, key: &str, t: &Template, at: &Location) {
        let route = ctx.route;
        for part in t.parts() {
            match part {
                Part::Path(p) if ctx.checked_path && !ctx.params.contains(p) => self.error(
                    at,
                    format!("route `{route}`: {key}: `{{path:{p}}}` can never resolve: the route path has no `{{{p}}}` segment"),
                ),
                Part::Response(_) if ctx.mode == Mode::Publish => self.error(
                    at,
                    format!("route `{route}`: {key}: `{{response:…}}` can never resolve in mode publish: there is no upstream answer"),
                ),
                Part::Claim(_) | Part::Auth(_) => self.error(
                    at,
                    format!("route `{route}`: {key}: `{{claim:…}}` and `{{auth:…}}` name a subscriber, so they are for streams, not webhook routes"),
                ),
                _ => {}
            }
        }
    }

    /// `what` names the key in messages: "route `x`: publish.topic".
    fn topic_literals(&mut self, what: &str, t: &Template, at: &Location) {
        if let Some(lit) = t.literal() {
            if let Err(e) = topic::validate_topic(lit) {
                self.error(at, format!("{what} `{lit}`: {e}"));
            }
            return;
        }
        for part in t.parts() {
            if let Part::Literal(s) = part
                && let Some(c) = s
                    .chars()
                    .find(|&c| !(c.is_ascii() && topic::is_topic_byte(c as u8)))
            {
                self.error(
                    at,
                    format!("{what} contains {c:?}; only A-Z a-z 0-9 . _ - : / are allowed"),
                );
            }
        }
    }
}

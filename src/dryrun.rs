//! `hookcast route`: a dry run of one request against a config's routes — which
//! route takes it and why each earlier one does not, what it would publish, and
//! (with `--verify`) whether its signature holds — without starting a server.
//! It runs the webhook path's own decision ([`crate::ingest::decide`]).

use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::config::{self, Config};
use crate::ingest::{self, Decision, Received, Rejection};
use crate::inspect::Outcome;
use crate::route::{Lookup, Unmet};

/// A request to try.
#[derive(Debug, Clone)]
pub struct DryRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Check the route's signature with the configured secrets, at the current time.
    pub verify: bool,
}

/// What a request would come to.
#[derive(Debug)]
pub struct Report {
    /// Routes in order up to the one that takes the request (all of them when none
    /// does), each with the first condition it fails (`None`: it takes it).
    pub routes: Vec<(String, Option<Unmet>)>,
    pub result: Result,
    /// The route's scheme and `ok` or the refusal code; `None` when not checked.
    pub verify: Option<(&'static str, &'static str)>,
    /// The route has a `verify:` that was not checked (no `--verify`).
    pub unverified: Option<&'static str>,
}

/// The answer a real request would get.
#[derive(Debug)]
pub enum Result {
    Publish {
        route: String,
        topics: Vec<String>,
        event: Option<String>,
        data: String,
        dedupe: Option<String>,
    },
    /// A forward-mode route: the application answers, an event follows a 2xx.
    Forward { route: String },
    /// No route takes it and an upstream is configured.
    Passed,
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl Report {
    /// Whether a route takes the request and it would not be refused.
    pub fn accepted(&self) -> bool {
        matches!(self.result, Result::Publish { .. } | Result::Forward { .. })
    }
}

/// Tries `req` against `config`'s routes.
pub fn dry_run(config: &Config, req: &DryRequest) -> Report {
    let router = &config.router;
    let json: Option<serde_json::Value> = serde_json::from_slice(&req.body).ok();
    let mut routes = Vec::new();
    for (route, unmet) in router.explain(&req.method, req.uri.path(), &req.headers, json.as_ref()) {
        let takes = unmet.is_none();
        routes.push((route.name.to_string(), unmet));
        if takes {
            break;
        }
    }
    let mut outcome = Outcome::default();
    let refused = |r: Rejection| {
        let (status, code, message) = r.describe();
        Result::Refused {
            status,
            code,
            message,
        }
    };
    let mut unverified = None;
    let result = if req.body.len() as u64 > config.limits.max_body {
        refused(Rejection::BodyTooLarge(config.limits.max_body))
    } else {
        match router.lookup(&req.method, req.uri.path()) {
            Lookup::Candidates(candidates) => {
                let received = Received {
                    method: &req.method,
                    uri: &req.uri,
                    headers: &req.headers,
                    body: &req.body,
                    verify_at: req.verify.then(ingest::unix_now),
                };
                match ingest::decide(router, candidates, &received, &mut outcome) {
                    Decision::Publish(route, event) => {
                        if !req.verify {
                            unverified = route.verify.as_ref().map(|v| v.scheme().name());
                        }
                        Result::Publish {
                            route: route.name.to_string(),
                            topics: event.topics,
                            event: event.event,
                            data: event.data,
                            dedupe: event.dedupe.map(|(_, key)| key),
                        }
                    }
                    Decision::Forward((route, _)) => {
                        if !req.verify {
                            unverified = route.verify.as_ref().map(|v| v.scheme().name());
                        }
                        Result::Forward {
                            route: route.name.to_string(),
                        }
                    }
                    Decision::NoMatch if config.upstream.is_some() => Result::Passed,
                    Decision::NoMatch => refused(Rejection::NoMatch),
                    Decision::Refused(r) => refused(r),
                }
            }
            _ if config.upstream.is_some() => Result::Passed,
            Lookup::WrongMethod(allowed) => Result::Refused {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: crate::reply::accepts_only(&allowed),
            },
            Lookup::NoRoute => Result::Refused {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: format!(
                    "Nothing is served at {}, and no upstream is configured.",
                    req.uri.path()
                ),
            },
        }
    };
    Report {
        routes,
        result,
        verify: outcome.verify,
        unverified,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.routes.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        if self.routes.is_empty() {
            writeln!(f, "routes: none configured")?;
        } else {
            writeln!(f, "routes:")?;
        }
        for (name, unmet) in &self.routes {
            match unmet {
                Some(why) => writeln!(f, "  {name:width$}  skipped: {why}")?,
                None => writeln!(f, "  {name:width$}  matches")?,
            }
        }
        match &self.result {
            Result::Publish {
                route,
                topics,
                event,
                data,
                dedupe,
            } => {
                writeln!(f, "result: 202, published by route {route}")?;
                writeln!(f, "topics: {}", topics.join(", "))?;
                writeln!(
                    f,
                    "event:  {}",
                    event.as_deref().unwrap_or("(none: message)")
                )?;
                if let Some(key) = dedupe {
                    writeln!(f, "dedupe: {key}")?;
                }
                writeln!(f, "data:")?;
                let shown = serde_json::from_str::<serde_json::Value>(data)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or_else(|| data.clone());
                for line in shown.lines() {
                    writeln!(f, "  {line}")?;
                }
            }
            Result::Forward { route } => writeln!(
                f,
                "result: forwarded to the upstream by route {route} (forward mode); its event is published when the upstream answers 2xx"
            )?,
            Result::Passed => writeln!(
                f,
                "result: no route takes it; passed to the upstream, no event"
            )?,
            Result::Refused {
                status,
                code,
                message,
            } => writeln!(f, "result: {} {code}: {message}", status.as_u16())?,
        }
        match (self.verify, self.unverified) {
            (Some((scheme, result)), _) => writeln!(f, "verify: {scheme}: {result}")?,
            (None, Some(scheme)) => writeln!(
                f,
                "verify: {scheme}: not checked (add --verify to check it with the configured secrets)"
            )?,
            (None, None) => {}
        }
        Ok(())
    }
}

const USAGE: &str = "\
Usage: hookcast route [--config FILE] --path PATH [--method METHOD] [-H 'Name: value']... [--body TEXT|@FILE|@-] [--verify]

Tries one request against the configured routes, without starting a server.
Exit codes: 0 a route takes it, 1 none does (or it would be refused), 2 bad usage or configuration.";

/// `hookcast route ARGS`: parse, load the config, try the request, print the report.
pub fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let (file, req) = match parse(args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("hookcast route: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match config::load(&file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let report = dry_run(&config, &req);
    let mut out = String::new();
    let _ = write!(out, "{report}");
    print!("{out}");
    if report.accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse(
    mut args: impl Iterator<Item = String>,
) -> std::result::Result<Option<(PathBuf, DryRequest)>, String> {
    let mut file = None;
    let mut method = Method::POST;
    let mut path: Option<Uri> = None;
    let mut headers = HeaderMap::new();
    let mut body = Bytes::new();
    let mut verify = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--config" | "-c" => file = Some(value("--config")?),
            "--method" | "-X" => {
                let m = value("--method")?;
                method = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("`{m}` is not an HTTP method"))?;
            }
            "--path" => {
                let p = value("--path")?;
                if !p.starts_with('/') {
                    return Err(format!("--path `{p}` must start with `/`"));
                }
                path = Some(
                    p.parse()
                        .map_err(|_| format!("--path `{p}` is not a valid path"))?,
                );
            }
            "-H" | "--header" => {
                let h = value("-H")?;
                let (name, v) = h
                    .split_once(':')
                    .ok_or(format!("-H `{h}` is not `Name: value`"))?;
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
                let v = HeaderValue::from_str(v.trim())
                    .map_err(|_| format!("the value of -H `{h}` is not a valid header value"))?;
                headers.append(name, v);
            }
            "--body" | "-d" => body = read_body(&value("--body")?)?,
            "--verify" => verify = true,
            a if a.starts_with("--config=") => file = Some(a["--config=".len()..].to_owned()),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let uri = path.ok_or("--path is required")?;
    Ok(Some((
        config::path_or_default(file),
        DryRequest {
            method,
            uri,
            headers,
            body,
            verify,
        },
    )))
}

/// `TEXT` as is, `@FILE` read from a file, `@-` from standard input (as curl's `-d`).
fn read_body(arg: &str) -> std::result::Result<Bytes, String> {
    match arg.strip_prefix('@') {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| format!("cannot read the body from standard input: {e}"))?;
            Ok(buf.into())
        }
        Some(path) => std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| format!("cannot read the body from {path}: {e}")),
        None => Ok(Bytes::from(arg.to_owned())),
    }
}

//! The layers of README "Architecture", checked on the source itself: every
//! `src/**/*.rs` is read, each `crate::`, `super::` and `self::` path in it (in `use`
//! lines, grouped `use crate::{a::b, c}` included, and inline in code) is mapped to
//! the unit it names, and the test fails, naming the file and line, on an import
//! the matrix below does not allow and on any import cycle between units.
//!
//! A unit is a top-level module of `src/` (`hub` holds `src/hub/**`), except the
//! submodules in [`OWN_UNITS`], which are units of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// Submodules that are units of their own: the pure SSE wire encoding sits below
/// the hub, the event stream body above it.
const OWN_UNITS: &[&str] = &["sse::encode"];

/// What each unit may import, and nothing else. Read top-down: the process
/// (server, dryrun), what answers requests (service, admin, reload, the fast path,
/// subscribe, ingest), one config generation (app), what app builds from the
/// config (broker, proxy, inspect, auth), the config, the compiled rules, and the
/// core (hub, sse, topic, metrics) with the leaves.
const ALLOWED: &[(&str, &[&str])] = &[
    // The process: the accept loop, and the `hookcast route` command.
    (
        "server",
        &[
            "accept", "admin", "app", "broker", "config", "conn", "direct", "fast", "hub",
            "reload", "service", "shutdown",
        ],
    ),
    ("dryrun", &["config", "ingest", "inspect", "reply", "route"]),
    // Entry points of a request: dispatch, the admin listener, reloads.
    (
        "service",
        &[
            "app",
            "conn",
            "cors",
            "demo",
            "ingest",
            "reply",
            "route",
            "subscribe",
        ],
    ),
    (
        "admin",
        &[
            "accept",
            "app",
            "config",
            "hub",
            "ingest",
            "inspect",
            "metrics",
            "reply",
            "route",
            "sse",
            "subscribe",
        ],
    ),
    ("reload", &["app", "broker", "config", "hub"]),
    // The HTTP/1 stream path on the socket (`direct`, to be renamed `fast`).
    (
        "direct",
        &[
            "app",
            "conn",
            "hub",
            "limits",
            "metrics",
            "reply",
            "sse",
            "subscribe",
        ],
    ),
    (
        "fast",
        &[
            "app",
            "conn",
            "hub",
            "limits",
            "metrics",
            "reply",
            "sse",
            "subscribe",
        ],
    ),
    // A subscription and a webhook, end to end.
    (
        "subscribe",
        &[
            "app", "auth", "broker", "config", "conn", "cors", "hub", "limits", "metrics", "reply",
            "sse", "streams", "topic",
        ],
    ),
    (
        "ingest",
        &[
            "app",
            "broker",
            "config",
            "data",
            "hub",
            "inspect",
            "metrics",
            "proxy",
            "reply",
            "route",
            "sse::encode",
            "template",
            "topic",
            "verify",
        ],
    ),
    ("demo", &["config", "reply"]),
    // One config generation, and what it is built of.
    (
        "app",
        &[
            "auth", "broker", "config", "demo", "hub", "inspect", "limits", "metrics", "proxy",
            "reply",
        ],
    ),
    (
        "broker",
        &["config", "hub", "metrics", "sse::encode", "topic"],
    ),
    (
        "inspect",
        &[
            "config", "hub", "metrics", "reply", "route", "topic", "verify",
        ],
    ),
    ("proxy", &["conn", "reply"]),
    // The config: checked types built from the YAML.
    (
        "config",
        &[
            "auth",
            "cors",
            "data",
            "limits",
            "route",
            "sse::encode",
            "streams",
            "template",
            "topic",
            "verify",
        ],
    ),
    // Compiled rules: webhook routes, stream routes, templates, subscriber auth.
    ("streams", &["auth", "reply", "route", "template", "topic"]),
    ("route", &["data", "template", "topic", "verify"]),
    ("auth", &["reply", "topic", "verify"]),
    ("cors", &["reply"]),
    ("data", &["template"]),
    ("verify", &[]),
    ("limits", &[]),
    ("template", &[]),
    // The core: topics, history and fan-out, the event stream body, the wire encoding.
    ("sse", &["hub", "limits", "metrics", "sse::encode"]),
    ("hub", &["metrics", "sse::encode", "topic"]),
    ("sse::encode", &[]),
    ("topic", &[]),
    ("metrics", &[]),
    // Leaves used by every layer.
    ("reply", &[]),
    ("conn", &[]),
    ("accept", &[]),
    ("shutdown", &[]),
];

/// Modules that speak HTTP or serve requests.
const HTTP: &[&str] = &[
    "server",
    "service",
    "admin",
    "reload",
    "direct",
    "fast",
    "subscribe",
    "ingest",
    "demo",
    "cors",
    "proxy",
    "conn",
    "reply",
    "dryrun",
];

/// Edges that no matrix may allow (issue 15's "Never" list); checked against
/// [`ALLOWED`] so that widening it cannot let them in.
fn never() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut hub = vec!["config", "app", "broker", "sse", "inspect", "auth"];
    hub.extend(HTTP);
    let mut config = vec!["broker", "hub", "app", "inspect", "sse"];
    config.extend(HTTP.iter().filter(|m| !["cors", "reply"].contains(m)));
    let everything: Vec<&str> = ALLOWED.iter().map(|(u, _)| *u).collect();
    vec![
        ("hub", hub),
        ("config", config),
        ("sse::encode", everything),
        (
            "proxy",
            vec![
                "hub", "broker", "topic", "ingest", "config", "server", "app", "service",
            ],
        ),
    ]
}

/// Edges present today because of work other parts of issue 15 are doing at the
/// same time. Each must go: once an edge is gone from `src/`, this test fails
/// until its line here is deleted, so the list only shrinks.
const PENDING: &[(&str, &str)] = &[
    // broker + hub: `hub::Limits::from_config` leaves the hub.
    ("hub", "config"),
    // broker + hub: the hub encodes with `sse::encode`, not with the stream body's module.
    ("hub", "sse"),
    // config: the broker url and stream checks move into config.
    ("config", "broker"),
    // broker + hub: `is_reserved_event` is in `sse::encode`; name it there, not in `sse`.
    ("config", "sse"),
    // broker + hub: `is_reserved_event`, `is_field_safe` are in `sse::encode`; name them there.
    ("ingest", "sse"),
];

/// One import: who imports what, where.
#[derive(Debug, Clone)]
struct Import {
    from: String,
    to: String,
    file: String,
    line: usize,
    path: String,
}

#[test]
fn src_follows_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = read_sources(&root.join("src"));
    assert!(
        sources.len() > 50 && sources.iter().any(|(f, _)| f == "src/hub/mod.rs"),
        "src/ was not read: {} files",
        sources.len()
    );
    let imports = imports(&sources);
    assert!(
        imports
            .iter()
            .any(|i| i.from == "service" && i.to == "subscribe"),
        "no service -> subscribe import found: the scanner is broken"
    );
    let units: BTreeSet<String> = sources
        .iter()
        .filter_map(|(f, _)| unit_of_file(f))
        .collect();
    let problems = check(&units, &imports, ALLOWED, PENDING, true);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_matrix_keeps_the_never_rules_and_has_no_cycle() {
    let mut problems = Vec::new();
    for (from, tos) in never() {
        for to in tos {
            if allowed(ALLOWED, from, to) {
                problems.push(format!(
                    "ALLOWED lets `{from}` import `{to}`, which must never be"
                ));
            }
        }
    }
    for (from, to) in PENDING {
        if allowed(ALLOWED, from, to) {
            problems.push(format!(
                "PENDING edge {from} -> {to} is in ALLOWED too: it is not pending"
            ));
        }
    }
    let edges: Vec<Import> = ALLOWED
        .iter()
        .flat_map(|(from, tos)| {
            tos.iter().map(move |to| Import {
                from: (*from).into(),
                to: (*to).into(),
                file: "ALLOWED".into(),
                line: 0,
                path: String::new(),
            })
        })
        .collect();
    problems.extend(cycles(&edges));
    for (from, tos) in ALLOWED {
        for to in *tos {
            if !ALLOWED.iter().any(|(u, _)| u == to) {
                problems.push(format!(
                    "`{from}` may import `{to}`, which is not in ALLOWED"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself: a bad import in each form is caught with its file and
/// line; comments and strings are not imports.
#[test]
fn a_bad_import_is_caught_in_every_form() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "src/hub/x.rs",
            "use crate::server::Options;\n",
            "src/hub/x.rs:1",
        ),
        (
            "src/hub/x.rs",
            "use std::sync::Arc;\nuse crate::{topic::Filter,\n    app::App};\n",
            "src/hub/x.rs:3",
        ),
        (
            "src/hub/x.rs",
            "use crate::{topic::{self, Filter}, config::{Config as C}};\n",
            "src/hub/x.rs:1",
        ),
        (
            "src/hub/x.rs",
            "fn f() {\n    let _ = crate::service::MAX_URI_BYTES;\n}\n",
            "src/hub/x.rs:2",
        ),
        (
            "src/proxy/x.rs",
            "use crate::hub::Hub;\n",
            "src/proxy/x.rs:1",
        ),
        (
            "src/config/x.rs",
            "pub(crate) fn f() -> crate::broker::Broker { todo!() }\n",
            "src/config/x.rs:1",
        ),
        // `super` from the encoding is the stream body's module.
        (
            "src/sse/encode.rs",
            "use super::EventStream;\n",
            "src/sse/encode.rs:1",
        ),
        // A module at the root reaching a sibling through the root.
        ("src/topic.rs", "use super::hub::Hub;\n", "src/topic.rs:1"),
    ];
    let units: BTreeSet<String> = ALLOWED.iter().map(|(u, _)| u.to_string()).collect();
    for (file, text, at) in cases {
        let found = imports(&[(file.to_string(), text.to_string())]);
        let problems = check(&units, &found, ALLOWED, &[], false);
        assert!(
            problems.len() == 1 && problems[0].starts_with(at),
            "{file} {text:?}: expected one problem at {at}, got {problems:#?}"
        );
    }

    let harmless = "//! see crate::server::Options\n\
        /* crate::app::App */\n\
        const S: &str = \"crate::server::x\";\n\
        const R: &str = r#\"crate::server::y \"quoted\"\"#;\n\
        const C: char = '\"';\n\
        const Q: char = '\\'';\n\
        fn f<'a>(x: &'a str) -> &'a str { x }\n\
        use crate::topic::Filter;\n\
        use crate::sse::encode::encode;\n\
        mod tests {\n    use super::*;\n    use self::inner::X;\n    mod inner { pub struct X; }\n}\n";
    let found = imports(&[("src/hub/x.rs".into(), harmless.into())]);
    let problems = check(&units, &found, ALLOWED, &[], false);
    assert!(problems.is_empty(), "{problems:#?}");
    let targets: BTreeSet<&str> = found.iter().map(|i| i.to.as_str()).collect();
    assert_eq!(
        targets,
        BTreeSet::from(["topic", "sse::encode"]),
        "{found:#?}"
    );
}

#[test]
fn a_cycle_is_caught_with_each_edge_located() {
    let sources = [
        ("src/a.rs".to_string(), "use crate::b::X;\n".to_string()),
        (
            "src/b/mod.rs".to_string(),
            "mod c;\nfn f() {\n    crate::a::g();\n}\n".to_string(),
        ),
    ];
    let matrix: &[(&str, &[&str])] = &[("a", &["b"]), ("b", &["a"])];
    let units = BTreeSet::from(["a".to_string(), "b".to_string()]);
    let problems = check(&units, &imports(&sources), matrix, &[], false);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = &problems[0];
    assert!(
        p.contains("import cycle") && p.contains("src/a.rs:1") && p.contains("src/b/mod.rs:3"),
        "{p}"
    );
}

#[test]
fn a_pending_edge_that_is_gone_must_be_deleted() {
    let sources = [(
        "src/hub/x.rs".to_string(),
        "use crate::topic::Filter;\n".to_string(),
    )];
    let units: BTreeSet<String> = ALLOWED.iter().map(|(u, _)| u.to_string()).collect();
    let problems = check(
        &units,
        &imports(&sources),
        ALLOWED,
        &[("hub", "config")],
        true,
    );
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("hub -> config"), "{}", problems[0]);
}

fn allowed(matrix: &[(&str, &[&str])], from: &str, to: &str) -> bool {
    matrix
        .iter()
        .any(|(u, tos)| *u == from && tos.contains(&to))
}

/// Everything wrong with `imports` under `matrix`; `stale` also reports the
/// pending edges that are no longer there.
fn check(
    units: &BTreeSet<String>,
    imports: &[Import],
    matrix: &[(&str, &[&str])],
    pending: &[(&str, &str)],
    stale: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for u in units {
        if !matrix.iter().any(|(m, _)| m == u) {
            problems.push(format!(
                "src/: unit `{u}` is not in the layer matrix (tests/layers.rs ALLOWED): place it"
            ));
        }
    }
    let mut kept = Vec::new();
    let mut seen_pending = BTreeSet::new();
    for i in imports {
        if allowed(matrix, &i.from, &i.to) {
            kept.push(i.clone());
        } else if let Some(p) = pending.iter().find(|(f, t)| *f == i.from && *t == i.to) {
            seen_pending.insert(*p);
        } else {
            problems.push(format!(
                "{}:{}: `{}` imports `{}` (`{}`), which the layers do not allow (README \"Architecture\", tests/layers.rs ALLOWED)",
                i.file, i.line, i.from, i.to, i.path
            ));
            kept.push(i.clone());
        }
    }
    problems.extend(cycles(&kept));
    if stale {
        for (from, to) in pending {
            if !seen_pending.contains(&(*from, *to)) {
                problems.push(format!(
                    "tests/layers.rs: PENDING edge {from} -> {to} is no longer in src/: delete its line"
                ));
            }
        }
    }
    problems
}

/// Each cycle between units, once, with where each of its edges is.
fn cycles(imports: &[Import]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for i in imports {
        graph
            .entry(i.from.as_str())
            .or_default()
            .entry(i.to.as_str())
            .or_insert(i);
    }
    let mut found = Vec::new();
    let mut reported: BTreeSet<Vec<&str>> = BTreeSet::new();
    for &start in graph.keys() {
        // The shortest way back to `start`, breadth first.
        let mut back: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closed = None;
        while let Some(u) = queue.pop_front() {
            for &v in graph.get(u).into_iter().flat_map(|m| m.keys()) {
                if v == start {
                    closed = Some(u);
                    break;
                }
                if !back.contains_key(v) {
                    back.insert(v, u);
                    queue.push_back(v);
                }
            }
            if closed.is_some() {
                break;
            }
        }
        let Some(mut last) = closed else { continue };
        let mut ring = vec![last];
        while last != start {
            last = back[last];
            ring.push(last);
        }
        ring.reverse();
        let mut key = ring.clone();
        key.sort_unstable();
        if !reported.insert(key) {
            continue;
        }
        let mut text = format!("import cycle: {} -> {start}", ring.join(" -> "));
        for (k, from) in ring.iter().enumerate() {
            let to = ring.get(k + 1).copied().unwrap_or(start);
            let i = graph[from][to];
            let _ = write!(
                text,
                "\n  {}:{}: {from} -> {to} (`{}`)",
                i.file, i.line, i.path
            );
        }
        found.push(text);
    }
    found
}

/// Every `.rs` file under `dir`, as (path from the crate root, text).
fn read_sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src/") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(dir.parent().expect("the crate root"))
                    .expect("under the crate root");
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.push((
                    rel,
                    std::fs::read_to_string(&path).expect("read a source file"),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file: `src/hub/mod.rs` is `hub`, `src/sse/encode.rs` is
/// `sse::encode`. `None` for the crate roots (`lib.rs`, and `main.rs`, a crate of its own).
fn module_of_file(file: &str) -> Option<Vec<String>> {
    let rel = file.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.is_empty() || (parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main")) {
        return None;
    }
    Some(parts)
}

fn unit_of_file(file: &str) -> Option<String> {
    module_of_file(file).and_then(|m| unit_of(&m))
}

/// The unit a crate-absolute module path belongs to.
fn unit_of(path: &[String]) -> Option<String> {
    let first = path.first()?;
    if let Some(second) = path.get(1) {
        let two = format!("{first}::{second}");
        if OWN_UNITS.contains(&two.as_str()) {
            return Some(two);
        }
    }
    Some(first.clone())
}

/// Every import of another unit in `sources`.
fn imports(sources: &[(String, String)]) -> Vec<Import> {
    let mut out = Vec::new();
    for (file, text) in sources {
        let Some(module) = module_of_file(file) else {
            continue;
        };
        let Some(from) = unit_of(&module) else {
            continue;
        };
        let code = strip(text);
        for (path, offset) in paths(&code, &module) {
            let Some(to) = unit_of(&path) else { continue };
            if to != from {
                out.push(Import {
                    from: from.clone(),
                    to,
                    file: file.clone(),
                    line: code[..offset].matches('\n').count() + 1,
                    path: path.join("::"),
                });
            }
        }
    }
    out
}

/// `text` with comments, string and char literals blanked out (line breaks kept,
/// so offsets keep their line).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if (c == b'r' || (c == b'b' && next == Some(b'r')))
            && !prev_is_ident(b, i)
            && raw_string_start(b, i + usize::from(c == b'b')).is_some()
        {
            let start = i + usize::from(c == b'b');
            let hashes = raw_string_start(b, start).expect("checked");
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = start + 2 + hashes;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| body + p + close.len());
            while i < end {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == b'"' {
            blank(&mut out, c);
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let step = if b[i] == b'\\' { 2 } else { 1 };
                for _ in 0..step {
                    if i < b.len() {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                }
            }
            if i < b.len() {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), kept.
            let len = if next == Some(b'\\') {
                b[i + 3..].iter().position(|&x| x == b'\'').map(|p| p + 4)
            } else {
                let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(ch_len + 2)
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII was blanked")
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// At `r"` or `r#…"`: how many `#`.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'r') {
        return None;
    }
    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
    (b.get(i + 1 + hashes) == Some(&b'"')).then_some(hashes)
}

/// Every crate-absolute path that `code` names through `crate::`, `super::` or
/// `self::`, with its offset. `module` is the file's module path; inline `mod x {`
/// blocks are followed so that `super::` inside them resolves right.
fn paths(code: &str, module: &[String]) -> Vec<(Vec<String>, usize)> {
    let toks = tokens(code);
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (name, depth inside).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut k = 0;
    while k < toks.len() {
        let t = &toks[k].0;
        match t.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            "mod" if toks.get(k + 2).is_some_and(|t| t.0 == "{") => {
                inline.push((toks[k + 1].0.clone(), depth + 1));
            }
            "crate" | "super" | "self"
                if toks.get(k + 1).is_some_and(|t| t.0 == "::")
                    && (k == 0 || toks[k - 1].0 != "::") =>
            {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut base = match t.as_str() {
                    "crate" => Vec::new(),
                    "self" => here,
                    _ => {
                        here.pop();
                        here
                    }
                };
                let mut j = k + 2;
                // `super::super::x`
                while toks.get(j).is_some_and(|t| t.0 == "super")
                    && toks.get(j + 1).is_some_and(|t| t.0 == "::")
                {
                    base.pop();
                    j += 2;
                }
                let end = tree(&toks, j, &base, &mut out);
                k = end;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    out
}

/// Reads a use tree (or an inline path) at `toks[k]` under `prefix`: segments,
/// then optionally `{ tree, … }` or `*`. Pushes each full path; returns the index after it.
fn tree(
    toks: &[(String, usize)],
    mut k: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut path = prefix.to_vec();
    // Where this branch begins: the line an import is reported at.
    let at = toks.get(k).map_or(0, |t| t.1);
    loop {
        match toks.get(k).map(|t| t.0.as_str()) {
            Some("{") => {
                k += 1;
                loop {
                    match toks.get(k).map(|t| t.0.as_str()) {
                        None => return k,
                        Some("}") => return k + 1,
                        Some(",") => k += 1,
                        Some("self") => {
                            out.push((path.clone(), toks[k].1));
                            k += 1;
                        }
                        Some(_) => k = tree(toks, k, &path, out),
                    }
                }
            }
            Some("*") => {
                out.push((path, at));
                return k + 1;
            }
            Some(t) if is_ident(t) => {
                path.push(t.to_owned());
                if toks.get(k + 1).is_some_and(|n| n.0 == "::")
                    && toks.get(k + 2).is_some_and(|n| n.0 != "<")
                {
                    k += 2;
                } else {
                    out.push((path, at));
                    // `as alias`
                    if toks.get(k + 1).is_some_and(|n| n.0 == "as") {
                        return k + 3;
                    }
                    return k + 1;
                }
            }
            _ => {
                out.push((path, at));
                return k;
            }
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, and single punctuation characters, with their offsets.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push((code[i..end].to_owned(), i));
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            out.push(("::".to_owned(), i));
        } else {
            out.push((c.to_string(), i));
        }
    }
    out
}

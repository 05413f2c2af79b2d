//! The layers of README "Architecture", checked on the source itself: every
//! `src/**/*.rs` is read, each `crate::`, `super::` and `self::` path in it (in `use`
//! lines, grouped `use crate::{a::b, c}` included, and inline in code) is mapped to
//! the unit it names, and the test fails, naming the file and line, on an import
//! [`MATRIX`] does not allow and on any import cycle between units.
//!
//! A unit is a top-level module of `src/` (`hub` holds `src/hub/**`), except the
//! submodules in [`OWN_UNITS`], which are units of their own.

mod scan;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use scan::{Import, imports, read_sources, unit_of_file};

/// Submodules that are units of their own: the pure SSE wire encoding sits below
/// the hub, the event stream body above it.
const OWN_UNITS: &[&str] = &["sse::encode"];

/// What each unit may import, and nothing else: `unit: the units it may import`.
/// Read top-down, as README "Architecture" draws it.
const MATRIX: &str = "
# The process: the accept loop, and the `hookcast route` command.
server:      accept admin app broker config conn fast hub reload service shutdown
dryrun:      config ingest inspect reply route
# What answers a request, and nothing imports back: dispatch, the admin listener,
# reloads, the HTTP/1 stream path on the socket (`fast`).
service:     app conn cors demo ingest reply route subscribe
admin:       accept app config hub ingest inspect metrics reply route sse subscribe
reload:      app broker config hub
fast:        app conn hub ingest limits metrics proxy reply route sse subscribe
# A subscription and a webhook, end to end.
subscribe:   app auth broker config conn cors hub limits metrics reply sse streams topic
ingest:      app broker config data hub inspect metrics proxy reply route sse::encode template topic verify
# One config generation, and the parts it is built of. The proxy knows the upstream only.
app:         auth broker config demo hub inspect limits metrics proxy reply
broker:      config hub metrics sse::encode topic
inspect:     config hub metrics reply route topic verify
demo:        config reply
proxy:       conn reply
# The config: checked types built from the YAML, and the compiled rules below it.
config:      auth cors data limits route sse::encode streams template topic verify
streams:     auth reply route template topic
route:       data template topic verify
auth:        reply topic verify
cors:        reply
data:        template
verify:
limits:
template:
# The core: the event stream body, topics, history and fan-out, the wire encoding.
sse:         hub limits metrics sse::encode
hub:         metrics sse::encode topic
sse::encode:
topic:
metrics:
# Leaves every layer may use.
reply:
conn:
accept:
shutdown:
";

/// Modules that speak HTTP or serve requests.
const HTTP: &[&str] = &[
    "server",
    "service",
    "admin",
    "reload",
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
/// [`MATRIX`] so that widening it cannot let them in.
fn never(matrix: &Matrix) -> Vec<(&'static str, Vec<String>)> {
    let own = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut hub = own(&["config", "app", "broker", "sse", "inspect", "auth"]);
    hub.extend(own(HTTP));
    let mut config = own(&["broker", "hub", "app", "inspect", "sse"]);
    config.extend(
        own(HTTP)
            .into_iter()
            .filter(|m| m != "cors" && m != "reply"),
    );
    let proxy = own(&[
        "hub", "broker", "topic", "ingest", "config", "server", "app", "service",
    ]);
    let everything = matrix.iter().map(|(u, _)| u.clone()).collect();
    vec![
        ("hub", hub),
        ("config", config),
        ("proxy", proxy),
        ("sse::encode", everything),
    ]
}

/// Edges against the layers tolerated while a change removes them (none today).
/// Each must go: once an edge is gone from `src/`, this test fails until its
/// line here is deleted, so the list only shrinks.
const PENDING: &[(&str, &str)] = &[];

/// Each unit and what it may import.
type Matrix = Vec<(String, Vec<String>)>;

fn parse_matrix(text: &str) -> Matrix {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            // `unit: a b c`, or `unit:` for a unit that imports nothing.
            let (unit, tos) = l
                .strip_suffix(':')
                .map(|u| (u, ""))
                .or_else(|| l.split_once(": "))
                .expect("`unit: imports`");
            (
                unit.trim().to_owned(),
                tos.split_whitespace().map(str::to_owned).collect(),
            )
        })
        .collect()
}

fn allowed(matrix: &Matrix, from: &str, to: &str) -> bool {
    matrix
        .iter()
        .any(|(u, tos)| u == from && tos.iter().any(|t| t == to))
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
    let imports = imports(&sources, OWN_UNITS);
    assert!(
        imports
            .iter()
            .any(|i| i.from == "service" && i.to == "subscribe"),
        "no service -> subscribe import found: the scanner is broken"
    );
    let units: BTreeSet<String> = sources
        .iter()
        .filter_map(|(f, _)| unit_of_file(f, OWN_UNITS))
        .collect();
    let problems = check(&units, &imports, &parse_matrix(MATRIX), PENDING, true);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_matrix_keeps_the_never_rules_and_has_no_cycle() {
    let matrix = parse_matrix(MATRIX);
    let mut problems = Vec::new();
    let mut units = BTreeSet::new();
    for (u, _) in &matrix {
        if !units.insert(u) {
            problems.push(format!("`{u}` is in MATRIX twice"));
        }
    }
    for (from, tos) in never(&matrix) {
        for to in tos {
            if allowed(&matrix, from, &to) {
                problems.push(format!(
                    "MATRIX lets `{from}` import `{to}`, which must never be"
                ));
            }
        }
    }
    for (from, to) in PENDING {
        if allowed(&matrix, from, to) {
            problems.push(format!(
                "PENDING edge {from} -> {to} is in MATRIX too: it is not pending"
            ));
        }
    }
    let mut edges = Vec::new();
    for (from, tos) in &matrix {
        for to in tos {
            if !units.contains(to) {
                problems.push(format!(
                    "`{from}` may import `{to}`, which is not in MATRIX"
                ));
            }
            edges.push(Import {
                from: from.clone(),
                to: to.clone(),
                file: "MATRIX".into(),
                line: 0,
                path: String::new(),
            });
        }
    }
    problems.extend(cycles(&edges));
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
    let matrix = parse_matrix(MATRIX);
    let units: BTreeSet<String> = matrix.iter().map(|(u, _)| u.clone()).collect();
    for (file, text, at) in cases {
        let found = imports(&[(file.to_string(), text.to_string())], OWN_UNITS);
        let problems = check(&units, &found, &matrix, &[], false);
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
    let found = imports(&[("src/hub/x.rs".into(), harmless.into())], OWN_UNITS);
    let problems = check(&units, &found, &matrix, &[], false);
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
    let matrix = parse_matrix("a: b\nb: a\n");
    let units = BTreeSet::from(["a".to_string(), "b".to_string()]);
    let problems = check(&units, &imports(&sources, &[]), &matrix, &[], false);
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
    let matrix = parse_matrix(MATRIX);
    let units: BTreeSet<String> = matrix.iter().map(|(u, _)| u.clone()).collect();
    let found = imports(&sources, OWN_UNITS);
    let problems = check(&units, &found, &matrix, &[("hub", "config")], true);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("hub -> config"), "{}", problems[0]);
}

/// Everything wrong with `imports` under `matrix`; `stale` also reports the
/// pending edges that are no longer there.
fn check(
    units: &BTreeSet<String>,
    imports: &[Import],
    matrix: &Matrix,
    pending: &[(&str, &str)],
    stale: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for u in units {
        if !matrix.iter().any(|(m, _)| m == u) {
            problems.push(format!(
                "src/: unit `{u}` is not in the layer matrix (MATRIX in tests/layers/main.rs): place it"
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
                "{}:{}: `{}` imports `{}` (`{}`), which the layers do not allow (README \"Architecture\", MATRIX in tests/layers/main.rs)",
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
                    "tests/layers/main.rs: PENDING edge {from} -> {to} is no longer in src/: delete its line"
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

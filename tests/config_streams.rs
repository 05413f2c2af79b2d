//! The configuration of stream routes, JSON-shaped `data`, reserved event names,
//! `cors.allow_headers` and `subscribers.upstream.url`: each mistake is reported
//! at its line and column, by the library and by `hookcast check`.

mod support;

use std::process::Command;

use hookcast::config::{self, Diagnostic};
use support::checks::{FILE, assert_one_diagnostic, load_with_env, rejected};

fn diagnostics(yaml: &str) -> Vec<Diagnostic> {
    rejected(load_with_env(yaml, &[("JWT", "jwt-secret")]), yaml)
}

/// Asserts exactly one problem, at `line`:`column`, whose message has every phrase.
#[track_caller]
fn assert_error(yaml: &str, line: u64, column: u64, phrases: &[&str]) {
    assert_one_diagnostic(&diagnostics(yaml), yaml, line, column, phrases);
}

/// One stream route with these topics, under `auth`.
fn stream(auth: &str, path: &str, topics: &str) -> String {
    format!(
        "upstream:\n  url: \"http://127.0.0.1:3000\"\n{auth}streams:\n  - name: s\n    path: \"{path}\"\n    topics: {topics}\n"
    )
}

const JWT: &str = "subscribers:\n  auth: jwt\n  jwt: { secret_env: JWT }\n";
const UPSTREAM: &str = "subscribers:\n  auth: upstream\n";

#[test]
fn stream_topics_that_can_never_resolve_are_errors_at_the_topics() {
    for (auth, topics, phrase) in [
        (
            "",
            r#"["user.{claim:/sub}"]"#,
            "subscribers.auth is none; set auth: jwt",
        ),
        (
            UPSTREAM,
            r#"["user.{claim:/sub}"]"#,
            "subscribers.auth is upstream; set auth: jwt",
        ),
        (JWT, r#"["user.{auth:/id}"]"#, "set auth: upstream"),
        ("", r#"["a.{body}"]"#, "read a webhook"),
        ("", r#"["a.{json:/x}"]"#, "read a webhook"),
        ("", r#"["a.{response:/x}"]"#, "read a webhook"),
        ("", r#"["a.{path:nope}"]"#, "no `{nope}` segment"),
        ("", r#"["a b.{query:x}"]"#, "' ' is not allowed"),
        ("", r#"["a.>.b"]"#, "topic `a.>.b`"),
        ("", "[]", "lists no topic"),
        (
            UPSTREAM,
            r#"["org.{header:org}.user.{auth:/id}"]"#,
            "cannot mix",
        ),
        ("", r#"["{bogus:x}"]"#, "unknown placeholder kind `bogus`"),
    ] {
        let yaml = stream(auth, "/feed", topics);
        let line = yaml.lines().position(|l| l.contains("topics:")).unwrap() as u64 + 1;
        assert_error(&yaml, line, 13, &["stream `s`", phrase]);
    }
    // What each auth mode can resolve is accepted.
    for (auth, topics) in [
        (
            JWT,
            r#"["user.{claim:/sub}", "org.{header:org}.u.{claim:/sub}"]"#,
        ),
        (
            UPSTREAM,
            r#"["user.{auth:/id}", "org.{header:org}", "news.*"]"#,
        ),
        ("", r#"["room.{path:room}.{query:k}"]"#),
    ] {
        let yaml = stream(auth, "/rooms/{room}", topics);
        config::from_yaml_with_env(FILE, &yaml, &|_| Some("jwt-secret".into()))
            .unwrap_or_else(|e| panic!("{yaml}\n{e}"));
    }
}

#[test]
fn a_stream_path_taken_by_hookcast_or_used_twice_is_an_error() {
    let yaml = stream("", "/events", r#"["a"]"#);
    assert_error(&yaml, 5, 11, &["`/events` is taken by hookcast"]);
    let yaml = stream("", "/_hookcast/x", r#"["a"]"#);
    assert_error(&yaml, 5, 11, &["taken by hookcast"]);
    let twice = format!(
        "{}  - name: t\n    path: \"/feed\"\n    topics: [b]\n",
        stream("", "/feed", "[a]")
    );
    assert_error(&twice, 8, 11, &["`/feed` is used twice"]);
    assert_error(
        "streams:\n  - name: s\n    path: /a\n    topics: [a]\n    topic: b\n",
        5,
        5,
        &["unknown field `topic`"],
    );
}

#[test]
fn identity_placeholders_are_not_for_webhook_routes() {
    assert_error(
        "routes:\n  - name: r\n    match: { path: /h }\n    publish:\n      topic: \"u.{claim:/sub}\"\n",
        5,
        14,
        &["route `r`", "for streams"],
    );
}

#[test]
fn reserved_event_names_are_errors_when_literal() {
    assert_error(
        "routes:\n  - name: r\n    match: { path: /h }\n    publish:\n      topic: a\n      event: hookcast.resync\n",
        6,
        14,
        &["route `r`", "reserved"],
    );
    // A rendered one can only be refused per request (422 invalid_event).
    config::from_yaml(
        FILE,
        "routes:\n  - name: r\n    match: { path: /h }\n    publish:\n      topic: a\n      event: \"{header:X-Event}\"\n",
    )
    .unwrap();
}

#[test]
fn json_data_errors_name_the_key_and_an_unquoted_placeholder_is_caught() {
    let route = |data: &str| {
        format!(
            "routes:\n  - name: r\n    match: {{ path: /h }}\n    publish:\n      topic: a\n      data:{data}\n"
        )
    };
    assert_error(
        &route("\n        order: \"{json:order}\"\n"),
        7,
        9,
        &["publish.data", "at `order`", "JSON Pointer"],
    );
    assert_error(&route(" {body}"), 6, 13, &["publish.data", "in quotes"]);
    assert_error(
        &route("\n        who: \"{response:/id}\"\n"),
        7,
        9,
        &["publish.data", "mode publish"],
    );
    config::from_yaml(
        FILE,
        &route("\n        order: \"{json:/order}\"\n        n: 1\n"),
    )
    .unwrap();
}

#[test]
fn subscribers_upstream_url_defaults_to_upstream_url() {
    let yaml = "upstream:\n  url: \"http://127.0.0.1:3000/\"\nsubscribers:\n  auth: upstream\n  upstream:\n    path: /api/me\n";
    let c = config::from_yaml(FILE, yaml).unwrap();
    let hookcast::auth::Mode::Upstream(u) = c.subscribers else {
        panic!("not upstream auth")
    };
    assert_eq!(u.endpoint, "http://127.0.0.1:3000/api/me");
    // With neither, there is nowhere to ask.
    assert_error(
        "subscribers:\n  auth: upstream\n  upstream:\n    path: /api/me\n",
        4,
        5,
        &["subscribers.upstream.url is missing", "no upstream.url"],
    );
    assert_error(
        "subscribers:\n  auth: upstream\n",
        2,
        9,
        &["subscribers.upstream", "upstream.url"],
    );
}

#[test]
fn cors_allow_headers_must_be_header_names() {
    assert_error(
        "cors:\n  allow_origins: [\"https://a.test\"]\n  allow_headers: [\"x ok\"]\n",
        3,
        19,
        &["cors.allow_headers", "`x ok`"],
    );
}

#[test]
fn hookcast_check_reports_stream_errors_with_file_line_and_column() {
    let dir = support::TempDir::new("check-streams");
    let file = dir.write("bad.yaml", &stream("", "/feed", r#"["user.{claim:/sub}"]"#));
    let out = Command::new(env!("CARGO_BIN_EXE_hookcast"))
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:6:13: stream `s`: topics:", file.display());
    assert!(stderr.contains(&want), "{stderr}");
}

//! The configuration contract (README, "Configuration"): every problem is reported
//! at a 1-based line and column (an unknown key at the key, a bad value at the
//! value), all semantic problems of a file at once, and the defaults are the
//! documented ones.

use std::path::Path;
use std::time::Duration;

mod support;

use hookcast::config::{self, Config, Diagnostic, Error, LogFormat};
use support::checks::{FILE, assert_one_diagnostic, load_with_env, rejected};

/// The diagnostics of a YAML text that must be rejected.
fn diagnostics(yaml: &str) -> Vec<Diagnostic> {
    rejected(config::from_yaml(FILE, yaml), yaml)
}

/// Asserts that `yaml` has exactly one problem, at `line`:`column`, whose message
/// contains every one of `phrases`.
#[track_caller]
fn assert_error(yaml: &str, line: u64, column: u64, phrases: &[&str]) {
    assert_one_diagnostic(&diagnostics(yaml), yaml, line, column, phrases);
}

#[track_caller]
fn load_ok(yaml: &str) -> Config {
    config::from_yaml(FILE, yaml).unwrap_or_else(|e| panic!("rejected:\n{yaml}\n{e}"))
}

/// A config with one route whose `match.path` and `publish.topic` are given as written.
fn route(path: &str, topic: &str) -> String {
    format!(
        "routes:
  - name: r1
    match:
      path: {path}
    publish:
      topic: {topic}
"
    )
}

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_top_level_key_points_at_the_key() {
    assert_error(
        "listen: \"127.0.0.1:8080\"\nbogus: 1\n",
        2,
        1,
        &["unknown field `bogus`"],
    );
}

#[test]
fn unknown_key_in_sse_points_at_the_key() {
    assert_error(
        "sse:\n  heartbeat: 15s\n  bogus: 1\n",
        3,
        3,
        &["unknown field `bogus`"],
    );
}

#[test]
fn unknown_key_in_a_route_match_points_at_the_key() {
    let yaml = "routes:
  - name: r1
    match:
      path: /a
      bogus: 1
    publish:
      topic: x
";
    assert_error(yaml, 5, 7, &["unknown field `bogus`"]);
}

#[test]
fn admin_listen_is_an_address() {
    let c =
        hookcast::config::from_yaml("t.yaml", "admin:\n  listen: \"127.0.0.1:9901\"\n").unwrap();
    assert_eq!(c.admin, Some("127.0.0.1:9901".parse().unwrap()));
    assert_eq!(
        hookcast::config::from_yaml("t.yaml", "").unwrap().admin,
        None
    );
    assert_error(
        "admin:\n  listen: \"localhost:9901\"\n",
        2,
        11,
        &["admin.listen", "not an address"],
    );
    assert_error("admin:\n  bogus: 1\n", 2, 3, &["unknown field `bogus`"]);
}

#[test]
fn admin_listen_must_differ_from_listen() {
    assert_error(
        "listen: \"0.0.0.0:8080\"\nadmin:\n  listen: \"0.0.0.0:8080\"\n",
        3,
        11,
        &["admin.listen must differ from listen"],
    );
}

#[test]
fn messages_do_not_repeat_the_location() {
    // The location is printed once, as FILE:LINE:COL; a second copy inside the
    // message ("... at line 3, column 3") is noise in `hookcast check` output.
    let e = config::from_yaml(FILE, "sse:\n  heartbeat: 15s\n  bogus: 1\n").unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with("test.yaml:3:3: sse: unknown field `bogus`"),
        "{shown}"
    );
    assert!(
        !shown.contains("at line"),
        "the message repeats the location: {shown}"
    );
}

// ---------------------------------------------------------------- wrong types

#[test]
fn a_string_where_a_number_is_expected_points_at_the_value() {
    assert_error("sse:\n  history: \"many\"\n", 2, 12, &["invalid"]);
}

#[test]
fn a_map_where_a_string_is_expected_points_at_the_value() {
    assert_error("sse:\n  path: {a: b}\n", 2, 9, &["expected string"]);
}

#[test]
fn a_topic_that_yaml_reads_as_a_number_is_still_a_topic() {
    // `42` is a valid topic and every other string key accepts plain scalars
    // (e.g. header values), so `topic: 42` must not be a type error.
    let c = load_ok(&route("/a", "42"));
    assert_eq!(c.router.len(), 1);
    let c = load_ok(&route("/a", "[2024, \"orders.all\"]"));
    assert_eq!(c.router.routes()[0].publish.topics.len(), 2);
}

// ---------------------------------------------------------------- durations and sizes

#[test]
fn a_duration_without_unit_is_an_error_at_the_value() {
    assert_error(
        "sse:\n  heartbeat: 15\n",
        2,
        14,
        &["sse.heartbeat", "needs a unit"],
    );
}

#[test]
fn a_duration_with_an_unknown_unit_is_an_error_at_the_value() {
    assert_error(
        "shutdown_grace: 10x\n",
        1,
        17,
        &["shutdown_grace", "not a duration unit"],
    );
    assert_error(
        "dedupe:\n  window: 10x\n",
        2,
        11,
        &["dedupe.window", "not a duration unit"],
    );
}

#[test]
fn a_size_that_is_not_whole_bytes_is_an_error_at_the_value() {
    assert_error(
        "limits:\n  max_body: 0.1KiB\n",
        2,
        13,
        &["limits.max_body", "whole number of bytes"],
    );
}

#[test]
fn compound_and_fractional_durations_and_kubernetes_sizes_are_accepted() {
    let c = load_ok(
        "shutdown_grace: 1.5s\ndedupe:\n  window: 1h30m\nsse:\n  history_ttl: 1d\n  history_bytes: 1Mi\nlimits:\n  max_body: 1.5KiB\n",
    );
    assert_eq!(c.shutdown_grace, Duration::from_millis(1500));
    assert_eq!(c.dedupe.window, Duration::from_secs(5400));
    assert_eq!(c.sse.history_ttl, Duration::from_secs(86_400));
    assert_eq!(c.sse.history_bytes, 1 << 20);
    assert_eq!(c.limits.max_body, 1536);
}

#[test]
fn a_lowercase_size_unit_is_an_error_at_the_value() {
    assert_error(
        "limits:\n  max_body: 1mb\n",
        2,
        13,
        &["limits.max_body", "not a size unit"],
    );
}

#[test]
fn sizes_accept_binary_and_decimal_units() {
    let c = load_ok("sse:\n  history_bytes: 64KiB\nlimits:\n  max_body: 64KB\n");
    assert_eq!(c.sse.history_bytes, 65_536);
    assert_eq!(c.limits.max_body, 64_000);

    let c = load_ok("sse:\n  history_bytes: 2MB\nlimits:\n  max_body: 2MiB\n");
    assert_eq!(c.sse.history_bytes, 2_000_000);
    assert_eq!(c.limits.max_body, 2_097_152);

    let c = load_ok("sse:\n  history_bytes: 1GiB\nlimits:\n  max_body: 1GB\n");
    assert_eq!(c.sse.history_bytes, 1_073_741_824);
    assert_eq!(c.limits.max_body, 1_000_000_000);

    let c = load_ok("limits:\n  max_body: 1234\n");
    assert_eq!(c.limits.max_body, 1234);
}

#[test]
fn durations_accept_every_unit() {
    let c =
        load_ok("shutdown_grace: 500ms\nsse:\n  heartbeat: 2m\n  retry: 7s\n  history_ttl: 2h\n");
    assert_eq!(c.shutdown_grace, Duration::from_millis(500));
    assert_eq!(c.sse.heartbeat, Duration::from_secs(120));
    assert_eq!(c.sse.retry, Duration::from_secs(7));
    assert_eq!(c.sse.history_ttl, Duration::from_secs(7200));
}

// ---------------------------------------------------------------- listen

#[test]
fn a_bad_listen_address_is_an_error_at_the_value() {
    assert_error(
        "listen: \"localhost-8080\"\n",
        1,
        9,
        &["listen", "not an address"],
    );
    assert_error(
        "demo: true\nlisten: \"127.0.0.1\"\n",
        2,
        9,
        &["listen", "not an address"],
    );
}

// ---------------------------------------------------------------- routes

#[test]
fn a_duplicate_route_name_points_at_the_second_one() {
    let yaml = "routes:
  - name: orders
    match: {path: /a}
    publish: {topic: a}
  - name: orders
    match: {path: /b}
    publish: {topic: b}
";
    assert_error(yaml, 5, 11, &["orders", "used twice"]);
}

#[test]
fn an_unknown_placeholder_kind_is_an_error_at_the_template() {
    assert_error(
        &route("/a", "\"x.{foo:bar}\""),
        6,
        14,
        &["unknown placeholder kind `foo`"],
    );
}

#[test]
fn a_path_placeholder_the_route_path_lacks_is_an_error() {
    assert_error(
        &route("\"/hooks/{room}\"", "\"room.{path:x}\""),
        6,
        14,
        &["{path:x}", "never resolve"],
    );
    // and the same with a segment that exists is fine
    let c = load_ok(&route("\"/hooks/{room}\"", "\"room.{path:room}\""));
    assert_eq!(c.router.len(), 1);
}

#[test]
fn a_response_placeholder_in_mode_publish_is_an_error() {
    let yaml = "routes:
  - name: r1
    match:
      path: /a
    publish:
      topic: orders
      data: \"{response:/x}\"
    mode: publish
";
    assert_error(yaml, 7, 13, &["{response:", "never resolve"]);
}

#[test]
fn a_literal_topic_with_a_space_is_an_error() {
    assert_error(&route("/a", "\"orders eu\""), 6, 14, &["orders eu", "' '"]);
}

#[test]
fn a_literal_topic_with_an_empty_segment_is_an_error() {
    assert_error(&route("/a", "\"a..b\""), 6, 14, &["a..b", "empty segment"]);
}

#[test]
fn a_forbidden_character_in_the_literal_part_of_a_template_topic_is_an_error() {
    assert_error(
        &route("\"/r/{x}\"", "\"room {path:x}\""),
        6,
        14,
        &["publish.topic", "' '"],
    );
}

#[test]
fn a_route_path_without_leading_slash_is_an_error_at_the_value() {
    assert_error(
        &route("hooks/a", "x"),
        4,
        13,
        &["hooks/a", "must start with `/`"],
    );
}

#[test]
fn a_route_path_taken_by_the_sse_path_is_an_error() {
    assert_error(&route("/events", "x"), 4, 13, &["/events", "taken"]);
    let custom = format!("sse:\n  path: /stream\n{}", route("/stream", "x"));
    assert_error(&custom, 6, 13, &["/stream", "taken"]);
    // `/events` is free once the stream lives elsewhere
    let moved = format!("sse:\n  path: /stream\n{}", route("/events", "x"));
    assert_eq!(load_ok(&moved).router.len(), 1);
}

#[test]
fn a_route_path_under_hookcast_is_an_error() {
    assert_error(
        &route("/_hookcast/hook", "x"),
        4,
        13,
        &["/_hookcast/hook", "taken"],
    );
}

#[test]
fn mode_forward_needs_an_upstream_and_other_modes_are_unknown() {
    let yaml = "routes:
  - name: r1
    match: {path: /a}
    publish: {topic: x}
    mode: forward
";
    assert_error(yaml, 5, 11, &["mode forward", "no upstream is configured"]);
    let yaml = "routes:
  - name: r1
    match: {path: /a}
    publish: {topic: x}
    mode: teleport
";
    assert_error(yaml, 5, 11, &["unknown mode `teleport`"]);
}

#[test]
fn an_invalid_http_method_is_an_error_at_the_value() {
    let m = |method: &str| {
        format!(
            "routes:\n  - name: r1\n    match:\n      path: /a\n      method: {method}\n    publish: {{topic: x}}\n"
        )
    };
    assert_error(&m("post"), 5, 15, &["`post` is not an HTTP method"]);
    assert_error(&m("\"PO ST\""), 5, 15, &["`PO ST` is not an HTTP method"]);
    assert_eq!(
        load_ok(&m("PUT")).router.routes()[0].method,
        http_method("PUT")
    );
}

fn http_method(s: &str) -> http::Method {
    http::Method::from_bytes(s.as_bytes()).unwrap()
}

#[test]
fn an_invalid_header_name_in_match_is_an_error_at_the_key() {
    let yaml = "routes:
  - name: r1
    match:
      path: /a
      headers:
        X-Good: \"*\"
        \"X Bad\": \"1\"
    publish: {topic: x}
";
    assert_error(yaml, 7, 9, &["`X Bad` is not a valid header name"]);
}

#[test]
fn a_json_match_key_that_is_not_a_pointer_is_an_error_at_the_key() {
    let yaml = "routes:
  - name: r1
    match:
      path: /a
      json:
        /ok: 1
        type: \"order\"
    publish: {topic: x}
";
    assert_error(yaml, 7, 9, &["`type` is not a JSON Pointer"]);
}

// ---------------------------------------------------------------- sse bounds

#[test]
fn history_zero_is_an_error_that_mentions_replay() {
    assert_error("sse:\n  history: 0\n", 2, 12, &["sse.history", "replay"]);
}

#[test]
fn history_bytes_zero_is_an_error() {
    assert_error(
        "sse:\n  history_bytes: 0\n",
        2,
        18,
        &["sse.history_bytes", "at least 1"],
    );
}

#[test]
fn subscriber_queue_zero_is_an_error() {
    assert_error(
        "sse:\n  subscriber_queue: 0\n",
        2,
        21,
        &["sse.subscriber_queue", "at least 1"],
    );
}

#[test]
fn subscriber_queue_bytes_zero_is_an_error_and_units_apply() {
    assert_error(
        "sse:\n  subscriber_queue_bytes: 0\n",
        2,
        27,
        &["sse.subscriber_queue_bytes", "at least 1 byte"],
    );
    let c =
        hookcast::config::from_yaml("t.yaml", "sse:\n  subscriber_queue_bytes: 1MiB\n").unwrap();
    assert_eq!(c.sse.subscriber_queue_bytes, 1 << 20);
}

// ---------------------------------------------------------------- log

#[test]
fn an_unknown_log_format_is_an_error_at_the_value() {
    assert_error("log:\n  format: xml\n", 2, 11, &["log.format", "`xml`"]);
}

#[test]
fn a_malformed_log_filter_is_an_error_at_the_value() {
    assert_error("log:\n  level: \"info,,==\"\n", 2, 10, &["log.level"]);
}

#[test]
fn a_log_level_that_is_not_a_level_is_an_error() {
    // EnvFilter reads a bare word as a target name: `warning` would enable only
    // the (non-existent) target "warning" and silently hide every hookcast log.
    assert_error(
        "log:\n  level: warning\n",
        2,
        10,
        &["log.level", "`warning`"],
    );
    // real levels and target filters are fine
    for level in [
        "error",
        "warn",
        "info",
        "debug",
        "trace",
        "\"hookcast=debug,info\"",
    ] {
        let c = load_ok(&format!("log:\n  level: {level}\n"));
        assert_eq!(c.log.level, level.trim_matches('"'));
    }
}

// ---------------------------------------------------------------- syntax

#[test]
fn a_yaml_syntax_error_is_reported_where_it_is() {
    assert_error(
        "listen: \"127.0.0.1:8080\"\nsse: {history: 1\n",
        2,
        6,
        &["unclosed"],
    );
}

#[test]
fn a_duplicate_key_is_an_error_at_the_second_one() {
    assert_error(
        "listen: \"127.0.0.1:1\"\nlisten: \"127.0.0.1:2\"\n",
        2,
        1,
        &["duplicate", "listen"],
    );
}

// ---------------------------------------------------------------- whole file

#[test]
fn every_semantic_error_is_reported_sorted_by_line() {
    // Written in an order different from the order of the checks.
    let yaml = "routes:
  - name: r1
    match:
      path: hooks
    publish:
      topic: \"a..b\"
log:
  format: xml
sse:
  heartbeat: 15
  history: 0
listen: \"nowhere\"
";
    let ds = diagnostics(yaml);
    let got: Vec<(u64, u64)> = ds.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        got,
        vec![(4, 13), (6, 14), (8, 11), (10, 14), (11, 12), (12, 9)],
        "{ds:#?}"
    );
    assert!(ds[0].message.contains("must start with `/`"), "{ds:#?}");
    assert!(ds[1].message.contains("a..b"), "{ds:#?}");
    assert!(ds[2].message.contains("log.format"), "{ds:#?}");
    assert!(ds[3].message.contains("sse.heartbeat"), "{ds:#?}");
    assert!(ds[4].message.contains("sse.history"), "{ds:#?}");
    assert!(ds[5].message.contains("listen"), "{ds:#?}");

    // Display: one FILE:LINE:COL: message per line, in the same order.
    let shown = config::from_yaml(FILE, yaml).unwrap_err().to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 6, "{shown}");
    for (line, d) in lines.iter().zip(&ds) {
        assert_eq!(
            *line,
            format!("test.yaml:{}:{}: {}", d.line, d.column, d.message)
        );
    }
}

#[test]
fn an_empty_file_is_a_valid_config_without_routes() {
    for text in ["", "\n", "   \n\n", "# only a comment\n"] {
        let c = load_ok(text);
        assert_eq!(c.router.len(), 0, "{text:?}");
    }
}

#[test]
fn defaults_are_the_documented_values() {
    let c = load_ok("");
    assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.sse.path, "/events");
    assert_eq!(c.sse.heartbeat, Duration::from_secs(15));
    assert_eq!(c.sse.retry, Duration::from_secs(3));
    assert_eq!(c.sse.history, 1000);
    assert_eq!(c.sse.history_ttl, Duration::from_secs(3600));
    assert_eq!(c.sse.history_bytes, 16 * 1024 * 1024);
    assert_eq!(c.sse.subscriber_queue, 1024);
    assert_eq!(c.sse.subscriber_queue_bytes, 8 * 1024 * 1024);
    assert_eq!(c.sse.max_subscribers, 100_000);
    assert_eq!(c.sse.max_topics_per_subscriber, 32);
    assert_eq!(c.sse.max_stream_duration, None);
    assert_eq!(c.dedupe.window, Duration::from_secs(3600));
    assert_eq!(c.dedupe.max_keys, 100_000);
    assert_eq!(c.limits.max_body, 1024 * 1024);
    assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert!(!c.demo);
    assert_eq!(c.router.len(), 0);
    // And the rest of the README's defaults table (Configuration).
    assert_eq!(c.admin, None);
    assert!(c.upstream.is_none());
    assert!(c.cors.is_none());
    assert_eq!(c.limits.max_connections, None);
    assert_eq!(c.limits.max_subscribers_per_ip, None);
    assert!(c.limits.trusted_proxies.is_empty());
    assert_eq!(c.broker, config::Broker::Memory);
    assert_eq!(c.subscribers.name(), "none");
}

#[test]
fn a_route_gets_the_default_method_and_topics() {
    let c = load_ok(&route("\"/hooks/{room}\"", "[\"room.{path:room}\", all]"));
    let r = &c.router.routes()[0];
    assert_eq!(&*r.name, "r1");
    assert_eq!(r.method, http::Method::POST);
    assert_eq!(r.path.as_str(), "/hooks/{room}");
    assert_eq!(r.publish.topics.len(), 2);
}

#[test]
fn the_example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let c = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.demo);
    assert!(!c.router.is_empty(), "the example has no route");
    assert_eq!(c.sse.path, "/events");
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let path = std::env::temp_dir().join(format!(
        "hookcast-config-test-missing-{}.yaml",
        std::process::id()
    ));
    match config::load(&path) {
        Err(e @ Error::Read { .. }) => {
            let shown = e.to_string();
            assert!(shown.contains(&path.display().to_string()), "{shown}");
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn the_redis_url_may_come_from_a_variable_and_is_never_echoed() {
    let yaml = "broker:\n  kind: redis\n  url_env: REDIS_URL\n";
    let c = load_with_env(yaml, &[("REDIS_URL", "redis://:pw@redis.example:6379/0")])
        .unwrap_or_else(|e| panic!("{e}"));
    match c.broker {
        config::Broker::Redis(r) => assert_eq!(r.url, "redis://:pw@redis.example:6379/0"),
        other => panic!("{other:?}"),
    }
    let e = load_with_env(yaml, &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{FILE}:3:12: broker.url_env: the variable REDIS_URL is not set")
    );
    let e = load_with_env(yaml, &[("REDIS_URL", "http://u:s3cret@x")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{FILE}:3:12: broker.url_env: ")),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    let both = "broker:\n  kind: redis\n  url: redis://a\n  url_env: REDIS_URL\n";
    assert_error(both, 4, 12, &["url or url_env, not both"]);
}

#[test]
fn an_error_in_a_list_of_secrets_points_at_the_item() {
    let yaml = "routes:
  - name: a
    match: {path: /hooks/a}
    verify:
      scheme: github
      secret_env: [SET, UNSET]
    publish: {topic: a}
";
    let e = load_with_env(yaml, &[("SET", "s")]).unwrap_err();
    let Error::Invalid { diagnostics, .. } = e else {
        panic!("{e}")
    };
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!((diagnostics[0].line, diagnostics[0].column), (6, 25));
    assert!(
        diagnostics[0].message.contains("`UNSET` is not set"),
        "{diagnostics:?}"
    );
    // A block list, and an item of the wrong type.
    let yaml = "routes:
  - name: a
    match: {path: /hooks/a}
    verify:
      scheme: github
      secret_env:
        - SET
        - {x: 1}
    publish: {topic: a}
";
    let e = load_with_env(yaml, &[("SET", "s")]).unwrap_err();
    let Error::Invalid { diagnostics, .. } = e else {
        panic!("{e}")
    };
    assert_eq!(
        (diagnostics[0].line, diagnostics[0].column),
        (8, 11),
        "{diagnostics:?}"
    );
}

#[test]
fn every_error_is_reported_in_one_run_each_at_its_place() {
    let yaml = r#"listen: "127.0.0.1:8080"
bogus: 1
sse:
  heartbeat: 15
  history: [1]
  colour: red
admin: {listen: "127.0.0.1:9901", extra: 2}
routes:
  - name: a
    match: {path: /hooks/a}
    verify:
      scheme: github
      secret_env: [SET, {x: 1}, UNSET]
    publish: {topic: "bad topic"}
  - name: b
    match: {path: /hooks/b, method: [POST]}
    publish: {topic: b}
  - name: c
    match: {path: /hooks/c}
    verify: {scheme: [1], secret_env: SET}
    publish: {topic: c}
"#;
    let e = load_with_env(yaml, &[("SET", "s")]).unwrap_err();
    let Error::Invalid { diagnostics, .. } = e else {
        panic!("{e}")
    };
    let want: [(u64, u64, &str); 10] = [
        (2, 1, "unknown field `bogus`"),
        (4, 14, "sse.heartbeat: duration `15` needs a unit"),
        (5, 12, "sse.history: expected"),
        (6, 3, "sse: unknown field `colour`"),
        (7, 35, "admin: unknown field `extra`"),
        (13, 25, "routes[0].verify.secret_env[1]: expected"),
        (13, 33, "`UNSET` is not set"),
        (14, 22, "publish.topic `bad topic`"),
        (16, 37, "routes[1].match.method: expected"),
        (20, 22, "routes[2].verify.scheme: expected"),
    ];
    assert_eq!(diagnostics.len(), want.len(), "{diagnostics:#?}");
    for (d, (line, column, phrase)) in diagnostics.iter().zip(want) {
        assert_eq!((d.line, d.column), (line, column), "{d:?}");
        assert!(d.message.contains(phrase), "{d:?} lacks {phrase:?}");
    }
}

#[test]
fn a_required_key_that_is_really_missing_is_still_reported() {
    let yaml = "admin: {bogus: 1}\nroutes:\n  - name: a\n    match: {path: /hooks/a}\n    verify: {secret_env: X}\n    publish: {topic: a}\n";
    let ds = diagnostics(yaml);
    assert_eq!(ds.len(), 3, "{ds:#?}");
    let at = |phrase: &str| {
        let d = ds
            .iter()
            .find(|d| d.message.contains(phrase))
            .unwrap_or_else(|| panic!("no {phrase:?} in {ds:#?}"));
        (d.line, d.column)
    };
    assert_eq!(at("admin: unknown field `bogus`"), (1, 9));
    assert_eq!(at("admin: missing field `listen`"), (1, 8));
    assert_eq!(at("routes[0].verify: missing field `scheme`"), (5, 14));
}

//! `hookcast route`, the dry run: the real binary on a config file, every
//! mismatch reason, the answers a real request would get, `--verify`, and each
//! exit code.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_hookcast");
const SECRET: &str = "dry-run-secret-Pw19";

const CONFIG: &str = r#"
routes:
  - name: other-path
    match: { path: /elsewhere }
    publish: { topic: t }
  - name: put-only
    match: { path: "/hooks/{tenant}", method: PUT }
    publish: { topic: t }
  - name: needs-kind
    match: { path: "/hooks/{tenant}", headers: { X-Kind: "*" } }
    publish: { topic: t }
  - name: live-only
    match: { path: "/hooks/{tenant}", headers: { X-Mode: live } }
    publish: { topic: t }
  - name: type-a
    match: { path: "/hooks/{tenant}", json: { "/type": "a" } }
    publish: { topic: t }
  - name: github
    match: { path: "/hooks/{tenant}", headers: { X-GitHub-Event: "*" } }
    verify: { scheme: github, secret_file: secret.txt }
    publish:
      topic: "repo.{path:tenant}.{json:/repository/name}"
      event: "{header:X-GitHub-Event}"
      dedupe: "{header:X-GitHub-Delivery}"
  - name: strict
    match: { path: /strict }
    publish: { topic: "s.{json:/id}" }
"#;

fn setup(tag: &str) -> (TempDir, String) {
    let files = TempDir::new(&format!("route-{tag}"));
    files.write("secret.txt", SECRET);
    let config = name(files.write("hookcast.yaml", CONFIG));
    (files, config)
}

fn name(path: PathBuf) -> String {
    path.display().to_string()
}

fn route(config: &str, args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(BIN)
        .arg("route")
        .args(["--config", config])
        .args(args)
        .env_remove("HOOKCAST_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn sign(body: &str) -> String {
    support::github_signature(SECRET, body)
}

const PUSH: &str = r#"{"type":"b","repository":{"name":"hookcast"},"n":[1,2]}"#;

#[test]
fn a_matching_request_shows_the_route_why_earlier_ones_did_not_and_what_it_publishes() {
    let (files, config) = setup("match");
    let payload = name(files.write("payload.json", PUSH));
    let (code, out, err) = route(
        &config,
        &[
            "--path",
            "/hooks/acme",
            "-H",
            "X-Mode: test",
            "-H",
            "X-GitHub-Event: push",
            "-H",
            "X-GitHub-Delivery: d-7",
            "--body",
            &format!("@{payload}"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let expected_routes = "\
routes:
  other-path  skipped: path does not match /elsewhere
  put-only    skipped: method is not PUT
  needs-kind  skipped: header x-kind is missing
  live-only   skipped: header x-mode is not \"live\"
  type-a      skipped: JSON pointer /type is not \"a\"
  github      matches
";
    assert!(out.starts_with(expected_routes), "{out}");
    assert!(
        !out.contains("strict"),
        "routes after the match are not tried: {out}"
    );
    assert!(
        out.contains("result: 202, published by route github\n"),
        "{out}"
    );
    assert!(out.contains("topics: repo.acme.hookcast\n"), "{out}");
    assert!(out.contains("event:  push\n"), "{out}");
    assert!(out.contains("dedupe: d-7\n"), "{out}");
    // Data pretty-printed.
    assert!(
        out.contains("data:\n  {\n    \"n\": [\n      1,\n      2\n    ],"),
        "{out}"
    );
    assert!(
        out.contains("verify: github: not checked (add --verify"),
        "{out}"
    );
}

#[test]
fn verify_checks_the_signature_with_the_configured_secret() {
    let (_files, config) = setup("verify");
    let args = |sig: &str| {
        vec![
            "--path".to_owned(),
            "/hooks/acme".into(),
            "-H".into(),
            "X-GitHub-Event: push".into(),
            "-H".into(),
            "X-GitHub-Delivery: d-1".into(),
            "-H".into(),
            format!("X-Hub-Signature-256: {sig}"),
            "--body".into(),
            PUSH.into(),
            "--verify".into(),
        ]
    };
    let good = args(&sign(PUSH));
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let (code, out, _) = route(&config, &good);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verify: github: ok\n"), "{out}");

    let bad = args("sha256=00");
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let (code, out, _) = route(&config, &bad);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("result: 401 signature_invalid: The webhook signature does not match"),
        "{out}"
    );
    assert!(out.contains("verify: github: signature_invalid\n"), "{out}");
    assert!(!out.contains(SECRET));
}

#[test]
fn no_matching_route_exits_1_with_every_reason() {
    let (_files, config) = setup("nomatch");
    let (code, out, _) = route(
        &config,
        &[
            "--path",
            "/hooks/acme",
            "-H",
            "X-Mode: test",
            "--body",
            "plain text",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  type-a      skipped: body is not JSON (the route has json: conditions)\n"),
        "{out}"
    );
    assert!(
        out.contains("  github      skipped: header x-github-event is missing\n"),
        "{out}"
    );
    assert!(
        out.contains("  strict      skipped: path does not match /strict\n"),
        "{out}"
    );
    assert!(
        out.contains("result: 404 not_found: No route matches"),
        "{out}"
    );

    let (code, out, _) = route(&config, &["--path", "/nowhere"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("result: 404 not_found: Nothing is served at /nowhere"),
        "{out}"
    );
    let (code, out, _) = route(&config, &["--path", "/elsewhere", "--method", "delete"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("  other-path  skipped: method is not POST\n"),
        "{out}"
    );
    assert!(
        out.contains("result: 405 method_not_allowed: This path accepts only POST."),
        "{out}"
    );
}

#[test]
fn a_body_the_route_cannot_use_gets_the_code_a_real_request_gets() {
    let (files, config) = setup("refused");
    let (code, out, _) = route(&config, &["--path", "/strict", "--body", "not json"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  strict      matches\n"), "{out}");
    assert!(
        out.contains("result: 400 invalid_json: Cannot build publish.topic"),
        "{out}"
    );
    let (code, out, _) = route(&config, &["--path", "/strict", "--body", "{}"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("result: 422 unresolved_template:"), "{out}");
    let (code, out, _) = route(&config, &["--path", "/strict", "--body", r#"{"id":"a b"}"#]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("result: 422 invalid_topic:"), "{out}");
    let big = name(files.write("big", &"x".repeat((1 << 20) + 1)));
    let (code, out, _) = route(
        &config,
        &["--path", "/strict", "--body", &format!("@{big}")],
    );
    assert_eq!(code, 1);
    assert!(out.contains("result: 413 body_too_large:"), "{out}");
}

#[test]
fn with_an_upstream_an_unmatched_request_is_passed_on() {
    let files = TempDir::new("route-upstream");
    let config = name(files.write(
        "hookcast.yaml",
        "upstream: { url: \"http://127.0.0.1:9\" }\nroutes:\n  - name: a\n    match: { path: /a, headers: { X-A: \"*\" } }\n    publish: { topic: t }\n",
    ));
    let (code, out, _) = route(&config, &["--path", "/a"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("result: no route takes it; passed to the upstream"),
        "{out}"
    );
}

#[test]
fn bad_configs_and_bad_usage_exit_2() {
    let files = TempDir::new("route-bad");
    let config = name(files.write(
        "bad.yaml",
        "routes:\n  - name: a\n    match: { path: nope }\n    publish: { topic: t }\n",
    ));
    let (code, out, err) = route(&config, &["--path", "/a"]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("bad.yaml:3:"), "{err}");
    let (_f, good) = setup("usage");
    for args in [
        &[][..],
        &["--path"][..],
        &["--path", "no-slash"][..],
        &["--path", "/a", "-H", "no colon"][..],
        &["--path", "/a", "--bogus"][..],
        &["--path", "/a", "--body", "@/nonexistent/file"][..],
    ] {
        let (code, _, err) = route(&good, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("hookcast route: "), "{args:?}: {err}");
    }
}

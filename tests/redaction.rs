//! No leaks (README, "No leaks"): the real binary runs at debug level with webhook
//! secrets and JWT secrets from the environment, serves signed webhooks and
//! token-carrying subscriptions (good and bad), shuts down, and neither its logs,
//! its config errors, nor what its admin listener shows (the delivery log, its live
//! tail, the operator page) hold any secret, token or signature.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_hookcast");
const HOOK_SECRET: &str = "hook-secret-Zq81xV";
const OLD_HOOK_SECRET: &str = "old-hook-secret-Kp20mW";
const JWT_SECRET: &str = "jwt-secret-Yt55aR";

fn token(exp_in: i64) -> String {
    hs256(
        &json!({"exp": unix_now() + exp_in, "hookcast": {"subscribe": ["room.>"]}}),
        JWT_SECRET,
    )
}

/// What a run leaves to read: its logs, and what its admin listener showed (the
/// delivery log, one delivery, its live tail, the operator page, `/status`).
struct Run {
    logs: String,
    admin: String,
    secrets: Vec<String>,
}

async fn run_and_collect_logs(format: &str) -> Run {
    let addr = free_addr();
    let admin = free_addr();
    let yaml = format!(
        r#"
listen: "{addr}"
admin: {{ listen: "{admin}" }}
inspect: {{ bodies: true }}
shutdown_grace: 1s
log:
  format: {format}
  level: debug
subscribers:
  auth: jwt
  jwt:
    secret_env: REDACTION_JWT_SECRET
routes:
  - name: signed
    match:
      path: /hooks/{{room}}
    verify:
      scheme: github
      secret_env: [REDACTION_HOOK_SECRET, REDACTION_OLD_HOOK_SECRET]
    publish:
      topic: "room.{{path:room}}"
"#
    );
    let dir = TempDir::new("redaction");
    let config = dir.write(&format!("{format}.yaml"), &yaml);
    let log_path = dir.write(&format!("{format}.log"), "");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env("REDACTION_HOOK_SECRET", HOOK_SECRET)
        .env("REDACTION_OLD_HOOK_SECRET", OLD_HOOK_SECRET)
        .env("REDACTION_JWT_SECRET", JWT_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    wait_listening(addr, "hookcast").await;
    wait_listening(admin, "hookcast's admin listener").await;
    let mut tail = open_stream(admin, "/deliveries/stream", &[]).await;
    assert_eq!(tail.status, StatusCode::OK);

    let good = token(600);
    let expired = token(-600);
    let forged = hs256(
        &json!({"hookcast": {"subscribe": [">"]}}),
        "forged-key-Lm33",
    );
    let body = r#"{"msg":"hello"}"#;
    let good_sig = github_signature(HOOK_SECRET, body);
    let bad_sig = github_signature("wrong-secret-Qq11", body);

    let mut stream = open_stream(
        addr,
        &format!("/events?topic=room.a&access_token={good}"),
        &[],
    )
    .await;
    assert_eq!(stream.status, StatusCode::OK);
    let r = request(
        addr,
        Method::POST,
        "/hooks/a",
        &[("X-Hub-Signature-256", &good_sig)],
        body.into(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(stream.next_event().await.data, body);
    let r = request(
        addr,
        Method::POST,
        "/hooks/a",
        &[("X-Hub-Signature-256", &bad_sig)],
        body.into(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A webhook carrying a token in its query and its Authorization header.
    let r = request(
        addr,
        Method::POST,
        &format!("/hooks/a?access_token={good}"),
        &[
            ("X-Hub-Signature-256", &good_sig),
            ("Authorization", &format!("Bearer {good}")),
        ],
        body.into(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let mut shown = String::new();
    for _ in 0..3 {
        shown.push_str(&tail.next_event().await.data);
    }
    for path in [
        "/deliveries",
        "/deliveries/1",
        "/deliveries/2",
        "/",
        "/status",
    ] {
        let r = request(admin, Method::GET, path, &[], bytes::Bytes::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        shown.push_str(&r.text());
    }
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(shown.contains("signature_invalid"), "{shown}");
    for (path, headers) in [
        (
            format!("/events?topic=room.a&access_token={expired}"),
            vec![],
        ),
        (
            "/events?topic=room.a".to_owned(),
            vec![("Authorization", format!("Bearer {forged}"))],
        ),
        (
            "/events?topic=other".to_owned(),
            vec![("Cookie", format!("hookcast_token={good}"))],
        ),
        (format!("/events?topic=other&access_token={good}"), vec![]),
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = request(addr, Method::GET, &path, &h, bytes::Bytes::new()).await;
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
    }
    drop(stream);

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "hookcast did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = std::fs::read_to_string(&log_path).unwrap();
    drop(dir);
    let secrets: Vec<String> = vec![
        HOOK_SECRET.to_owned(),
        OLD_HOOK_SECRET.to_owned(),
        JWT_SECRET.to_owned(),
        good,
        expired,
        forged,
        good_sig[7..].to_owned(),
        bad_sig[7..].to_owned(),
        "access_token".to_owned(),
    ];
    Run {
        logs,
        admin: shown,
        secrets,
    }
}

fn assert_clean(logs: &str, secrets: &[String]) {
    for s in secrets {
        // Tokens are long; any 16-character piece of one would be a leak too.
        let piece = &s[..s.len().min(16)];
        assert!(!logs.contains(piece), "the logs hold {piece:?}:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_at_debug_hold_no_secret_or_token() {
    let Run {
        logs,
        admin,
        secrets,
    } = run_and_collect_logs("json").await;
    // The delivery log, its live tail and the operator page hold none either.
    assert_clean(&admin, &secrets);
    // The run did log the refusals, so silence is not what passes this test.
    assert!(logs.contains("\"result\":\"refused\""), "{logs}");
    assert!(logs.contains("subscriber refused"), "{logs}");
    assert!(logs.lines().count() > 10, "{logs}");
    assert_clean(&logs, &secrets);
    // Startup summarizes the effective config (checked clean of secrets above).
    assert!(logs.contains("effective configuration"), "{logs}");
    // Each request's line carries its span: method, path without query, status, time.
    let answered: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "answered" && v["span"]["name"] == "request")
        .collect();
    assert!(!answered.is_empty(), "{logs}");
    for v in &answered {
        let span = &v["span"];
        assert!(span["method"].is_string(), "{v}");
        let path = span["path"].as_str().unwrap();
        assert!(!path.contains('?'), "{v}");
        assert!(v["fields"]["status"].is_u64(), "{v}");
        assert!(v["fields"]["elapsed_ms"].is_u64(), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_at_debug_hold_no_secret_or_token() {
    let Run {
        logs,
        admin,
        secrets,
    } = run_and_collect_logs("text").await;
    assert_clean(&admin, &secrets);
    assert!(logs.contains("result=\"refused\""), "{logs}");
    assert_clean(&logs, &secrets);
}

#[test]
fn config_errors_name_the_secret_never_its_value() {
    let dir = TempDir::new("redaction");
    let bad = dir.write("sw-secret", "whsec_not*base64*Hh72Rp\n");
    let yaml = format!(
        r#"
routes:
  - name: a
    match:
      path: /hooks/a
    verify:
      scheme: standard-webhooks
      secret_env: REDACTION_UNSET_VARIABLE
      secret_file: "{}"
    publish:
      topic: a
"#,
        bad.display()
    );
    let config = dir.write("check.yaml", &yaml);
    let out = Command::new(BIN)
        .args(["check", "--config", config.to_str().unwrap()])
        .env_remove("REDACTION_UNSET_VARIABLE")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":8:19: route `a`: verify.secret_env: environment variable `REDACTION_UNSET_VARIABLE` is not set"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the secret in file `{}` is not a standard-webhooks secret",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("Hh72Rp"), "{stderr}");
}

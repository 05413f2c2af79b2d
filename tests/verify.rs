//! Webhook signatures against the verified vectors in `tests/fixtures/vectors/`
//! (every vector passes; a signature valid for one scheme passes no other), then
//! end to end: signed requests over real sockets, every refusal with its code, and
//! nothing published for a refused webhook.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use http::header::HeaderName;
use http::{HeaderMap, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use hookcast::verify::{DEFAULT_TOLERANCE, Failure, Request, Scheme, Secret, Verifier};
use support::*;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vectors");

/// hookcast accepts hex signatures in either case (README, "Securing hookcast");
/// this vector records the other choice.
const OUR_CHOICES: [(&str, bool); 1] = [("uppercase_hex_rejected_by_exact_compare", true)];

struct Vector {
    file: String,
    v: Value,
}

impl Vector {
    fn name(&self) -> String {
        format!("{}:{}", self.file, self.v["name"].as_str().unwrap())
    }

    fn expected(&self) -> bool {
        let name = self.v["name"].as_str().unwrap();
        OUR_CHOICES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| self.v["expected_valid"].as_bool().unwrap(), |(_, e)| *e)
    }

    fn scheme_name(&self) -> &str {
        self.v["scheme"].as_str().unwrap()
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, val) in self.v["headers"].as_object().unwrap() {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                val.as_str().unwrap().parse().unwrap(),
            );
        }
        h
    }

    fn body(&self) -> &[u8] {
        self.v["body"].as_str().unwrap().as_bytes()
    }

    /// The verifier clock: `now` where the scheme has a timestamp.
    fn now(&self) -> i64 {
        self.v["now"].as_i64().unwrap_or(0)
    }

    /// Twilio's URL split into what hookcast is configured with and what it receives.
    fn url_parts(&self) -> (String, String) {
        let url = self.v["url"].as_str().unwrap_or("https://example.com/");
        let after_scheme = url.find("://").unwrap() + 3;
        let path_at = url[after_scheme..].find('/').unwrap() + after_scheme;
        (url[..path_at].to_owned(), url[path_at..].to_owned())
    }

    fn verify_as(&self, scheme: Scheme) -> Result<(), Failure> {
        let secret = Secret::new(self.v["secret"].as_str().unwrap());
        // A secret the scheme cannot use (not base64 for standard-webhooks) verifies nothing.
        let Ok(verifier) = Verifier::new(scheme, vec![secret], DEFAULT_TOLERANCE) else {
            return Err(Failure::Invalid);
        };
        let headers = self.headers();
        let (_, path) = self.url_parts();
        verifier.verify(&Request {
            headers: &headers,
            path_and_query: &path,
            body: self.body(),
            now: self.now(),
        })
    }
}

fn vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(VECTORS)
        .unwrap_or_else(|e| panic!("{VECTORS}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for path in files {
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for v in doc["vectors"].as_array().into_iter().flatten() {
            out.push(Vector {
                file: file.clone(),
                v: v.clone(),
            });
        }
    }
    out
}

/// The schemes that need no settings beyond a secret, by name, and Twilio with the
/// vector's own public URL.
fn scheme_for(name: &str, vector: &Vector) -> Scheme {
    match name {
        "github" => Scheme::Github,
        "stripe" => Scheme::Stripe,
        "standard-webhooks" => Scheme::StandardWebhooks,
        "slack" => Scheme::Slack,
        "shopify" => Scheme::Shopify,
        "twilio" => Scheme::Twilio {
            public_url: vector.url_parts().0,
        },
        other => panic!("no scheme {other}"),
    }
}

const NAMED: [&str; 6] = [
    "github",
    "stripe",
    "standard-webhooks",
    "slack",
    "shopify",
    "twilio",
];

#[test]
fn every_vector_gives_its_expected_answer() {
    let all = vectors();
    assert!(all.len() >= 40, "only {} vectors found", all.len());
    let mut failures = Vec::new();
    for vector in &all {
        let digest = hex::encode(Sha256::digest(vector.body()));
        assert_eq!(
            digest,
            vector.v["body_sha256"].as_str().unwrap(),
            "{}: body bytes changed",
            vector.name()
        );
        let got = vector.verify_as(scheme_for(vector.scheme_name(), vector));
        if got.is_ok() != vector.expected() {
            failures.push(format!(
                "{}: expected {}, got {got:?}",
                vector.name(),
                vector.expected()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Each scheme has valid and invalid vectors, so neither answer is a constant.
    for scheme in NAMED {
        let answers: Vec<bool> = all
            .iter()
            .filter(|v| v.scheme_name() == scheme)
            .map(Vector::expected)
            .collect();
        assert!(
            answers.contains(&true) && answers.contains(&false),
            "{scheme}"
        );
    }
}

#[test]
fn a_valid_signature_passes_no_other_scheme() {
    let all = vectors();
    let mut checked = 0;
    for vector in all.iter().filter(|v| v.expected()) {
        for other in NAMED.iter().filter(|s| **s != vector.scheme_name()) {
            let got = vector.verify_as(scheme_for(other, vector));
            assert!(got.is_err(), "{} passed as {other}", vector.name());
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked}");
}

#[test]
fn timestamp_failures_are_reported_as_such() {
    for vector in vectors() {
        let name = vector.v["name"].as_str().unwrap();
        if name.contains("expired") || name.contains("too_new") {
            let got = vector.verify_as(scheme_for(vector.scheme_name(), &vector));
            assert_eq!(
                got,
                Err(Failure::TimestampOutOfTolerance),
                "{}",
                vector.name()
            );
        }
    }
}

// ---------------------------------------------------------------- over HTTP

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn hmac_b64(key: &[u8], parts: &[&[u8]]) -> String {
    use base64::Engine as _;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A config with one `verify:` route at `/hooks/signed` publishing to `signed`.
fn signed_route(verify: &str) -> String {
    format!(
        r#"
routes:
  - name: signed
    match:
      path: /hooks/signed
    publish:
      topic: signed
    verify:
{verify}
"#
    )
}

/// Posts and expects 202; a subscriber sees the event.
async fn assert_accepted(app: &TestApp, headers: &[(&str, &str)], body: &str) {
    let r = app.post("/hooks/signed", headers, body.to_owned()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

async fn assert_refused(app: &TestApp, headers: &[(&str, &str)], body: &str, code: &str) {
    let r = app.post("/hooks/signed", headers, body.to_owned()).await;
    r.assert_error(StatusCode::UNAUTHORIZED, code);
}

#[tokio::test]
async fn github_route_over_http_with_rotation_from_files() {
    let old = SecretFile::new("old-secret\n");
    let new = SecretFile::new("new-secret");
    let app = TestApp::spawn(&signed_route(&format!(
        "      scheme: github\n      secret_file: [{}, {}]",
        new.path(),
        old.path()
    )))
    .await;
    let mut sub = app.subscribe("topic=signed", &[]).await;
    let body = r#"{"zen":"hi"}"#;
    // One trailing newline of a secret file is not part of the secret.
    for key in ["old-secret", "new-secret"] {
        let sig = format!("sha256={}", hmac_hex(key.as_bytes(), &[body.as_bytes()]));
        assert_accepted(&app, &[("X-Hub-Signature-256", &sig)], body).await;
        assert_eq!(sub.next_event().await.data, body);
    }
    let wrong = format!("sha256={}", hmac_hex(b"old-secret\n", &[body.as_bytes()]));
    assert_refused(
        &app,
        &[("X-Hub-Signature-256", &wrong)],
        body,
        "signature_invalid",
    )
    .await;
    assert_refused(&app, &[], body, "signature_missing").await;
    let good = format!("sha256={}", hmac_hex(b"new-secret", &[body.as_bytes()]));
    assert_refused(
        &app,
        &[("X-Hub-Signature-256", &good)],
        "{\"zen\":\"ho\"}",
        "signature_invalid",
    )
    .await;
    // Nothing refused was published.
    assert!(
        sub.next_event_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn stripe_route_checks_the_timestamp() {
    let secret = SecretFile::new("whsec_abc");
    let app = TestApp::spawn(&signed_route(&format!(
        "      scheme: stripe\n      secret_file: {}",
        secret.path()
    )))
    .await;
    let body = r#"{"id":"evt_1"}"#;
    let sign = |t: i64| {
        let ts = t.to_string();
        format!(
            "t={ts},v1={}",
            hmac_hex(b"whsec_abc", &[ts.as_bytes(), b".", body.as_bytes()])
        )
    };
    assert_accepted(&app, &[("Stripe-Signature", &sign(unix_now()))], body).await;
    assert_refused(
        &app,
        &[("Stripe-Signature", &sign(unix_now() - 3600))],
        body,
        "timestamp_out_of_tolerance",
    )
    .await;
    assert_refused(
        &app,
        &[("Stripe-Signature", "t=1,v0=00")],
        body,
        "signature_invalid",
    )
    .await;
    assert_refused(&app, &[], body, "signature_missing").await;
}

#[tokio::test]
async fn standard_webhooks_slack_shopify_generic_and_token_routes() {
    let sw = SecretFile::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let app = TestApp::spawn(&signed_route(&format!(
        "      scheme: standard-webhooks\n      secret_file: {}\n      tolerance: 60s",
        sw.path()
    )))
    .await;
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let body = "{\"a\":1}";
    let sign = |t: i64| {
        let ts = t.to_string();
        (
            ts.clone(),
            format!(
                "v1,{}",
                hmac_b64(&key, &[b"msg_1.", ts.as_bytes(), b".", body.as_bytes()])
            ),
        )
    };
    let (ts, sig) = sign(unix_now());
    let h = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    assert_accepted(&app, &h, body).await;
    let (ts, sig) = sign(unix_now() - 120);
    let old = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    assert_refused(&app, &old, body, "timestamp_out_of_tolerance").await;

    let slack = SecretFile::new("slack-secret");
    let app = TestApp::spawn(&signed_route(&format!(
        "      scheme: slack\n      secret_file: {}",
        slack.path()
    )))
    .await;
    let ts = unix_now().to_string();
    let sig = format!(
        "v0={}",
        hmac_hex(
            b"slack-secret",
            &[b"v0:", ts.as_bytes(), b":", body.as_bytes()]
        )
    );
    assert_accepted(
        &app,
        &[
            ("X-Slack-Request-Timestamp", &ts),
            ("X-Slack-Signature", &sig),
        ],
        body,
    )
    .await;
    assert_refused(
        &app,
        &[("X-Slack-Signature", &sig)],
        body,
        "signature_missing",
    )
    .await;

    let shop = SecretFile::new("shop-secret");
    let app = TestApp::spawn(&signed_route(&format!(
        "      scheme: shopify\n      secret_file: {}",
        shop.path()
    )))
    .await;
    let sig = hmac_b64(b"shop-secret", &[body.as_bytes()]);
    assert_accepted(&app, &[("X-Shopify-Hmac-Sha256", &sig)], body).await;
    let hex_sig = hmac_hex(b"shop-secret", &[body.as_bytes()]);
    assert_refused(
        &app,
        &[("X-Shopify-Hmac-Sha256", &hex_sig)],
        body,
        "signature_invalid",
    )
    .await;

    let generic = SecretFile::new("g-secret");
    let app = TestApp::spawn(&signed_route(&format!(
        "      scheme: hmac-sha256\n      secret_file: {}\n      header: X-Signature\n      prefix: \"sha256=\"\n      encoding: base64",
        generic.path()
    )))
    .await;
    let sig = format!("sha256={}", hmac_b64(b"g-secret", &[body.as_bytes()]));
    assert_accepted(&app, &[("X-Signature", &sig)], body).await;
    let hex_sig = format!("sha256={}", hmac_hex(b"g-secret", &[body.as_bytes()]));
    assert_refused(
        &app,
        &[("X-Signature", &hex_sig)],
        body,
        "signature_invalid",
    )
    .await;

    let token = SecretFile::new("tok-123");
    let app = TestApp::spawn(&signed_route(&format!(
        "      scheme: token\n      secret_file: {}",
        token.path()
    )))
    .await;
    assert_accepted(&app, &[("Authorization", "Bearer tok-123")], body).await;
    assert_refused(
        &app,
        &[("Authorization", "Bearer tok-124")],
        body,
        "signature_invalid",
    )
    .await;
    assert_refused(&app, &[], body, "signature_missing").await;
}

#[tokio::test]
async fn twilio_route_rebuilds_the_public_url() {
    let token = SecretFile::new("12345");
    let app = TestApp::spawn(&format!(
        r#"
routes:
  - name: signed
    match:
      path: /myapp.php
    publish:
      topic: calls
    verify:
      scheme: twilio
      secret_file: {}
      public_url: "https://mycompany.com"
"#,
        token.path()
    ))
    .await;
    let body = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let r = app
        .post(
            "/myapp.php?foo=1&bar=2",
            &[form, ("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let r = app
        .post(
            "/myapp.php?foo=1&bar=3",
            &[form, ("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")],
            body,
        )
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "signature_invalid");
}

#[tokio::test]
async fn a_route_without_verify_still_accepts_unsigned_webhooks() {
    let app = TestApp::spawn(&config("")).await;
    let r = app.post("/hooks/lobby", &[], "hi").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

// ---------------------------------------------------------------- config

#[test]
fn verify_config_errors_point_at_the_key() {
    let route = |verify: &str| {
        format!(
            "routes:\n  - name: r\n    match:\n      path: /h\n    publish:\n      topic: t\n    verify:\n{verify}"
        )
    };
    let e = config_error(&route(
        "      scheme: gitlab\n      secret_file: /dev/null\n",
    ));
    assert!(
        e.starts_with("test.yaml:8:15: route `r`: verify.scheme `gitlab` is not known"),
        "{e}"
    );
    let e = config_error(&route("      scheme: github\n"));
    assert!(
        e.contains("name the secret with secret_env or secret_file"),
        "{e}"
    );
    let e = config_error(&route("      scheme: hmac-sha256\n      secret_env: X\n"));
    assert!(e.contains("needs `header`"), "{e}");
    let e = config_error(&route(
        "      scheme: github\n      header: X-Sig\n      secret_env: X\n",
    ));
    assert!(
        e.contains(
            "test.yaml:9:15: route `r`: verify.header applies to hmac-sha256 and token only"
        ),
        "{e}"
    );
    let e = config_error(&route(
        "      scheme: github\n      tolerance: 60s\n      secret_env: X\n",
    ));
    assert!(
        e.contains("verify.tolerance applies to stripe, slack and standard-webhooks"),
        "{e}"
    );
    let e = config_error(&route(
        "      scheme: hmac-sha256\n      header: X-Sig\n      encoding: hexa\n      secret_env: X\n",
    ));
    assert!(
        e.contains("test.yaml:10:17: route `r`: verify.encoding `hexa` is not known"),
        "{e}"
    );
    let e = config_error(&route("      scheme: twilio\n      secret_env: X\n"));
    assert!(e.contains("needs `public_url`"), "{e}");
    let e = config_error(&route(
        "      scheme: github\n      secret_file: /nonexistent/hookcast/secret\n",
    ));
    assert!(
        e.contains("cannot read `/nonexistent/hookcast/secret`"),
        "{e}"
    );
    let e = config_error(&route(
        "      scheme: github\n      secret_file: /dev/null\n",
    ));
    assert!(e.contains("`/dev/null` is empty"), "{e}");
    let e = config_error(&route("      scheme: github\n      secrets: x\n"));
    assert!(e.contains("unknown field `secrets`"), "{e}");
}

#[test]
fn secret_env_is_read_from_the_given_environment() {
    let yaml = "routes:\n  - name: r\n    match:\n      path: /h\n    publish:\n      topic: t\n    verify:\n      scheme: github\n      secret_env: [A, B]\n";
    let env = |name: &str| (name == "A").then(|| std::ffi::OsString::from("a-secret"));
    let e = hookcast::config::from_yaml_with_env("test.yaml", yaml, &env)
        .unwrap_err()
        .to_string();
    // At the item, not at the list.
    assert_eq!(
        e,
        "test.yaml:9:23: route `r`: verify.secret_env: environment variable `B` is not set"
    );
    let env = |_: &str| Some(std::ffi::OsString::from("s"));
    assert!(hookcast::config::from_yaml_with_env("test.yaml", yaml, &env).is_ok());
}

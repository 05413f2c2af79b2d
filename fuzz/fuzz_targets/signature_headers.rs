//! Signature header parsers and every verifier, on arbitrary header values and bodies.
#![no_main]

use std::time::Duration;

use hookcast::verify::timestamped::{parse_standard_signatures, parse_stripe};
use hookcast::verify::{Request, Scheme, Secret, Verifier};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_stripe(&text);
    let _ = parse_standard_signatures(&text);
    let (head, body) = data.split_at(data.len() / 2);
    let Ok(value) = HeaderValue::from_bytes(head) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for name in [
        "x-hub-signature-256",
        "stripe-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "x-shopify-hmac-sha256",
        "authorization",
        "x-twilio-signature",
        "content-type",
    ] {
        headers.insert(name, value.clone());
    }
    for scheme in [
        Scheme::Github,
        Scheme::Stripe,
        Scheme::StandardWebhooks,
        Scheme::Slack,
        Scheme::Shopify,
        Scheme::Token {
            header: http::header::AUTHORIZATION,
        },
        Scheme::Twilio {
            public_url: "https://x.test".into(),
        },
    ] {
        let v = Verifier::new(
            scheme,
            vec![Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
            Duration::from_secs(300),
        )
        .expect("a valid secret");
        let _ = v.verify(&Request {
            headers: &headers,
            path_and_query: "/h",
            body,
            now: 1_700_000_000,
        });
    }
});

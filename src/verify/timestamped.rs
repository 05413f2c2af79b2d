//! Schemes that sign a timestamp with the body: `stripe`, `slack` and
//! `standard-webhooks`. The signature is checked first, then the timestamp, so
//! `timestamp_out_of_tolerance` only ever answers a correctly signed (replayed or
//! delayed) request.

use http::HeaderMap;

use super::hmac::any_key_signed;
use super::{Failure, Request, Secret, decode_base64, decode_hex, one_header};

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeHeader {
    pub timestamp: i64,
    pub timestamp_text: String,
    /// Every `v1=` signature, decoded; other schemes (`v0=`) are ignored.
    pub v1: Vec<Vec<u8>>,
}

/// Parses `t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`. `None` when there is not exactly
/// one numeric `t` or no `v1` at all; undecodable `v1` values are skipped.
pub fn parse_stripe(value: &str) -> Option<StripeHeader> {
    let mut t = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" if t.is_some() => return None,
            "t" => t = Some(v),
            "v1" => v1.extend(decode_hex(v)),
            _ => {}
        }
    }
    let t = t?;
    if v1.is_empty() {
        return None;
    }
    Some(StripeHeader {
        timestamp: parse_timestamp(t)?,
        timestamp_text: t.to_owned(),
        v1,
    })
}

/// A Unix timestamp in seconds: ASCII digits only.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Stripe: HMAC of `<t>.<body>` keyed with the whole `whsec_…` string. Like
/// stripe-python, only timestamps older than the tolerance are refused.
pub(super) fn stripe(keys: &[Secret], req: &Request<'_>, tolerance: i64) -> Result<(), Failure> {
    let h = parse_stripe(one_header(req.headers, "Stripe-Signature")?).ok_or(Failure::Invalid)?;
    let parts: [&[u8]; 3] = [h.timestamp_text.as_bytes(), b".", req.body];
    let ok =
        h.v1.iter()
            .fold(false, |ok, sig| any_key_signed(keys, &parts, sig) | ok);
    if !ok {
        return Err(Failure::Invalid);
    }
    if h.timestamp < req.now.saturating_sub(tolerance) {
        return Err(Failure::TimestampOutOfTolerance);
    }
    Ok(())
}

/// Slack: `X-Slack-Signature: v0=<hex of HMAC("v0:<ts>:<body>")>`, within
/// five minutes either way of `X-Slack-Request-Timestamp`.
pub(super) fn slack(keys: &[Secret], req: &Request<'_>, tolerance: i64) -> Result<(), Failure> {
    let ts_text = one_header(req.headers, "X-Slack-Request-Timestamp")?;
    let sig = one_header(req.headers, "X-Slack-Signature")?;
    let ts = parse_timestamp(ts_text).ok_or(Failure::Invalid)?;
    let sig = sig
        .strip_prefix("v0=")
        .and_then(decode_hex)
        .ok_or(Failure::Invalid)?;
    let parts: [&[u8]; 4] = [b"v0:", ts_text.as_bytes(), b":", req.body];
    if !any_key_signed(keys, &parts, &sig) {
        return Err(Failure::Invalid);
    }
    within(ts, req.now, tolerance)
}

/// The key of a standard-webhooks secret: base64 after an optional `whsec_`.
pub(super) fn standard_webhooks_key(secret: &Secret) -> Option<Secret> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text = std::str::from_utf8(secret.expose()).ok()?.trim();
    let b64 = text.strip_prefix("whsec_").unwrap_or(text);
    let key = LENIENT.decode(b64).ok()?;
    (!key.is_empty()).then(|| Secret::new(key))
}

/// Parses `webhook-signature`: space-separated `v1,<base64>` entries. Entries of
/// other versions (`v1a`, asymmetric) and undecodable ones are skipped.
pub fn parse_standard_signatures(value: &str) -> Vec<Vec<u8>> {
    value
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, b64)| decode_base64(b64))
        .collect()
}

/// The `webhook-*` headers, or Svix's `svix-*` names for the same scheme.
fn standard_headers(h: &HeaderMap) -> Result<(&str, &str, &str), Failure> {
    let prefix = if h.contains_key("webhook-id") || !h.contains_key("svix-id") {
        "webhook"
    } else {
        "svix"
    };
    let get = |suffix: &str| one_header(h, &format!("{prefix}-{suffix}"));
    Ok((get("id")?, get("timestamp")?, get("signature")?))
}

/// Standard Webhooks: HMAC of `<id>.<timestamp>.<body>` keyed with the decoded
/// secret; any `v1` signature may match; five minutes either way.
pub(super) fn standard_webhooks(
    keys: &[Secret],
    req: &Request<'_>,
    tolerance: i64,
) -> Result<(), Failure> {
    let (id, ts_text, sigs) = standard_headers(req.headers)?;
    let ts = parse_timestamp(ts_text).ok_or(Failure::Invalid)?;
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", req.body];
    let ok = parse_standard_signatures(sigs)
        .iter()
        .fold(false, |ok, sig| any_key_signed(keys, &parts, sig) | ok);
    if !ok {
        return Err(Failure::Invalid);
    }
    within(ts, req.now, tolerance)
}

fn within(ts: i64, now: i64, tolerance: i64) -> Result<(), Failure> {
    if ts.abs_diff(now) > tolerance.unsigned_abs() {
        Err(Failure::TimestampOutOfTolerance)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Scheme, SecretError, Verifier, VerifierError};
    use super::*;

    fn run(
        scheme: Scheme,
        secret: &str,
        headers: &[(&str, &str)],
        body: &str,
        now: i64,
    ) -> Result<(), Failure> {
        let v = Verifier::new(scheme, vec![Secret::new(secret)], Duration::from_secs(300)).unwrap();
        super::super::check(&v, headers, body, now)
    }

    #[test]
    fn stripe_header_parsing() {
        let h = parse_stripe("t=12,v1=00ff,v0=zz,v1=AB,x=y,junk").unwrap();
        assert_eq!(h.timestamp, 12);
        assert_eq!(h.v1, vec![vec![0, 255], vec![0xab]]);
        assert_eq!(parse_stripe("t=1,t=2,v1=00"), None);
        assert_eq!(parse_stripe("t=1,v0=00"), None);
        assert_eq!(parse_stripe("v1=00"), None);
        assert_eq!(parse_stripe("t=-1,v1=00"), None);
        assert_eq!(parse_stripe("t=1e3,v1=00"), None);
        assert_eq!(parse_stripe(""), None);
    }

    #[test]
    fn standard_signature_parsing() {
        assert_eq!(
            parse_standard_signatures("v1,AAE= v1a,AAE= v2,AAE= v1,!!"),
            vec![vec![0, 1]]
        );
        assert!(parse_standard_signatures("").is_empty());
        assert!(parse_standard_signatures("v1").is_empty());
    }

    const STRIPE_BODY: &str = "{}";

    fn stripe_sig(secret: &str, t: i64, body: &str) -> String {
        use ::hmac::Mac as _;
        let mac = super::super::hmac::mac(
            &Secret::new(secret),
            &[t.to_string().as_bytes(), b".", body.as_bytes()],
        );
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn stripe_refuses_only_old_timestamps() {
        let sig = stripe_sig("whsec_x", 1000, STRIPE_BODY);
        let h = [("Stripe-Signature", sig.as_str())];
        assert_eq!(
            run(Scheme::Stripe, "whsec_x", &h, STRIPE_BODY, 1300),
            Ok(())
        );
        assert_eq!(
            run(Scheme::Stripe, "whsec_x", &h, STRIPE_BODY, 1301),
            Err(Failure::TimestampOutOfTolerance)
        );
        // stripe-python accepts timestamps from the future.
        assert_eq!(run(Scheme::Stripe, "whsec_x", &h, STRIPE_BODY, 0), Ok(()));
        // A bad signature is reported as such, whatever the timestamp.
        assert_eq!(
            run(Scheme::Stripe, "whsec_y", &h, STRIPE_BODY, 5000),
            Err(Failure::Invalid)
        );
        assert_eq!(
            run(Scheme::Stripe, "whsec_x", &[], STRIPE_BODY, 1000),
            Err(Failure::Missing("Stripe-Signature".into()))
        );
    }

    #[test]
    fn slack_needs_both_headers_and_a_symmetric_window() {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let ts = "1531420618";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = [
            ("X-Slack-Request-Timestamp", ts),
            ("X-Slack-Signature", sig),
        ];
        let t: i64 = ts.parse().unwrap();
        assert_eq!(run(Scheme::Slack, secret, &h, body, t + 300), Ok(()));
        assert_eq!(run(Scheme::Slack, secret, &h, body, t - 300), Ok(()));
        assert_eq!(
            run(Scheme::Slack, secret, &h, body, t - 301),
            Err(Failure::TimestampOutOfTolerance)
        );
        assert_eq!(
            run(Scheme::Slack, secret, &h[1..], body, t),
            Err(Failure::Missing("X-Slack-Request-Timestamp".into()))
        );
    }

    #[test]
    fn standard_webhooks_accepts_svix_header_names() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = "{\"test\": 2432232314}";
        let now = 1614265330;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let std_h = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", sig),
        ];
        assert_eq!(
            run(Scheme::StandardWebhooks, secret, &std_h, body, now),
            Ok(())
        );
        let svix_h = [
            ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("svix-timestamp", "1614265330"),
            ("svix-signature", sig),
        ];
        assert_eq!(
            run(Scheme::StandardWebhooks, secret, &svix_h, body, now),
            Ok(())
        );
        assert_eq!(
            run(Scheme::StandardWebhooks, secret, &std_h[..2], body, now),
            Err(Failure::Missing("webhook-signature".into()))
        );
        assert_eq!(
            run(Scheme::StandardWebhooks, secret, &std_h, body, now + 301),
            Err(Failure::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn standard_webhooks_secret_must_be_base64() {
        let bad = Verifier::new(
            Scheme::StandardWebhooks,
            vec![Secret::new("whsec_not base64!")],
            Duration::from_secs(300),
        );
        let err = bad.unwrap_err();
        assert_eq!(
            err,
            VerifierError::Secret {
                index: 1,
                problem: SecretError::NotStandardWebhooks
            }
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("secret 1 is not a standard-webhooks secret"),
            "{msg}"
        );
        assert!(!msg.contains("not base64!"), "{msg}");
    }
}

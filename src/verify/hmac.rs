//! Schemes that sign the raw body alone (`github`, `shopify`, `hmac-sha256`), and
//! the shared `token`.

use ::hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Encoding, Failure, Request, Secret, decode_base64, decode_hex, one_header};

type HmacSha256 = Hmac<Sha256>;

/// A keyed HMAC-SHA256 over the concatenation of `parts`.
pub(super) fn mac(key: &Secret, parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.expose()).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac
}

/// Whether `sig` is the MAC of `parts` under any key; `verify_slice` compares in
/// constant time.
pub(super) fn any_key_signed(keys: &[Secret], parts: &[&[u8]], sig: &[u8]) -> bool {
    // Every key is tried, so the time taken does not tell which one matched.
    keys.iter()
        .fold(false, |ok, k| mac(k, parts).verify_slice(sig).is_ok() | ok)
}

/// `X-Hub-Signature-256: sha256=<hex>`.
pub(super) fn github(keys: &[Secret], req: &Request<'_>) -> Result<(), Failure> {
    let value = one_header(req.headers, "X-Hub-Signature-256")?;
    let sig = value
        .strip_prefix("sha256=")
        .and_then(decode_hex)
        .ok_or(Failure::Invalid)?;
    check(any_key_signed(keys, &[req.body], &sig))
}

/// `X-Shopify-Hmac-Sha256: <base64>`.
pub(super) fn shopify(keys: &[Secret], req: &Request<'_>) -> Result<(), Failure> {
    let value = one_header(req.headers, "X-Shopify-Hmac-Sha256")?;
    let sig = decode_base64(value).ok_or(Failure::Invalid)?;
    check(any_key_signed(keys, &[req.body], &sig))
}

/// `<header>: <prefix><hex or base64 of HMAC-SHA256(body)>`.
pub(super) fn generic(
    keys: &[Secret],
    req: &Request<'_>,
    header: &HeaderName,
    prefix: &str,
    encoding: Encoding,
) -> Result<(), Failure> {
    let value = one_header(req.headers, header.as_str())?;
    let encoded = value.strip_prefix(prefix).ok_or(Failure::Invalid)?;
    let sig = match encoding {
        Encoding::Hex => decode_hex(encoded),
        Encoding::Base64 => decode_base64(encoded),
    }
    .ok_or(Failure::Invalid)?;
    check(any_key_signed(keys, &[req.body], &sig))
}

/// A shared token: `Authorization: Bearer <secret>`, or `<header>: <secret>`.
pub(super) fn token(
    keys: &[Secret],
    req: &Request<'_>,
    header: &HeaderName,
) -> Result<(), Failure> {
    let value = one_header(req.headers, header.as_str())?;
    let presented = if header == AUTHORIZATION {
        bearer(value).ok_or(Failure::Invalid)?
    } else {
        value
    };
    // Hashing first makes both sides one length, so the comparison time does not
    // reveal the secret's length either.
    let got = Sha256::digest(presented.as_bytes());
    let ok = keys.iter().fold(false, |ok, k| {
        bool::from(Sha256::digest(k.expose()).ct_eq(&got)) | ok
    });
    check(ok)
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn check(ok: bool) -> Result<(), Failure> {
    if ok { Ok(()) } else { Err(Failure::Invalid) }
}

#[cfg(test)]
mod tests {
    use super::super::{Scheme, Verifier};
    use super::*;

    fn verifier(scheme: Scheme, secrets: &[&str]) -> Verifier {
        let secrets = secrets.iter().map(|s| Secret::new(s.as_bytes())).collect();
        Verifier::new(scheme, secrets, super::super::DEFAULT_TOLERANCE).unwrap()
    }

    fn run(v: &Verifier, headers: &[(&str, &str)], body: &str) -> Result<(), Failure> {
        super::super::check(v, headers, body, 0)
    }

    const GITHUB_SIG: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_published_example_and_rotation() {
        let v = verifier(Scheme::Github, &["It's a Secret to Everybody"]);
        let h = [("X-Hub-Signature-256", GITHUB_SIG)];
        assert_eq!(run(&v, &h, "Hello, World!"), Ok(()));
        assert_eq!(run(&v, &h, "Hello, World?"), Err(Failure::Invalid));
        // Uppercase hex is the same MAC: signatures are taken in either case
        // (README, "Securing hookcast").
        let upper = format!("sha256={}", GITHUB_SIG[7..].to_uppercase());
        assert_eq!(
            run(&v, &[("X-Hub-Signature-256", &upper)], "Hello, World!"),
            Ok(())
        );
        let rotated = verifier(
            Scheme::Github,
            &["new secret", "It's a Secret to Everybody"],
        );
        assert_eq!(run(&rotated, &h, "Hello, World!"), Ok(()));
    }

    #[test]
    fn github_refusals() {
        let v = verifier(Scheme::Github, &["It's a Secret to Everybody"]);
        assert_eq!(
            run(&v, &[], "Hello, World!"),
            Err(Failure::Missing("X-Hub-Signature-256".into()))
        );
        for bad in [&GITHUB_SIG[7..], "sha256=", "sha256=zz", "sha1=757107ea"] {
            assert_eq!(
                run(&v, &[("X-Hub-Signature-256", bad)], "Hello, World!"),
                Err(Failure::Invalid),
                "{bad}"
            );
        }
        let twice = [
            ("X-Hub-Signature-256", GITHUB_SIG),
            ("X-Hub-Signature-256", GITHUB_SIG),
        ];
        assert_eq!(run(&v, &twice, "Hello, World!"), Err(Failure::Invalid));
    }

    #[test]
    fn shopify_is_base64_of_the_same_mac() {
        let v = verifier(Scheme::Shopify, &["shop-secret"]);
        let good = [(
            "X-Shopify-Hmac-Sha256",
            "plW8VGqq0nDMIEhDqaNNW99asdUCy7EIqLZVcQwtAZ0=",
        )];
        assert_eq!(run(&v, &good, "{\"id\":1}"), Ok(()));
        assert_eq!(run(&v, &good, "{\"id\":2}"), Err(Failure::Invalid));
        let hex = [(
            "X-Shopify-Hmac-Sha256",
            "a655bc546aaad270cc204843a9a34d5bdf5ab1d502cbb108a8b655710c2d019d",
        )];
        assert_eq!(run(&v, &hex, "{\"id\":1}"), Err(Failure::Invalid));
    }

    #[test]
    fn generic_header_prefix_and_encoding() {
        let hex_sig = &GITHUB_SIG[7..];
        let v = verifier(
            Scheme::HmacSha256 {
                header: HeaderName::from_static("x-signature"),
                prefix: "hmac ".into(),
                encoding: Encoding::Hex,
            },
            &["It's a Secret to Everybody"],
        );
        let with_prefix = format!("hmac {hex_sig}");
        assert_eq!(
            run(&v, &[("X-Signature", &with_prefix)], "Hello, World!"),
            Ok(())
        );
        assert_eq!(
            run(&v, &[("X-Signature", hex_sig)], "Hello, World!"),
            Err(Failure::Invalid)
        );
        let b64 = verifier(
            Scheme::HmacSha256 {
                header: HeaderName::from_static("x-signature"),
                prefix: String::new(),
                encoding: Encoding::Base64,
            },
            &["It's a Secret to Everybody"],
        );
        let sig = [(
            "X-Signature",
            "dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc=",
        )];
        assert_eq!(run(&b64, &sig, "Hello, World!"), Ok(()));
        assert_eq!(
            run(&b64, &[("X-Signature", hex_sig)], "Hello, World!"),
            Err(Failure::Invalid)
        );
    }

    #[test]
    fn token_in_authorization_or_own_header() {
        let v = verifier(
            Scheme::Token {
                header: AUTHORIZATION,
            },
            &["old", "s3cret"],
        );
        assert_eq!(run(&v, &[("Authorization", "Bearer s3cret")], ""), Ok(()));
        assert_eq!(run(&v, &[("Authorization", "bearer old")], ""), Ok(()));
        assert_eq!(
            run(&v, &[("Authorization", "s3cret")], ""),
            Err(Failure::Invalid)
        );
        assert_eq!(
            run(&v, &[("Authorization", "Bearer s3cre")], ""),
            Err(Failure::Invalid)
        );
        assert_eq!(
            run(&v, &[], ""),
            Err(Failure::Missing("authorization".into()))
        );
        let own = verifier(
            Scheme::Token {
                header: HeaderName::from_static("x-hook-token"),
            },
            &["s3cret"],
        );
        assert_eq!(run(&own, &[("X-Hook-Token", "s3cret")], ""), Ok(()));
        assert_eq!(
            run(&own, &[("X-Hook-Token", "Bearer s3cret")], ""),
            Err(Failure::Invalid)
        );
    }
}

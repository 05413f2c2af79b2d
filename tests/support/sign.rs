//! Credentials a test makes for itself: webhook signatures and JWTs, signed here
//! with the same secrets the test gives hookcast.

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use sha2::Sha256;

/// Seconds since the Unix epoch, signed so that tests can go back in time.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// GitHub's `X-Hub-Signature-256` for `body`: `sha256=` and the hex HMAC-SHA256.
pub fn github_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A JWT of these claims signed with HS256 and `secret`.
pub fn hs256(claims: &serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

//! Subscriber JWTs: the token comes from `Authorization: Bearer`, the configured
//! cookie, or `access_token` in the query; its `topics_claim` lists the patterns it
//! may follow; its `exp` ends the stream.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::Value;

use crate::topic::Filter;

/// A key that verifies tokens: an HMAC secret or a PEM public key. `Debug` never
/// shows it.
#[derive(Clone)]
pub struct Key(DecodingKey);

impl Key {
    pub fn secret(bytes: &[u8]) -> Key {
        Key(DecodingKey::from_secret(bytes))
    }

    /// An RSA or EC public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`).
    pub fn public_pem(pem: &[u8]) -> Result<Key, KeyError> {
        DecodingKey::from_rsa_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .map(Key)
            .map_err(|_| KeyError)
    }

    pub fn family(&self) -> AlgorithmFamily {
        self.0.family()
    }
}

/// Bytes that hold no RSA or EC public key in PEM; `Display` is a fragment after
/// where they came from ("file `k.pem` is not …"), and never shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyError;

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("is not an RSA or EC public key in PEM")
    }
}

impl std::error::Error for KeyError {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0.family())
    }
}

/// The algorithms `subscribers.jwt.algorithms` may name.
pub const ALGORITHMS: [(&str, Algorithm); 11] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
];

/// `subscribers.jwt`, checked.
#[derive(Debug, Clone)]
pub struct JwtAuth {
    pub algorithms: Vec<Algorithm>,
    pub keys: Vec<Key>,
    /// A JSON Pointer into the claims.
    pub topics_claim: String,
    pub cookie: Option<String>,
    pub leeway: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Why a subscriber's token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Invalid,
    Expired,
    /// The token is valid but its claim does not cover this topic or pattern.
    Forbidden(String),
}

/// What a valid token allows beyond its topics.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// When the stream must end: `exp` plus `leeway`.
    pub until: Option<SystemTime>,
    /// The verified claims, for a stream route's `{claim:}` topics.
    pub claims: Value,
}

impl JwtAuth {
    /// The token, from the first place that has one: the `Authorization: Bearer`
    /// header, the cookie, then the `access_token` query parameter.
    pub fn token<'a>(
        &self,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> Option<Cow<'a, str>> {
        let from_header = headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(crate::verify::hmac::bearer);
        if let Some(t) = from_header {
            return Some(Cow::Borrowed(t));
        }
        if let Some(name) = &self.cookie
            && let Some(t) = cookie(headers, name)
        {
            return Some(Cow::Borrowed(t));
        }
        form_urlencoded::parse(query?.as_bytes())
            .find(|(k, v)| k == "access_token" && !v.is_empty())
            .map(|(_, v)| Cow::Owned(v.into_owned()))
    }

    /// Checks the token's signature, times, issuer and audience, then that its
    /// claim covers every requested filter.
    pub fn check(&self, token: &str, filters: &[Filter]) -> Result<Grant, Denied> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Denied::Invalid)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Denied::Invalid);
        }
        // The library wants every listed algorithm to suit the key: list only this one.
        let mut validation = Validation::new(header.alg);
        // Tokens without `exp` are accepted; with one, it is enforced.
        validation.required_spec_claims = HashSet::new();
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = self.audience.is_some();
        if let Some(aud) = &self.audience {
            validation.set_audience(&[aud]);
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let family = header.alg.family();
        let mut outcome = Err(Denied::Invalid);
        for key in self.keys.iter().filter(|k| k.family() == family) {
            match jsonwebtoken::decode::<Value>(token, &key.0, &validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                Err(e) if *e.kind() == ErrorKind::ExpiredSignature => {
                    outcome = Err(Denied::Expired);
                    break;
                }
                Err(_) => {}
            }
        }
        let claims = outcome?;
        self.covers(&claims, filters)?;
        let until = claims
            .get("exp")
            .and_then(Value::as_f64)
            .filter(|e| e.is_finite() && *e >= 0.0)
            .map(|e| UNIX_EPOCH + Duration::from_secs(e as u64) + self.leeway);
        Ok(Grant { until, claims })
    }

    /// Whether the `topics_claim` of verified `claims` covers every filter.
    pub fn covers(&self, claims: &Value, filters: &[Filter]) -> Result<(), Denied> {
        let allowed: Vec<Filter> = match claims.pointer(&self.topics_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|s| Filter::parse(s).ok())
                .collect(),
            Some(Value::String(s)) => Filter::parse(s).ok().into_iter().collect(),
            _ => Vec::new(),
        };
        if let Some(f) = filters
            .iter()
            .find(|f| !allowed.iter().any(|outer| f.within(outer)))
        {
            return Err(Denied::Forbidden(f.as_str().to_owned()));
        }
        Ok(())
    }
}

/// The value of cookie `name`, from any `Cookie` header.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    fn auth() -> JwtAuth {
        JwtAuth {
            algorithms: vec![Algorithm::HS256],
            keys: vec![Key::secret(b"old"), Key::secret(b"k")],
            topics_claim: "/hookcast/subscribe".into(),
            cookie: Some("tok".into()),
            leeway: Duration::ZERO,
            issuer: None,
            audience: None,
        }
    }

    fn token(claims: Value, key: &[u8]) -> String {
        encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
    }

    fn filters(list: &[&str]) -> Vec<Filter> {
        list.iter().map(|s| Filter::parse(s).unwrap()).collect()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn claim_patterns_cover_topics_and_narrower_patterns() {
        let t = token(
            json!({"hookcast": {"subscribe": ["orders.*", "tenant.7.>"]}}),
            b"k",
        );
        let a = auth();
        assert_eq!(
            a.check(&t, &filters(&["orders.1", "tenant.7.a.b", "tenant.7.*"]))
                .map(|g| g.until),
            Ok(None)
        );
        assert_eq!(
            a.check(&t, &filters(&["orders.>"])),
            Err(Denied::Forbidden("orders.>".into()))
        );
        assert_eq!(
            a.check(&t, &filters(&["orders.1.x"])),
            Err(Denied::Forbidden("orders.1.x".into()))
        );
        let none = token(json!({"sub": "x"}), b"k");
        assert_eq!(
            a.check(&none, &filters(&["a"])),
            Err(Denied::Forbidden("a".into()))
        );
    }

    #[test]
    fn signature_expiry_and_algorithm() {
        let a = auth();
        let claims = json!({"hookcast": {"subscribe": ["a"]}, "exp": now() + 60});
        let g = a
            .check(&token(claims.clone(), b"old"), &filters(&["a"]))
            .unwrap();
        assert!(g.until.is_some());
        assert_eq!(
            a.check(&token(claims.clone(), b"wrong"), &filters(&["a"])),
            Err(Denied::Invalid)
        );
        let expired = json!({"hookcast": {"subscribe": ["a"]}, "exp": now() - 120});
        assert_eq!(
            a.check(&token(expired, b"k"), &filters(&["a"])),
            Err(Denied::Expired)
        );
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(a.check(&hs384, &filters(&["a"])), Err(Denied::Invalid));
        assert_eq!(
            a.check("not.a.token", &filters(&["a"])),
            Err(Denied::Invalid)
        );
        assert_eq!(a.check("", &filters(&["a"])), Err(Denied::Invalid));
    }

    #[test]
    fn token_sources_in_order() {
        let a = auth();
        let mut h = HeaderMap::new();
        assert_eq!(
            a.token(&h, Some("topic=a&access_token=q")).as_deref(),
            Some("q")
        );
        h.insert("cookie", "x=1; tok=c; y=2".parse().unwrap());
        assert_eq!(a.token(&h, Some("access_token=q")).as_deref(), Some("c"));
        h.insert("authorization", "Bearer b".parse().unwrap());
        assert_eq!(a.token(&h, Some("access_token=q")).as_deref(), Some("b"));
        assert_eq!(a.token(&HeaderMap::new(), Some("topic=a")), None);
        assert_eq!(a.token(&HeaderMap::new(), None), None);
    }
}

//! Webhook signatures: each scheme checks the raw body bytes against any one of a
//! route's secrets (rotation), in constant time, before anything is published.
//!
//! - [`hmac`]: schemes that sign the body alone: `github`, `shopify`, the generic
//!   `hmac-sha256`, and the shared `token`.
//! - [`timestamped`]: schemes that sign a timestamp with the body: `stripe`,
//!   `slack`, `standard-webhooks`.
//! - [`twilio`]: `twilio`, which signs the public URL and the form parameters.

pub mod hmac;
pub mod timestamped;
pub mod twilio;

use std::fmt;
use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;

/// Timestamp tolerance of the schemes that sign one, as their official libraries use.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Secret bytes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into().into_boxed_slice())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// How the generic `hmac-sha256` scheme writes its MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// A signature scheme, with its scheme-specific settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Github,
    Stripe,
    StandardWebhooks,
    Slack,
    Shopify,
    HmacSha256 {
        header: HeaderName,
        prefix: String,
        encoding: Encoding,
    },
    /// A shared token. With `Authorization` the value is `Bearer <secret>`.
    Token {
        header: HeaderName,
    },
    /// `public_url` is scheme and host as Twilio calls them, e.g. `https://example.com`;
    /// the request's path and query are appended.
    Twilio {
        public_url: String,
    },
}

impl Scheme {
    /// The names accepted in `verify.scheme`.
    pub const NAMES: [&'static str; 8] = [
        "github",
        "stripe",
        "standard-webhooks",
        "slack",
        "shopify",
        "hmac-sha256",
        "token",
        "twilio",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Slack => "slack",
            Scheme::Shopify => "shopify",
            Scheme::HmacSha256 { .. } => "hmac-sha256",
            Scheme::Token { .. } => "token",
            Scheme::Twilio { .. } => "twilio",
        }
    }

    /// Whether the scheme signs a timestamp, so that `tolerance` applies.
    pub fn has_timestamp(&self) -> bool {
        matches!(
            self,
            Scheme::Stripe | Scheme::StandardWebhooks | Scheme::Slack
        )
    }
}

/// Why a webhook's signature was refused; each maps to one 401 code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A header the scheme needs is absent (named here).
    Missing(String),
    /// The header is malformed, or no signature matches any secret.
    Invalid,
    /// Correctly signed, but the signed timestamp is outside the tolerance.
    TimestampOutOfTolerance,
}

impl Failure {
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Missing(_) => "signature_missing",
            Failure::Invalid => "signature_invalid",
            Failure::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Missing(h) => write!(f, "the {h} header is missing"),
            Failure::Invalid => f.write_str("the signature does not match"),
            Failure::TimestampOutOfTolerance => {
                f.write_str("the signed timestamp is too far from the current time")
            }
        }
    }
}

/// What a verifier looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    /// Path and query as received, for `twilio`.
    pub path_and_query: &'a str,
    pub body: &'a [u8],
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// A route's `verify:`: a scheme and the secrets any one of which may have signed.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: Scheme,
    /// Keys as the scheme uses them (`standard-webhooks` secrets are decoded).
    keys: Vec<Secret>,
    tolerance: Duration,
}

/// What is wrong with one secret; `Display` is a fragment after its name ("secret 2
/// is empty"), and never shows the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    Empty,
    /// `standard-webhooks` secrets are base64, after an optional `whsec_` prefix.
    NotStandardWebhooks,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Empty => f.write_str("is empty"),
            SecretError::NotStandardWebhooks => f.write_str(
                "is not a standard-webhooks secret: base64 after an optional `whsec_` prefix",
            ),
        }
    }
}

/// Why a [`Verifier`] could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifierError {
    /// The secret at `index` (1-based) cannot be used by the scheme.
    Secret {
        index: usize,
        problem: SecretError,
    },
    NoSecret,
}

impl fmt::Display for VerifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifierError::Secret { index, problem } => write!(f, "secret {index} {problem}"),
            VerifierError::NoSecret => f.write_str("no secret is configured"),
        }
    }
}

impl std::error::Error for VerifierError {}

impl Verifier {
    /// Prepares the secrets for `scheme`; the error names the bad secret by its
    /// position (1-based) and never shows it.
    pub fn new(
        scheme: Scheme,
        secrets: Vec<Secret>,
        tolerance: Duration,
    ) -> Result<Self, VerifierError> {
        let mut keys = Vec::with_capacity(secrets.len());
        for (i, s) in secrets.into_iter().enumerate() {
            let bad = |problem| VerifierError::Secret {
                index: i + 1,
                problem,
            };
            if s.expose().is_empty() {
                return Err(bad(SecretError::Empty));
            }
            keys.push(match scheme {
                Scheme::StandardWebhooks => timestamped::standard_webhooks_key(&s)
                    .ok_or_else(|| bad(SecretError::NotStandardWebhooks))?,
                _ => s,
            });
        }
        if keys.is_empty() {
            return Err(VerifierError::NoSecret);
        }
        Ok(Verifier {
            scheme,
            keys,
            tolerance,
        })
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Checks one request.
    pub fn verify(&self, req: &Request<'_>) -> Result<(), Failure> {
        let keys = &self.keys;
        let tol = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        match &self.scheme {
            Scheme::Github => hmac::github(keys, req),
            Scheme::Shopify => hmac::shopify(keys, req),
            Scheme::HmacSha256 {
                header,
                prefix,
                encoding,
            } => hmac::generic(keys, req, header, prefix, *encoding),
            Scheme::Token { header } => hmac::token(keys, req, header),
            Scheme::Stripe => timestamped::stripe(keys, req, tol),
            Scheme::Slack => timestamped::slack(keys, req, tol),
            Scheme::StandardWebhooks => timestamped::standard_webhooks(keys, req, tol),
            Scheme::Twilio { public_url } => twilio::verify(keys, req, public_url),
        }
    }
}

/// The one value of a header the scheme needs: absent is `Missing`, repeated or
/// not text is `Invalid` (a second copy could smuggle a signature past a proxy).
fn one_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Failure> {
    let mut values = headers.get_all(name).iter();
    let first = values
        .next()
        .ok_or_else(|| Failure::Missing(name.to_owned()))?;
    if values.next().is_some() {
        return Err(Failure::Invalid);
    }
    first.to_str().map_err(|_| Failure::Invalid)
}

/// Decodes hex in either case.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.trim()).ok()
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// Runs `v` on a request with these headers and body at `now`, for the schemes' unit tests.
#[cfg(test)]
fn check(v: &Verifier, headers: &[(&str, &str)], body: &str, now: i64) -> Result<(), Failure> {
    let mut map = HeaderMap::new();
    for (k, val) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            val.parse().unwrap(),
        );
    }
    v.verify(&Request {
        headers: &map,
        path_and_query: "/",
        body: body.as_bytes(),
        now,
    })
}

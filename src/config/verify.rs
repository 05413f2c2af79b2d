//! A route's `verify:`: the signature scheme, its options, and the secrets any one
//! of which may have signed.

use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Location;

use super::Checker;
use super::raw::{self, S};
use crate::verify::{self, Encoding, Scheme, Verifier, VerifierError};

impl Checker<'_> {
    pub(super) fn verify(&mut self, route: &str, v: S<raw::Verify>) -> Option<Arc<Verifier>> {
        let before = self.diagnostics.len();
        let at = v.referenced;
        let v = v.value;
        let what = format!("route `{route}`: verify");
        let scheme_name = v.scheme.value.as_str();
        let only = |this: &mut Self, key: &str, present: Option<&Location>, schemes: &str| {
            if let Some(loc) = present {
                this.error(loc, format!("{what}.{key} applies to {schemes} only"));
            }
        };
        let scheme = match scheme_name {
            "github" => Some(Scheme::Github),
            "stripe" => Some(Scheme::Stripe),
            "standard-webhooks" => Some(Scheme::StandardWebhooks),
            "slack" => Some(Scheme::Slack),
            "shopify" => Some(Scheme::Shopify),
            "hmac-sha256" => {
                let header = match &v.header {
                    None => {
                        self.error(
                            &v.scheme.referenced,
                            format!("{what}: scheme hmac-sha256 needs `header`, the header that carries the signature"),
                        );
                        None
                    }
                    Some(h) => self.header_name(&what, h),
                };
                let encoding = match v.encoding.as_ref().map(|e| (e.value.as_str(), e)) {
                    None | Some(("hex", _)) => Encoding::Hex,
                    Some(("base64", _)) => Encoding::Base64,
                    Some((other, e)) => {
                        self.error(
                            &e.referenced,
                            format!("{what}.encoding `{other}` is not known; use hex or base64"),
                        );
                        Encoding::Hex
                    }
                };
                header.map(|header| Scheme::HmacSha256 {
                    header,
                    prefix: v
                        .prefix
                        .as_ref()
                        .map(|p| p.value.clone())
                        .unwrap_or_default(),
                    encoding,
                })
            }
            "token" => match &v.header {
                None => Some(Scheme::Token {
                    header: http::header::AUTHORIZATION,
                }),
                Some(h) => self
                    .header_name(&what, h)
                    .map(|header| Scheme::Token { header }),
            },
            "twilio" => {
                match &v.public_url {
                    None => {
                        self.error(
                        &v.scheme.referenced,
                        format!("{what}: scheme twilio needs `public_url`, the scheme and host Twilio calls, e.g. https://example.com"),
                    );
                        None
                    }
                    Some(u) => {
                        let ok = (u.value.starts_with("https://")
                            || u.value.starts_with("http://"))
                            && u.value.parse::<http::Uri>().is_ok()
                            && !u.value.contains(['?', '#']);
                        if !ok {
                            self.error(
                            &u.referenced,
                            format!("{what}.public_url `{}` is not a URL such as https://example.com", u.value),
                        );
                        }
                        Some(Scheme::Twilio {
                            public_url: u.value.trim_end_matches('/').to_owned(),
                        })
                    }
                }
            }
            other => {
                self.error(
                    &v.scheme.referenced,
                    format!(
                        "{what}.scheme `{other}` is not known; use one of {}",
                        verify::Scheme::NAMES.join(", ")
                    ),
                );
                None
            }
        };
        if !matches!(scheme_name, "hmac-sha256" | "token") {
            only(
                self,
                "header",
                v.header.as_ref().map(|h| &h.referenced),
                "hmac-sha256 and token",
            );
        }
        if scheme_name != "hmac-sha256" {
            only(
                self,
                "prefix",
                v.prefix.as_ref().map(|h| &h.referenced),
                "hmac-sha256",
            );
            only(
                self,
                "encoding",
                v.encoding.as_ref().map(|h| &h.referenced),
                "hmac-sha256",
            );
        }
        if scheme_name != "twilio" {
            only(
                self,
                "public_url",
                v.public_url.as_ref().map(|h| &h.referenced),
                "twilio",
            );
        }
        let timestamped = scheme.as_ref().is_some_and(Scheme::has_timestamp);
        if !timestamped && scheme.is_some() {
            only(
                self,
                "tolerance",
                v.tolerance.as_ref().map(|h| &h.referenced),
                "stripe, slack and standard-webhooks (the schemes that sign a timestamp)",
            );
        }
        let tolerance = self.duration(
            &format!("{what}.tolerance"),
            v.tolerance,
            verify::DEFAULT_TOLERANCE,
            Duration::from_secs(1),
        );
        if v.secret_env.is_none() && v.secret_file.is_none() {
            self.error(
                &at,
                format!(
                    "{what}: name the secret with secret_env or secret_file (either may be a list)"
                ),
            );
        }
        let secrets = self.secrets(
            &what,
            ("secret_env", "secret_file"),
            v.secret_env,
            v.secret_file,
        );
        let scheme = scheme?;
        for s in &secrets {
            // Checked one by one, so that each problem names where its secret came from.
            match Verifier::new(scheme.clone(), vec![s.secret.clone()], tolerance) {
                Ok(_) => {}
                Err(VerifierError::Secret { problem, .. }) => {
                    self.error(
                        &s.at,
                        format!("{what}: the secret in {} {problem}", s.label),
                    );
                }
                Err(e) => self.error(&s.at, format!("{what}: {e}")),
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        let secrets = secrets.into_iter().map(|s| s.secret).collect();
        Verifier::new(scheme, secrets, tolerance).ok().map(Arc::new)
    }
}

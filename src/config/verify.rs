//! A route's `verify:`: the signature scheme, its options, and the secrets any one
//! of which may have signed.

use std::sync::Arc;
use std::time::Duration;

use super::Checker;
use super::raw::{self, S};
use crate::verify::{self, Encoding, Scheme, Verifier, VerifierError};

impl Checker<'_> {
    pub(super) fn verify(&mut self, route: &str, v: S<raw::Verify>) -> Option<Arc<Verifier>> {
        let before = self.diagnostics.len();
        let at = v.referenced;
        let v = v.value;
        let what = format!("route `{route}`: verify");
        let scheme = self.verify_scheme(&what, &v);
        self.verify_options_of_other_schemes(&what, &v, scheme.as_ref());
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

    /// `verify.scheme` with the options it needs; `None` when a problem was reported.
    fn verify_scheme(&mut self, what: &str, v: &raw::Verify) -> Option<Scheme> {
        match v.scheme.value.as_str() {
            "github" => Some(Scheme::Github),
            "stripe" => Some(Scheme::Stripe),
            "standard-webhooks" => Some(Scheme::StandardWebhooks),
            "slack" => Some(Scheme::Slack),
            "shopify" => Some(Scheme::Shopify),
            "hmac-sha256" => self.hmac_scheme(what, v),
            "token" => match &v.header {
                None => Some(Scheme::Token {
                    header: http::header::AUTHORIZATION,
                }),
                Some(h) => self
                    .header_name(what, h)
                    .map(|header| Scheme::Token { header }),
            },
            "twilio" => self.twilio_scheme(what, v),
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
        }
    }

    /// `scheme: hmac-sha256`: the header that carries the MAC, its prefix and encoding.
    fn hmac_scheme(&mut self, what: &str, v: &raw::Verify) -> Option<Scheme> {
        let header = match &v.header {
            None => {
                self.error(
                    &v.scheme.referenced,
                    format!("{what}: scheme hmac-sha256 needs `header`, the header that carries the signature"),
                );
                None
            }
            Some(h) => self.header_name(what, h),
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

    /// `scheme: twilio`: the public scheme and host Twilio signs with the path.
    fn twilio_scheme(&mut self, what: &str, v: &raw::Verify) -> Option<Scheme> {
        let Some(u) = &v.public_url else {
            self.error(
                &v.scheme.referenced,
                format!("{what}: scheme twilio needs `public_url`, the scheme and host Twilio calls, e.g. https://example.com"),
            );
            return None;
        };
        let ok = (u.value.starts_with("https://") || u.value.starts_with("http://"))
            && u.value.parse::<http::Uri>().is_ok()
            && !u.value.contains(['?', '#']);
        if !ok {
            self.error(
                &u.referenced,
                format!(
                    "{what}.public_url `{}` is not a URL such as https://example.com",
                    u.value
                ),
            );
        }
        Some(Scheme::Twilio {
            public_url: u.value.trim_end_matches('/').to_owned(),
        })
    }

    /// Options that belong to other schemes than the one named are mistakes.
    fn verify_options_of_other_schemes(
        &mut self,
        what: &str,
        v: &raw::Verify,
        scheme: Option<&Scheme>,
    ) {
        let scheme_name = v.scheme.value.as_str();
        let mut only = |key: &str, present: Option<&S<String>>, schemes: &str| {
            if let Some(loc) = present.map(|p| &p.referenced) {
                self.error(loc, format!("{what}.{key} applies to {schemes} only"));
            }
        };
        if !matches!(scheme_name, "hmac-sha256" | "token") {
            only("header", v.header.as_ref(), "hmac-sha256 and token");
        }
        if scheme_name != "hmac-sha256" {
            only("prefix", v.prefix.as_ref(), "hmac-sha256");
            only("encoding", v.encoding.as_ref(), "hmac-sha256");
        }
        if scheme_name != "twilio" {
            only("public_url", v.public_url.as_ref(), "twilio");
        }
        if scheme.is_some_and(|s| !s.has_timestamp()) {
            only(
                "tolerance",
                v.tolerance.as_ref(),
                "stripe, slack and standard-webhooks (the schemes that sign a timestamp)",
            );
        }
    }
}

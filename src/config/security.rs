//! The security sections: a route's `verify:`, `subscribers`, `cors`, and the
//! secrets they name, read here so that a missing variable or unreadable file
//! stops the start (and `hookcast check`) with its name — never its content.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use serde_saphyr::{Location, Spanned};

use super::raw::{self, Names, S};
use super::{Checker, auth, cors, jwt, upstream};
use super::{Cors, Encoding, Scheme, Secret, Verifier, verify};

/// A secret and where it came from, for errors that must not show it.
pub(super) struct Sourced {
    pub(super) secret: Secret,
    /// "variable `NAME`" or "file `PATH`".
    pub(super) label: String,
    pub(super) at: Location,
}

impl Checker<'_> {
    /// Reads every variable of `env` and file of `file`; `what` is the key path
    /// for messages (`route `x`: verify`).
    pub(super) fn secrets(
        &mut self,
        what: &str,
        keys: (&str, &str),
        env: Option<S<Names>>,
        file: Option<S<Names>>,
    ) -> Vec<Sourced> {
        let mut out = Vec::new();
        if let Some(env) = env {
            for name in env.value.into_vec() {
                let at = env.referenced;
                if name.is_empty() || name.contains(['=', '\0']) {
                    self.error(
                        &at,
                        format!("{what}.{}: `{name}` is not a variable name", keys.0),
                    );
                    continue;
                }
                match (self.env)(&name).map(OsString::into_encoded_bytes) {
                    None => self.error(
                        &at,
                        format!(
                            "{what}.{}: environment variable `{name}` is not set",
                            keys.0
                        ),
                    ),
                    Some(v) if v.is_empty() => self.error(
                        &at,
                        format!("{what}.{}: environment variable `{name}` is empty", keys.0),
                    ),
                    Some(v) => out.push(Sourced {
                        secret: Secret::new(v),
                        label: format!("variable `{name}`"),
                        at,
                    }),
                }
            }
        }
        if let Some(file) = file {
            for name in file.value.into_vec() {
                let at = file.referenced;
                let path = self.dir.join(&name);
                self.secret_files.push(path.clone());
                match std::fs::read(&path) {
                    Err(e) => self.error(
                        &at,
                        format!("{what}.{}: cannot read `{}`: {e}", keys.1, path.display()),
                    ),
                    Ok(mut bytes) => {
                        // A Kubernetes Secret or `echo > file` adds one newline.
                        if bytes.last() == Some(&b'\n') {
                            bytes.pop();
                            if bytes.last() == Some(&b'\r') {
                                bytes.pop();
                            }
                        }
                        if bytes.is_empty() {
                            self.error(
                                &at,
                                format!("{what}.{}: `{}` is empty", keys.1, path.display()),
                            );
                        } else {
                            out.push(Sourced {
                                secret: Secret::new(bytes),
                                label: format!("file `{}`", path.display()),
                                at,
                            });
                        }
                    }
                }
            }
        }
        out
    }

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
            if let Err(msg) = Verifier::new(scheme.clone(), vec![s.secret.clone()], tolerance) {
                let msg = msg.replacen("secret 1", &format!("the secret in {}", s.label), 1);
                self.error(&s.at, format!("{what}: {msg}"));
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        let secrets = secrets.into_iter().map(|s| s.secret).collect();
        Verifier::new(scheme, secrets, tolerance).ok().map(Arc::new)
    }

    fn header_name(&mut self, what: &str, h: &S<String>) -> Option<HeaderName> {
        match HeaderName::from_bytes(h.value.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.error(
                    &h.referenced,
                    format!("{what}.header: `{}` is not a valid header name", h.value),
                );
                None
            }
        }
    }

    /// `subscribers` adds its `pass_headers` to the headers a preflight allows.
    pub(super) fn cors(&mut self, raw: raw::Cors, subscribers: &auth::Mode) -> Option<Cors> {
        let before = self.diagnostics.len();
        let mut allow_headers: Vec<HeaderName> = Vec::new();
        if let auth::Mode::Upstream(u) = subscribers {
            allow_headers.extend(u.pass_headers.iter().cloned());
        }
        for h in raw.allow_headers.iter().flatten() {
            if let Some(name) = self.header_name("cors.allow_headers", h)
                && !allow_headers.contains(&name)
            {
                allow_headers.push(name);
            }
        }
        let Some(list) = raw.allow_origins else {
            if let Some(c) = &raw.allow_credentials {
                self.error(&c.referenced, "cors.allow_origins is missing: list the origins allowed to subscribe, or [\"*\"]");
            }
            return None;
        };
        let mut origins = Vec::new();
        let mut any = false;
        for o in &list.value {
            if o.value == "*" {
                any = true;
                continue;
            }
            match cors::check_origin(&o.value) {
                Ok(origin) => origins.push(origin),
                Err(msg) => self.error(&o.referenced, format!("cors.allow_origins: {msg}")),
            }
        }
        if list.value.is_empty() {
            self.error(
                &list.referenced,
                "cors.allow_origins lists no origin; list the origins allowed to subscribe, or [\"*\"]",
            );
        }
        if any && !origins.is_empty() {
            self.error(
                &list.referenced,
                "cors.allow_origins: `*` allows every origin and stands alone",
            );
        }
        let credentials = raw.allow_credentials.as_ref().is_some_and(|c| c.value);
        if any && credentials {
            let at = raw
                .allow_credentials
                .as_ref()
                .map_or(list.referenced, |c| c.referenced);
            self.error(
                &at,
                "cors.allow_credentials cannot be true with allow_origins [\"*\"]: browsers refuse credentials for a wildcard origin; list the origins instead",
            );
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Cors::new(
            if any { Vec::new() } else { origins },
            credentials,
            &allow_headers,
        ))
    }

    /// `upstream_url` is `upstream.url`, the auth endpoint's default base.
    pub(super) fn subscribers(
        &mut self,
        raw: raw::Subscribers,
        upstream_url: Option<&str>,
    ) -> auth::Mode {
        let mode = raw.auth.as_ref().map_or("none", |a| a.value.as_str());
        let auth_at = raw.auth.as_ref().map(|a| a.referenced);
        if !matches!(mode, "none" | "jwt" | "upstream") {
            if let Some(at) = &auth_at {
                self.error(
                    at,
                    format!("subscribers.auth `{mode}` is not known; use none, jwt or upstream"),
                );
            }
            return auth::Mode::None;
        }
        if let Some(j) = &raw.jwt
            && mode != "jwt"
        {
            self.error(&j.referenced, format!("subscribers.jwt is set, but subscribers.auth is {mode}; set auth: jwt, or remove this section"));
        }
        if let Some(u) = &raw.upstream
            && mode != "upstream"
        {
            self.error(&u.referenced, format!("subscribers.upstream is set, but subscribers.auth is {mode}; set auth: upstream, or remove this section"));
        }
        let missing = |this: &mut Self, section: &str, why: &str| {
            if let Some(at) = &auth_at {
                this.error(
                    at,
                    format!("subscribers.auth is {mode}, so subscribers.{section} must {why}"),
                );
            }
        };
        match mode {
            "jwt" => match raw.jwt {
                Some(j) => self
                    .jwt(j)
                    .map_or(auth::Mode::None, |j| auth::Mode::Jwt(Arc::new(j))),
                None => {
                    missing(self, "jwt", "name the keys that verify tokens");
                    auth::Mode::None
                }
            },
            "upstream" => match raw.upstream {
                Some(u) => self
                    .auth_upstream(u, upstream_url)
                    .map_or(auth::Mode::None, auth::Mode::Upstream),
                None if upstream_url.is_some() => self
                    .auth_upstream(
                        Spanned::new(
                            raw::AuthUpstream::default(),
                            auth_at.unwrap_or(Location::UNKNOWN),
                            auth_at.unwrap_or(Location::UNKNOWN),
                        ),
                        upstream_url,
                    )
                    .map_or(auth::Mode::None, auth::Mode::Upstream),
                None => {
                    missing(
                        self,
                        "upstream",
                        "give the url of the authorization endpoint (or set upstream.url, its default)",
                    );
                    auth::Mode::None
                }
            },
            _ => auth::Mode::None,
        }
    }

    fn jwt(&mut self, raw: S<raw::Jwt>) -> Option<jwt::JwtAuth> {
        let before = self.diagnostics.len();
        let at = raw.referenced;
        let j = raw.value;
        let what = "subscribers.jwt";
        let mut keys = Vec::new();
        for s in self.secrets(
            what,
            ("secret_env", "secret_file"),
            j.secret_env,
            j.secret_file,
        ) {
            keys.push(jwt::Key::secret(s.secret.expose()));
        }
        for s in self.secrets(
            what,
            ("public_key_env", "public_key_file"),
            j.public_key_env,
            j.public_key_file,
        ) {
            match jwt::Key::public_pem(s.secret.expose()) {
                Ok(k) => keys.push(k),
                Err(msg) => self.error(&s.at, format!("{what}: {} {msg}", s.label)),
            }
        }
        let family_name = |f: jsonwebtoken::AlgorithmFamily| match f {
            jsonwebtoken::AlgorithmFamily::Hmac => "an HMAC secret (secret_env or secret_file)",
            jsonwebtoken::AlgorithmFamily::Rsa => {
                "an RSA public key (public_key_env or public_key_file)"
            }
            jsonwebtoken::AlgorithmFamily::Ec => {
                "an EC public key (public_key_env or public_key_file)"
            }
            jsonwebtoken::AlgorithmFamily::Ed => "an Ed25519 public key",
        };
        let algorithms = match j.algorithms {
            Some(list) => {
                let mut algs = Vec::new();
                for a in list {
                    match jwt::ALGORITHMS.iter().find(|(n, _)| *n == a.value) {
                        Some((_, alg)) => {
                            if !keys.iter().any(|k| k.family() == alg.family())
                                && self.diagnostics.len() == before
                            {
                                self.error(
                                    &a.referenced,
                                    format!(
                                        "{what}.algorithms: {} needs {}",
                                        a.value,
                                        family_name(alg.family())
                                    ),
                                );
                            }
                            algs.push(*alg);
                        }
                        None => self.error(
                            &a.referenced,
                            format!(
                                "{what}.algorithms: `{}` is not supported; use {}",
                                a.value,
                                jwt::ALGORITHMS.map(|(n, _)| n).join(", ")
                            ),
                        ),
                    }
                }
                algs
            }
            // Without a list, each key allows the usual algorithm of its kind.
            None => {
                let mut algs = Vec::new();
                for k in &keys {
                    let alg = match k.family() {
                        jsonwebtoken::AlgorithmFamily::Hmac => jsonwebtoken::Algorithm::HS256,
                        jsonwebtoken::AlgorithmFamily::Rsa => jsonwebtoken::Algorithm::RS256,
                        _ => jsonwebtoken::Algorithm::ES256,
                    };
                    if !algs.contains(&alg) {
                        algs.push(alg);
                    }
                }
                algs
            }
        };
        if keys.is_empty() && self.diagnostics.len() == before {
            self.error(&at, format!("{what} names no key: set secret_env or secret_file (HS256), or public_key_env or public_key_file (RS256, ES256)"));
        }
        if algorithms.is_empty() && !keys.is_empty() {
            self.error(&at, format!("{what}.algorithms lists no algorithm"));
        }
        let topics_claim = match j.topics_claim {
            None => "/hookcast/subscribe".to_owned(),
            Some(c) if c.value.starts_with('/') => c.value,
            Some(c) => {
                self.error(&c.referenced, format!("{what}.topics_claim `{}` is not a JSON Pointer; it must start with `/`, e.g. /hookcast/subscribe", c.value));
                String::new()
            }
        };
        let cookie = j.cookie.and_then(|c| {
            let ok = !c.value.is_empty()
                && c.value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if ok {
                Some(c.value)
            } else {
                self.error(
                    &c.referenced,
                    format!("{what}.cookie `{}` is not a cookie name", c.value),
                );
                None
            }
        });
        let leeway = self.duration(
            &format!("{what}.leeway"),
            j.leeway,
            Duration::ZERO,
            Duration::ZERO,
        );
        if self.diagnostics.len() > before {
            return None;
        }
        Some(jwt::JwtAuth {
            algorithms,
            keys,
            topics_claim,
            cookie,
            leeway,
            issuer: j.issuer.map(|i| i.value),
            audience: j.audience.map(|a| a.value),
        })
    }

    fn auth_upstream(
        &mut self,
        raw: S<raw::AuthUpstream>,
        upstream_url: Option<&str>,
    ) -> Option<upstream::Settings> {
        let before = self.diagnostics.len();
        let u = raw.value;
        let what = "subscribers.upstream";
        let url = match u.url {
            // A bad upstream.url is reported there.
            None if upstream_url.is_some() => upstream_url.unwrap_or_default().to_owned(),
            None => {
                self.error(&raw.referenced, format!("{what}.url is missing, and there is no upstream.url to default to: give the base URL of the authorization endpoint, e.g. http://127.0.0.1:3000"));
                String::new()
            }
            Some(v) if v.value.starts_with("https://") => {
                self.error(&v.referenced, format!("{what}.url: https is not supported; the authorization endpoint is called over plain HTTP, next to hookcast"));
                String::new()
            }
            Some(v) => {
                let ok = v.value.starts_with("http://")
                    && v.value
                        .parse::<http::Uri>()
                        .is_ok_and(|uri| uri.host().is_some())
                    && !v.value.contains('#');
                if !ok {
                    self.error(
                        &v.referenced,
                        format!(
                            "{what}.url `{}` is not a URL such as http://127.0.0.1:3000",
                            v.value
                        ),
                    );
                }
                v.value
            }
        };
        let path = match u.path {
            None => String::new(),
            Some(p) if p.value.starts_with('/') && !p.value.contains(['?', '#', ' ']) => p.value,
            Some(p) => {
                self.error(
                    &p.referenced,
                    format!(
                        "{what}.path `{}` must be a path starting with `/`, without a query",
                        p.value
                    ),
                );
                String::new()
            }
        };
        let endpoint = if path.is_empty() {
            url
        } else {
            format!("{}{path}", url.trim_end_matches('/'))
        };
        if endpoint.parse::<http::Uri>().is_err() && self.diagnostics.len() == before {
            self.error(
                &raw.referenced,
                format!("{what}: url and path do not make a URL"),
            );
        }
        let cache = self.duration(
            &format!("{what}.cache"),
            u.cache,
            Duration::ZERO,
            Duration::ZERO,
        );
        let timeout = self.duration(
            &format!("{what}.timeout"),
            u.timeout,
            Duration::from_secs(5),
            Duration::from_millis(1),
        );
        let pass_headers = match u.pass_headers {
            None => vec![http::header::COOKIE, http::header::AUTHORIZATION],
            Some(list) => list
                .iter()
                .filter_map(|h| self.header_name(what, h))
                .collect(),
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(upstream::Settings {
            endpoint,
            pass_headers,
            cache,
            timeout,
        })
    }
}

//! `subscribers:`: who may follow which topics — anyone, a JWT, or the
//! application's own authorization endpoint.

use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::Checker;
use super::raw::{self, S};
use crate::auth::{self, jwt, upstream};

impl Checker<'_> {
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
        let mut j = raw.value;
        let what = "subscribers.jwt";
        let keys = self.jwt_keys(&mut j);
        let algorithms = match j.algorithms {
            Some(list) => self.jwt_algorithms(list, &keys, before),
            None => default_algorithms(&keys),
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

    /// The HMAC secrets, then the public keys, that `subscribers.jwt` names.
    fn jwt_keys(&mut self, j: &mut raw::Jwt) -> Vec<jwt::Key> {
        let what = "subscribers.jwt";
        let mut keys = Vec::new();
        for s in self.secrets(
            what,
            ("secret_env", "secret_file"),
            j.secret_env.take(),
            j.secret_file.take(),
        ) {
            keys.push(jwt::Key::secret(s.secret.expose()));
        }
        for s in self.secrets(
            what,
            ("public_key_env", "public_key_file"),
            j.public_key_env.take(),
            j.public_key_file.take(),
        ) {
            match jwt::Key::public_pem(s.secret.expose()) {
                Ok(k) => keys.push(k),
                Err(e) => self.error(&s.at, format!("{what}: {} {e}", s.label)),
            }
        }
        keys
    }

    /// `subscribers.jwt.algorithms`: each supported, each with a key of its family
    /// (reported only while the section has no other problem since `before`).
    fn jwt_algorithms(
        &mut self,
        list: Vec<S<String>>,
        keys: &[jwt::Key],
        before: usize,
    ) -> Vec<jsonwebtoken::Algorithm> {
        let what = "subscribers.jwt";
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

/// Without `algorithms`, each key allows the usual algorithm of its kind.
fn default_algorithms(keys: &[jwt::Key]) -> Vec<jsonwebtoken::Algorithm> {
    let mut algs = Vec::new();
    for k in keys {
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

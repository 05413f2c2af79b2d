//! `cors:`: the origins allowed to subscribe from a browser.

use http::header::HeaderName;

use super::Checker;
use super::raw;
use crate::auth;
use crate::cors::{self, Cors};

impl Checker<'_> {
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
}

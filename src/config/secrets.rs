//! The secrets that `verify:` and `subscribers.jwt` name, read here so that a
//! missing variable or unreadable file stops the start (and `hookcast check`) with
//! its name — never its content.

use std::ffi::OsString;

use http::header::HeaderName;
use serde_saphyr::Location;

use super::Checker;
use super::raw::{Names, S};
use crate::verify::Secret;

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
            for (name, at) in env.value.located(env.referenced) {
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
            for (name, at) in file.value.located(file.referenced) {
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

    pub(super) fn header_name(&mut self, what: &str, h: &S<String>) -> Option<HeaderName> {
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
}

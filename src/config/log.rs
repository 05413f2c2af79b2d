//! `log:`: the format and the level or filter of the process's own log lines.

use std::fmt;

use super::{Checker, raw};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

/// A `log.level` that names no level: a bare unknown word would silently mean "a
/// target of that name", so it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevelError {
    value: String,
}

impl fmt::Display for LogLevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a level or filter; use error, warn, info, debug or trace",
            self.value
        )
    }
}

impl std::error::Error for LogLevelError {}

/// A `log.level` value: a level (`info`) or a filter (`info,hookcast=debug`).
pub fn parse_log_level(s: &str) -> Result<String, LogLevelError> {
    if is_log_filter(s) {
        Ok(s.to_owned())
    } else {
        Err(LogLevelError {
            value: s.to_owned(),
        })
    }
}

/// Whether every comma-separated directive names a known level (`info`,
/// `hookcast=debug`); a bare unknown word would silently mean "a target of that name".
fn is_log_filter(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let known = |l: &str| LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l.trim()));
    !s.trim().is_empty()
        && tracing_subscriber::EnvFilter::builder().parse(s).is_ok()
        && s.split(',').all(|d| match d.rsplit_once('=') {
            Some((_, level)) => known(level),
            None => known(d),
        })
}

impl Checker<'_> {
    pub(super) fn log(&mut self, raw: raw::Log, d: Log) -> Log {
        let format = match raw.format {
            None => d.format,
            Some(v) => match v.value.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    self.error(
                        &v.referenced,
                        format!("log.format `{other}` is not known; use text or json"),
                    );
                    d.format
                }
            },
        };
        let level = match raw.level {
            None => d.level,
            Some(v) => {
                if let Err(msg) = parse_log_level(&v.value) {
                    self.error(&v.referenced, format!("log.level {msg}"));
                }
                v.value
            }
        };
        Log { format, level }
    }
}

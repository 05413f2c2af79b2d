//! `inspect:`: the delivery log kept for the admin listener (see the README,
//! "Debugging a webhook").

use serde::Deserialize;

use super::Checker;
use super::raw::S;

/// How much of each webhook the delivery log keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspect {
    /// The newest webhooks kept; 0 keeps none.
    pub deliveries: usize,
    /// Whether request bodies are kept (they may hold personal data).
    pub bodies: bool,
    /// Longest body kept; a longer one is cut, and cannot be redelivered.
    pub body_bytes: usize,
}

impl Inspect {
    /// Upper bounds, so that the log's memory stays small whatever the config says.
    pub const MAX_DELIVERIES: usize = 100_000;
    pub const MAX_BODY_BYTES: usize = 1 << 20;
}

impl Default for Inspect {
    fn default() -> Self {
        Inspect {
            deliveries: 1000,
            bodies: false,
            body_bytes: 4 << 10,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    deliveries: Option<S<u64>>,
    bodies: Option<S<bool>>,
    body_bytes: Option<S<String>>,
}

impl Checker<'_> {
    pub(super) fn inspect(&mut self, raw: Raw) -> Inspect {
        let d = Inspect::default();
        let deliveries = match raw.deliveries {
            None => d.deliveries,
            Some(v) if v.value > Inspect::MAX_DELIVERIES as u64 => {
                self.error(
                    &v.referenced,
                    format!(
                        "inspect.deliveries must be at most {}",
                        Inspect::MAX_DELIVERIES
                    ),
                );
                d.deliveries
            }
            Some(v) => v.value as usize,
        };
        let body_bytes = match raw.body_bytes {
            Some(v) => {
                let at = v.referenced;
                let n = self.size("inspect.body_bytes", Some(v), d.body_bytes as u64);
                if n > Inspect::MAX_BODY_BYTES as u64 {
                    self.error(&at, "inspect.body_bytes must be at most 1MiB");
                }
                usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(Inspect::MAX_BODY_BYTES)
            }
            None => d.body_bytes,
        };
        Inspect {
            deliveries,
            bodies: raw.bodies.map_or(d.bodies, |v| v.value),
            body_bytes,
        }
    }
}

//! What both in-process benches share.

use std::time::Duration;

use hookcast::hub::Limits;

/// Bounds of a hub with a full history of 100 per topic (so every publish also
/// trims), short queues and room for a million subscribers.
pub(crate) fn limits() -> Limits {
    Limits {
        history: 100,
        history_ttl: Duration::from_secs(3600),
        history_bytes: 1 << 20,
        subscriber_queue: 16,
        subscriber_queue_bytes: 1 << 20,
        max_subscribers: 1_000_000,
        dedupe_window: Duration::from_secs(60),
        dedupe_max_keys: 1000,
    }
}

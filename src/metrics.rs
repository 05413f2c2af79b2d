//! Prometheus metrics (the table in README, "Operate"), rendered on the admin listener's `/metrics`.
//!
//! Labels take bounded values only: route names from the config, HTTP status codes,
//! drop reasons. Never topics, ids or addresses.
//!
//! The scrape is OpenMetrics text that Prometheus' classic text parser accepts too:
//! only types both formats have (`hookcast_build_info` is a gauge, not an `info`).
//!
//! The delivery path is per event per subscriber, so it touches no shared counter
//! per delivery: deliveries are counted once per publish (how many subscriber
//! queues took the event) and per replay, and the latency histogram is fed by a
//! sample of the subscribers (see [`Metrics::sampled`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One stream in this many feeds `hookcast_publish_to_write_seconds`.
pub const SAMPLE_EVERY: u64 = 16;

/// Why a subscriber was dropped or turned away (`hookcast_subscribers_dropped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Fell `subscriber_queue` events or `subscriber_queue_bytes` behind.
    Slow,
    AuthExpired,
    MaxDuration,
    Shutdown,
    /// Refused with "try later": `max_subscribers` reached.
    Capacity,
    /// Refused with "try later": the authorization endpoint could not answer.
    AuthUnavailable,
    /// Refused with "try later": the broker (Redis) could not be reached for the replay.
    BrokerUnavailable,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Slow => "slow",
            Dropped::AuthExpired => "auth_expired",
            Dropped::MaxDuration => "max_duration",
            Dropped::Shutdown => "shutdown",
            Dropped::Capacity => "capacity",
            Dropped::AuthUnavailable => "auth_unavailable",
            Dropped::BrokerUnavailable => "broker_unavailable",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// A route's hot counters (its 202s, its events published), looked up in their
/// families on the route's first webhook and kept (by the config generation,
/// beside its routes): each webhook after it counts with an atomic add, not a
/// label set built (two `String`s) and hashed. A family never drops a counter,
/// so a kept one stays the exported one. Filled by one [`Metrics`] only.
#[derive(Debug, Default)]
pub struct RouteCounters {
    accepted: OnceLock<Counter>,
    published: OnceLock<Counter>,
}

/// Every metric hookcast exports; one per process, shared by every config generation.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    subscribers: Gauge,
    webhooks: Family<RouteStatus, Counter>,
    published: Family<RouteLabel, Counter>,
    delivered: Counter,
    dropped: Family<ReasonLabel, Counter>,
    replayed: Counter,
    proxied: Family<StatusLabel, Counter>,
    publish_to_write: Histogram,
    reloads: Family<ResultLabel, Counter>,
    next_stream: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let subscribers = Gauge::default();
        let webhooks = Family::<RouteStatus, Counter>::default();
        let published = Family::<RouteLabel, Counter>::default();
        let delivered = Counter::default();
        let dropped = Family::<ReasonLabel, Counter>::default();
        let replayed = Counter::default();
        let proxied = Family::<StatusLabel, Counter>::default();
        // 100 µs .. ~3.3 s.
        let publish_to_write = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let reloads = Family::<ResultLabel, Counter>::default();
        // Counters are registered without `_total`: the encoder appends it.
        registry.register(
            "hookcast_subscribers",
            "Open event streams",
            subscribers.clone(),
        );
        registry.register(
            "hookcast_webhooks",
            "Webhooks answered, by route and HTTP status (publish_failed: a forward-mode publish failed)",
            webhooks.clone(),
        );
        registry.register(
            "hookcast_events_published",
            "Events published, by route",
            published.clone(),
        );
        registry.register(
            "hookcast_events_delivered",
            "Events queued to a subscriber: each live event once per subscriber queue that took it, plus replayed events",
            delivered.clone(),
        );
        registry.register(
            "hookcast_subscribers_dropped",
            "Streams ended or refused by hookcast, by reason",
            dropped.clone(),
        );
        registry.register(
            "hookcast_replayed_events",
            "Events sent from history after a Last-Event-ID",
            replayed.clone(),
        );
        registry.register(
            "hookcast_proxy_requests",
            "Requests passed to the upstream, by HTTP status of the answer the client got",
            proxied.clone(),
        );
        registry.register(
            "hookcast_publish_to_write_seconds",
            "From an event's publish to the write of the batch holding it, for a sample of the streams (one in 16) and the oldest event of each batch",
            publish_to_write.clone(),
        );
        registry.register(
            "hookcast_config_reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("hookcast_build_info", "The running build (always 1)", build);
        Metrics {
            registry,
            subscribers,
            webhooks,
            published,
            delivered,
            dropped,
            replayed,
            proxied,
            publish_to_write,
            reloads,
            next_stream: AtomicU64::new(0),
        }
    }

    /// The OpenMetrics text, with `hookcast_subscribers` set to `subscribers` (read
    /// from the hub at scrape time rather than counted up and down per stream).
    pub fn render(&self, subscribers: usize) -> String {
        self.subscribers
            .set(i64::try_from(subscribers).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn webhook(&self, route: &str, status: &str) {
        self.webhooks
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    /// [`Metrics::webhook`] for a configured route, its 202s through `counters`.
    pub fn route_webhook(&self, counters: &RouteCounters, route: &str, status: http::StatusCode) {
        if status != http::StatusCode::ACCEPTED {
            return self.webhook(route, status.as_str());
        }
        counters
            .accepted
            .get_or_init(|| {
                self.webhooks
                    .get_or_create(&RouteStatus {
                        route: route.to_owned(),
                        status: status.as_str().to_owned(),
                    })
                    .clone()
            })
            .inc();
    }

    /// [`Metrics::published`] for a configured route, through `counters`.
    pub fn route_published(&self, counters: &RouteCounters, route: &str) {
        counters
            .published
            .get_or_init(|| {
                self.published
                    .get_or_create(&RouteLabel {
                        route: route.to_owned(),
                    })
                    .clone()
            })
            .inc();
    }

    pub fn published(&self, route: &str) {
        self.published
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .inc();
    }

    pub fn delivered(&self, n: usize) {
        if n > 0 {
            self.delivered.inc_by(n as u64);
        }
    }

    pub fn replayed(&self, n: usize) {
        if n > 0 {
            self.replayed.inc_by(n as u64);
            self.delivered.inc_by(n as u64);
        }
    }

    pub fn dropped(&self, why: Dropped) {
        self.dropped
            .get_or_create(&ReasonLabel {
                reason: why.as_str(),
            })
            .inc();
    }

    /// `status` comes from an `http::StatusCode`, so the label set stays bounded (100..=999).
    pub fn proxied(&self, status: u16) {
        self.proxied.get_or_create(&StatusLabel { status }).inc();
    }

    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// Whether a new stream feeds the latency histogram: one in [`SAMPLE_EVERY`],
    /// the first included. One atomic per stream opened, none per delivery.
    pub fn sampled(&self) -> bool {
        self.next_stream
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SAMPLE_EVERY)
    }

    pub fn publish_to_write(&self, took: Duration) {
        self.publish_to_write.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook_lines(m: &Metrics) -> std::collections::BTreeSet<String> {
        m.render(0)
            .lines()
            .filter(|l| {
                l.starts_with("hookcast_webhooks_total")
                    || l.starts_with("hookcast_events_published_total")
            })
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>()
    }

    /// A route's kept counters count what the label sets count.
    #[test]
    fn kept_counters_count_as_label_sets_do() {
        let (kept, looked_up) = (Metrics::new(), Metrics::new());
        let counters = RouteCounters::default();
        for status in [202, 202, 400, 202, 200] {
            let status = http::StatusCode::from_u16(status).unwrap();
            kept.route_webhook(&counters, "pub", status);
            kept.route_published(&counters, "pub");
            looked_up.webhook("pub", status.as_str());
            looked_up.published("pub");
        }
        let want = webhook_lines(&looked_up);
        assert_eq!(want.len(), 4, "{want:?}");
        assert_eq!(webhook_lines(&kept), want);
    }
}

//! The JSON the tool prints, the results child processes send back, and how they merge.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::procstat::Sample;

/// A histogram of nanoseconds, 3 significant figures, up to one hour.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// A histogram as its non-empty buckets `[value, count]`, for the trip between processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HistData(pub Vec<[u64; 2]>);

impl HistData {
    pub fn from_histogram(h: &Histogram<u64>) -> HistData {
        HistData(
            h.iter_recorded()
                .map(|v| [v.value_iterated_to(), v.count_at_value()])
                .collect(),
        )
    }

    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut h = histogram();
        for &[v, n] in &self.0 {
            h.saturating_record_n(v, n);
        }
        h
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &HistData) {
        let mut h = self.to_histogram();
        h.add(other.to_histogram()).expect("same bounds");
        *self = HistData::from_histogram(&h);
    }
}

/// What a child process says once its subscribers are connected (or failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectReport {
    pub connected: u64,
    pub failed: u64,
    /// From the start of connecting to the last subscriber's response head (or failure).
    pub connect_s: f64,
    pub timed_out: bool,
}

/// Which sequence numbers a topic was sent, and which of those were not accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Seqs 1..=sent were attempted.
    pub sent: u64,
    /// Attempted seqs whose webhook did not get a 2xx, ascending.
    pub failed: Vec<u64>,
}

impl Accepted {
    pub fn count(&self) -> u64 {
        self.sent - self.failed.len() as u64
    }

    /// Accepted seqs in `lo..hi`.
    pub fn count_in(&self, lo: u64, hi: u64) -> u64 {
        let hi = hi.min(self.sent + 1);
        if lo >= hi {
            return 0;
        }
        let a = self.failed.partition_point(|&s| s < lo);
        let b = self.failed.partition_point(|&s| s < hi);
        (hi - lo) - (b - a) as u64
    }
}

/// The subscribers' side of a run, from one process; results of several processes merge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubResult {
    pub requested: u64,
    pub connected: u64,
    pub failed: u64,
    /// Connection failures by reason.
    pub failures: BTreeMap<String, u64>,
    pub connect_s: f64,
    pub connect_timed_out: bool,
    /// Streams that ended (server closed or error) before the run did.
    pub disconnected: u64,
    /// Events received, including duplicates and events without a readable seq.
    pub deliveries: u64,
    /// Accepted events the connected subscribers should have received.
    pub expected: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    /// Distinct events received whose seq was never accepted (e.g. a webhook that timed out).
    pub unexpected: u64,
    /// Events whose data had no `"seq"` number.
    pub unparsed: u64,
    pub comments: u64,
    pub subscribers_with_loss: u64,
    pub subscribers_with_reorder: u64,
    /// Unix ns of the first and last event received.
    pub first_recv_ns: Option<u64>,
    pub last_recv_ns: Option<u64>,
    /// Publish-to-receive latency, ns.
    pub latency_ns: HistData,
}

impl SubResult {
    /// Adds another process's results to these.
    pub fn merge(&mut self, o: &SubResult) {
        self.requested += o.requested;
        self.connected += o.connected;
        self.failed += o.failed;
        for (k, v) in &o.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        self.connect_s = self.connect_s.max(o.connect_s);
        self.connect_timed_out |= o.connect_timed_out;
        self.disconnected += o.disconnected;
        self.deliveries += o.deliveries;
        self.expected += o.expected;
        self.lost += o.lost;
        self.reordered += o.reordered;
        self.duplicates += o.duplicates;
        self.unexpected += o.unexpected;
        self.unparsed += o.unparsed;
        self.comments += o.comments;
        self.subscribers_with_loss += o.subscribers_with_loss;
        self.subscribers_with_reorder += o.subscribers_with_reorder;
        self.first_recv_ns = opt(self.first_recv_ns, o.first_recv_ns, u64::min);
        self.last_recv_ns = opt(self.last_recv_ns, o.last_recv_ns, u64::max);
        self.latency_ns.merge(&o.latency_ns);
    }
}

fn opt(a: Option<u64>, b: Option<u64>, f: fn(u64, u64) -> u64) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// The publishers' side of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PubResult {
    /// Requests attempted.
    pub sent: u64,
    pub accepted: u64,
    /// Not accepted, by status code or by `timeout`, `connect`, `io`, `aborted`.
    pub errors: BTreeMap<String, u64>,
    /// From the first send to the last response.
    pub duration_s: f64,
    pub first_send_ns: Option<u64>,
    pub timed_out: bool,
    /// Webhook send-to-response latency, ns.
    pub latency_ns: HistData,
    /// Per topic index.
    pub accepted_seqs: Vec<Accepted>,
}

/// Latency quantiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Quantiles {
    /// From a histogram of nanoseconds; `None` if it is empty.
    pub fn from_ns(h: &Histogram<u64>) -> Option<Quantiles> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: f64| (ns / 100.0).round() / 10.0;
        let q = |q: f64| us(h.value_at_quantile(q) as f64);
        Some(Quantiles {
            count: h.len(),
            mean: us(h.mean()),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: us(h.max() as f64),
        })
    }
}

/// The run's parameters, echoed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    pub sub_url: Option<String>,
    pub pub_url: Option<String>,
    pub subscribers: usize,
    pub topics: usize,
    pub procs: usize,
    pub events: u64,
    /// Events per second, or `"max"`.
    pub rate: String,
    pub pub_concurrency: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribersOut {
    pub requested: u64,
    pub connected: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub disconnected: u64,
    pub connect_s: f64,
    pub connect_timed_out: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveriesOut {
    pub count: u64,
    pub expected: u64,
    /// count / (last receive - first send).
    pub per_s: f64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    pub unparsed: u64,
    pub comments: u64,
    pub subscribers_with_loss: u64,
    pub subscribers_with_reorder: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhooksOut {
    pub sent: u64,
    pub accepted: u64,
    pub errors: BTreeMap<String, u64>,
    pub accepted_per_s: f64,
    pub duration_s: f64,
    pub timed_out: bool,
    pub latency_us: Option<Quantiles>,
}

/// Three readings of a quantity: before connecting, after connecting (+ settle), at the end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Triple<T> {
    pub before: T,
    pub after_connect: T,
    pub end: T,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerOut {
    pub pids: Vec<u32>,
    pub processes: usize,
    pub rss_kib: Triple<u64>,
    /// (after_connect - before) / connected subscribers.
    pub rss_per_connection_bytes: Option<f64>,
    pub cpu_s: Triple<f64>,
    /// end - after_connect: publishing and draining.
    pub cpu_s_publish: f64,
    /// cpu_s_publish / deliveries.
    pub cpu_us_per_delivery: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadToolOut {
    pub processes: usize,
    pub cpu_s_connect: f64,
    pub cpu_s_publish: f64,
    /// cpu_s_publish / (publish_s + drain_s), in cores: near 1.0 per process means
    /// the generator, not the server, was the limit.
    pub cpu_cores_publish: f64,
    pub rss_kib_end: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhasesOut {
    pub connect_s: f64,
    pub settle_s: f64,
    pub publish_s: f64,
    pub drain_s: f64,
    pub timed_out: Vec<String>,
}

/// The one JSON document printed on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub tool: String,
    pub version: String,
    pub config: Echo,
    pub subscribers: SubscribersOut,
    pub deliveries: DeliveriesOut,
    pub latency_us: Option<Quantiles>,
    pub webhooks: WebhooksOut,
    pub server: Option<ServerOut>,
    pub load_tool: LoadToolOut,
    pub phases: PhasesOut,
}

/// Everything measured, before it becomes a [`Summary`].
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub subs: SubResult,
    pub pubs: PubResult,
    pub server_pids: Vec<u32>,
    /// before, after connect, end.
    pub server: [Option<Sample>; 3],
    pub tool: [Option<Sample>; 3],
    pub settle_s: f64,
    pub publish_s: f64,
    pub drain_s: f64,
    pub timed_out: Vec<String>,
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Summary {
    pub fn build(echo: Echo, m: &Measured) -> Summary {
        let s = &m.subs;
        let p = &m.pubs;
        let delivery_window = match (p.first_send_ns, s.last_recv_ns) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => 0.0,
        };
        let server = match m.server {
            [Some(b), Some(c), Some(e)] => {
                let cpu_publish = (e.cpu_s - c.cpu_s).max(0.0);
                Some(ServerOut {
                    pids: m.server_pids.clone(),
                    processes: e.processes,
                    rss_kib: Triple {
                        before: b.rss_kib,
                        after_connect: c.rss_kib,
                        end: e.rss_kib,
                    },
                    rss_per_connection_bytes: (s.connected > 0).then(|| {
                        ((c.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / s.connected as f64)
                            .round()
                    }),
                    cpu_s: Triple {
                        before: round3(b.cpu_s),
                        after_connect: round3(c.cpu_s),
                        end: round3(e.cpu_s),
                    },
                    cpu_s_publish: round3(cpu_publish),
                    cpu_us_per_delivery: (s.deliveries > 0)
                        .then(|| round3(cpu_publish * 1e6 / s.deliveries as f64)),
                })
            }
            _ => None,
        };
        let tool_cpu = |i: usize| m.tool[i].map_or(0.0, |t| t.cpu_s);
        let tool_publish = (tool_cpu(2) - tool_cpu(1)).max(0.0);
        let publish_window = m.publish_s + m.drain_s;
        Summary {
            tool: "hookcast-load".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            config: echo,
            subscribers: SubscribersOut {
                requested: s.requested,
                connected: s.connected,
                failed: s.failed,
                failures: s.failures.clone(),
                disconnected: s.disconnected,
                connect_s: round3(s.connect_s),
                connect_timed_out: s.connect_timed_out,
            },
            deliveries: DeliveriesOut {
                count: s.deliveries,
                expected: s.expected,
                per_s: per_s(s.deliveries, delivery_window),
                lost: s.lost,
                reordered: s.reordered,
                duplicates: s.duplicates,
                unexpected: s.unexpected,
                unparsed: s.unparsed,
                comments: s.comments,
                subscribers_with_loss: s.subscribers_with_loss,
                subscribers_with_reorder: s.subscribers_with_reorder,
            },
            latency_us: Quantiles::from_ns(&s.latency_ns.to_histogram()),
            webhooks: WebhooksOut {
                sent: p.sent,
                accepted: p.accepted,
                errors: p.errors.clone(),
                accepted_per_s: per_s(p.accepted, p.duration_s),
                duration_s: round3(p.duration_s),
                timed_out: p.timed_out,
                latency_us: Quantiles::from_ns(&p.latency_ns.to_histogram()),
            },
            server,
            load_tool: LoadToolOut {
                processes: m.tool[2].map_or(0, |t| t.processes),
                cpu_s_connect: round3((tool_cpu(1) - tool_cpu(0)).max(0.0)),
                cpu_s_publish: round3(tool_publish),
                cpu_cores_publish: if publish_window > 0.0 {
                    round3(tool_publish / publish_window)
                } else {
                    0.0
                },
                rss_kib_end: m.tool[2].map_or(0, |t| t.rss_kib),
            },
            phases: PhasesOut {
                connect_s: round3(s.connect_s),
                settle_s: round3(m.settle_s),
                publish_s: round3(m.publish_s),
                drain_s: round3(m.drain_s),
                timed_out: m.timed_out.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> HistData {
        let mut h = histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        HistData::from_histogram(&h)
    }

    fn child(connected: u64, lost: u64, first: u64, last: u64, lat: &[u64]) -> SubResult {
        SubResult {
            requested: connected + 1,
            connected,
            failed: 1,
            failures: [("status 503".to_owned(), 1)].into_iter().collect(),
            connect_s: connected as f64 / 1000.0,
            deliveries: lat.len() as u64,
            expected: lat.len() as u64 + lost,
            lost,
            subscribers_with_loss: u64::from(lost > 0),
            first_recv_ns: Some(first),
            last_recv_ns: Some(last),
            latency_ns: hist(lat),
            ..SubResult::default()
        }
    }

    #[test]
    fn merges_child_results() {
        let mut total = SubResult::default();
        let a = child(100, 0, 5_000, 9_000, &[1_000, 2_000, 3_000]);
        let b = child(200, 2, 4_000, 8_000, &[10_000]);
        total.merge(&a);
        total.merge(&b);
        assert_eq!(total.requested, 302);
        assert_eq!(total.connected, 300);
        assert_eq!(total.failures["status 503"], 2);
        assert_eq!(total.connect_s, 0.2);
        assert_eq!(total.deliveries, 4);
        assert_eq!(total.expected, 6);
        assert_eq!(total.lost, 2);
        assert_eq!(total.subscribers_with_loss, 1);
        assert_eq!(total.first_recv_ns, Some(4_000));
        assert_eq!(total.last_recv_ns, Some(9_000));
        let h = total.latency_ns.to_histogram();
        assert_eq!(h.len(), 4);
        assert!(h.equivalent(h.max(), 10_000));
    }

    #[test]
    fn child_results_survive_json() {
        let a = child(10, 1, 1, 2, &[500, 70_000, 70_001]);
        let text = serde_json::to_string(&a).unwrap();
        assert!(!text.contains('\n'), "one line per result");
        let back: SubResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn counts_accepted_ranges() {
        let a = Accepted {
            sent: 10,
            failed: vec![3, 7],
        };
        assert_eq!(a.count(), 8);
        assert_eq!(a.count_in(1, 11), 8);
        assert_eq!(a.count_in(3, 4), 0);
        assert_eq!(a.count_in(4, 7), 3);
        assert_eq!(a.count_in(8, 100), 3);
        assert_eq!(a.count_in(5, 5), 0);
    }

    #[test]
    fn summary_shape() {
        let sample = |rss_kib, cpu_s| {
            Some(Sample {
                rss_kib,
                cpu_s,
                processes: 2,
            })
        };
        let mut subs = child(1000, 0, 1_000_000_000, 3_000_000_000, &[50_000; 100]);
        subs.deliveries = 2000;
        let m = Measured {
            subs,
            pubs: PubResult {
                sent: 2,
                accepted: 2,
                duration_s: 1.0,
                first_send_ns: Some(1_000_000_000),
                latency_ns: hist(&[300_000, 400_000]),
                ..PubResult::default()
            },
            server_pids: vec![42],
            server: [
                sample(10_000, 1.0),
                sample(20_000, 1.5),
                sample(20_500, 2.5),
            ],
            tool: [sample(1_000, 0.0), sample(2_000, 0.2), sample(2_000, 0.7)],
            publish_s: 1.0,
            drain_s: 1.5,
            ..Measured::default()
        };
        let echo = Echo {
            sub_url: Some("http://127.0.0.1:8080/events?topic={topic}".into()),
            pub_url: None,
            subscribers: 1001,
            topics: 1,
            procs: 1,
            events: 2,
            rate: "max".into(),
            pub_concurrency: 1,
        };
        let v = serde_json::to_value(Summary::build(echo, &m)).unwrap();
        assert_eq!(v["tool"], "hookcast-load");
        assert_eq!(v["subscribers"]["connected"], 1000);
        assert_eq!(v["deliveries"]["count"], 2000);
        assert_eq!(v["deliveries"]["per_s"], 1000.0);
        assert_eq!(v["deliveries"]["lost"], 0);
        assert_eq!(v["latency_us"]["p50"], 50.0);
        assert_eq!(v["webhooks"]["accepted_per_s"], 2.0);
        let max = v["webhooks"]["latency_us"]["max"].as_f64().unwrap();
        assert!((400.0..=400.5).contains(&max), "{max}");
        assert_eq!(v["server"]["rss_kib"]["after_connect"], 20_000);
        assert_eq!(v["server"]["rss_per_connection_bytes"], 10_240.0);
        assert_eq!(v["server"]["cpu_s_publish"], 1.0);
        assert_eq!(v["server"]["cpu_us_per_delivery"], 500.0);
        assert_eq!(v["load_tool"]["cpu_s_publish"], 0.5);
        assert_eq!(v["load_tool"]["cpu_cores_publish"], 0.2);
        for key in [
            "config",
            "subscribers",
            "deliveries",
            "latency_us",
            "webhooks",
            "server",
            "load_tool",
            "phases",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
    }
}

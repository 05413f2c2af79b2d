//! In-process hub benchmark: `cargo bench --bench hub`. Reports
//! - publish cost with 100,000 distinct pattern subscriptions against none (the
//!   segment index makes it independent of the number of patterns: goal < 2x);
//! - publishes/s of two threads publishing to different topics against one thread
//!   (goal ≥ 1.7x; each publish holds the hub's one lock, so today it is ≤ 1x).
//!
//! Wall-clock figures: take them on a quiet machine. Without `--bench` (as
//! `cargo test --all-targets` runs it) it runs a few iterations and prints nothing.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use hookcast::hub::{Hub, NewEvent, Subscription};
use hookcast::topic::Filter;

const TOPIC: &str = "tenant.none.orders";

fn event(topic: &str) -> NewEvent {
    NewEvent {
        topics: vec![topic.to_owned()],
        event: None,
        data: r#"{"n":1}"#.into(),
        dedupe: None,
    }
}

/// `patterns` distinct pattern subscriptions spread over literal, `*` and `>`
/// branches; none matches [`TOPIC`], which walks into the crowded branches.
fn hub_with(patterns: usize) -> (Arc<Hub>, Vec<Subscription>) {
    let hub = Hub::new(common::limits());
    let subs = (0..patterns)
        .map(|i| {
            let p = match i % 3 {
                0 => format!("tenant.{i}.>"),
                1 => format!("tenant.*.room{i}"),
                _ => format!("orders.{i}.*.created"),
            };
            hub.subscribe(vec![Filter::parse(&p).unwrap()], None, None)
                .unwrap()
        })
        .collect();
    (hub, subs)
}

/// Nanoseconds per publish, the best of five rounds of `n`.
fn publish_ns(hub: &Hub, topic: &str, n: u32) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                black_box(hub.publish(event(topic)));
            }
            start.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Publishes per second with `threads` threads, each on its own topic.
fn throughput(threads: usize, n: u32) -> f64 {
    let hub = Hub::new(common::limits());
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let hub = &hub;
            s.spawn(move || {
                let topic = format!("bench.t{t}");
                for _ in 0..n {
                    black_box(hub.publish(event(&topic)));
                }
            });
        }
    });
    (threads as f64 * f64::from(n)) / start.elapsed().as_secs_f64()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, patterns) = if full { (200_000, 100_000) } else { (10, 100) };

    let (none, _) = hub_with(0);
    let (many, _subs) = hub_with(patterns);
    let base = publish_ns(&none, TOPIC, n);
    let with = publish_ns(&many, TOPIC, n);
    let one = throughput(1, n);
    let two = throughput(2, n);
    if full {
        let ratio = |a: f64, b: f64, goal: &str| format!("({:.2}x, goal {goal})", a / b);
        println!("{:<34}{base:>10.0} ns", "publish, no pattern:");
        let label = format!("publish, {patterns} patterns:");
        println!("{label:<34}{with:>10.0} ns  {}", ratio(with, base, "< 2x"));
        println!("{:<34}{one:>10.0} publishes/s", "1 thread:");
        let two_label = "2 threads, different topics:";
        println!(
            "{two_label:<34}{two:>10.0} publishes/s  {}",
            ratio(two, one, ">= 1.7x")
        );
    }
}

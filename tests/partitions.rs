//! Partitions, for real: the broker runs in a network namespace made by the
//! test, reached by each of two hookcast replicas over a veth pair of its own;
//! `tc` (netem loss 100%, or the blackhole qdisc) on one pair cuts that replica off the broker (packets
//! vanish, connections hang, as in a real partition) while webhooks go to both.
//! Runs against Redis and NATS. Needs root (CAP_NET_ADMIN) and iproute2; where
//! namespaces cannot be made the tests say so and pass without running.
//!
//! The addresses are 10.x /30s on the veth pairs only: nothing is routed
//! anywhere but into the test's own namespace.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use support::broker::{BrokerServer, Kind};
use support::{Item, SseStream, TestApp};

/// Longer than `support::PATIENCE`: TCP connections that hung through a
/// partition come back on their own retransmission schedule.
const HEAL_PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn redis_a_replica_cut_off_acknowledges_nothing_and_catches_up() {
    partition(Kind::Redis).await;
}

#[tokio::test]
async fn nats_a_replica_cut_off_acknowledges_nothing_and_catches_up() {
    partition(Kind::Nats).await;
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A namespace with two veth pairs into it; removed (with the pairs) on drop.
struct Net {
    ns: String,
    /// Host-side interface and the broker's address, per replica.
    links: [(String, String); 2],
    ns_links: [String; 2],
}

impl Net {
    fn create() -> Result<Net, String> {
        let tag = format!("{:06x}", fastrand::u32(..0xff_ffff));
        let ns = format!("hc-{tag}");
        ip(&["netns", "add", &ns])?;
        let mut net = Net {
            ns: ns.clone(),
            links: Default::default(),
            ns_links: Default::default(),
        };
        // A random /30 pair in 10.200.0.0/16, unlikely to meet another test's.
        let third = fastrand::u8(..);
        let fourth = fastrand::u8(..31) * 8;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        for i in 0..2 {
            let host = format!("hc{tag}h{i}");
            let inner = format!("hc{tag}n{i}");
            ip(&[
                "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", &ns,
            ])?;
            let base = fourth + 4 * i as u8;
            let host_addr = format!("10.200.{third}.{}/30", base + 1);
            let ns_addr = format!("10.200.{third}.{}", base + 2);
            ip(&["addr", "add", &host_addr, "dev", &host])?;
            ip(&["link", "set", &host, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ns_addr}/30"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            net.links[i] = (host, ns_addr);
            net.ns_links[i] = inner;
        }
        Ok(net)
    }

    /// Drops every packet both ways on replica `i`'s pair, or stops doing so:
    /// with `netem loss 100%`, or where the kernel lacks netem (as some VM
    /// kernels do) the `blackhole` qdisc, which drops the same way.
    fn cut(&self, i: usize, on: bool) {
        for (netns, dev) in [
            (None, &self.links[i].0),
            (Some(&self.ns), &self.ns_links[i]),
        ] {
            let tc = |args: &[&str]| {
                let mut c = match netns {
                    Some(ns) => {
                        let mut c = Command::new("ip");
                        c.args(["netns", "exec", ns, "tc"]);
                        c
                    }
                    None => Command::new("tc"),
                };
                c.args(["qdisc"])
                    .args(args)
                    .stderr(Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            };
            let done = if on {
                tc(&["add", "dev", dev, "root", "netem", "loss", "100%"])
                    || tc(&["add", "dev", dev, "root", "blackhole"])
            } else {
                tc(&["del", "dev", dev, "root"])
            };
            assert!(done, "tc qdisc on {dev} (on: {on})");
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth ends, and with them the pairs.
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

fn yaml(broker: &BrokerServer, url: &str) -> String {
    support::broker::replica_yaml("", &broker.broker_yaml(url, "500ms"), "")
}

async fn subscribe_ready(app: &TestApp, headers: &[(&str, &str)]) -> SseStream {
    support::subscribe_ready(app, "topic=room.x", headers).await
}

/// Posts once; the id if acknowledged (202), else asserts the refusal is a 503.
async fn post(app: &TestApp, body: &str) -> Option<String> {
    let r = app.post("/hooks/x", &[], body.to_owned()).await;
    if r.status == StatusCode::ACCEPTED {
        return Some(r.json()["id"].as_str().unwrap().to_owned());
    }
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable");
    None
}

/// Reads a subscriber until it has seen `last`, reconnecting with its last id
/// whenever the stream ends; returns the ids it got, in order.
async fn collect_through(
    app: &TestApp,
    mut s: SseStream,
    mut seen: Vec<String>,
    last: &str,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + HEAL_PATIENCE;
    while seen.last().map(String::as_str) != Some(last) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got {last}; got {seen:?}"
        );
        match s.next_event_within(HEAL_PATIENCE).await {
            Some(e) if e.event == "hookcast.resync" => panic!("resync: {}", e.data),
            Some(e) => seen.push(e.id),
            None => {
                assert!(s.ended, "a live stream went silent");
                let headers: Vec<(&str, &str)> = seen
                    .last()
                    .map(|l| ("Last-Event-ID", l.as_str()))
                    .into_iter()
                    .collect();
                s = subscribe_ready(app, &headers).await;
            }
        }
    }
    seen
}

async fn partition(kind: Kind) {
    let net = match Net::create() {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot create network namespaces here ({e}); run as root with iproute2"
            );
            return;
        }
    };
    let port = match kind {
        Kind::Redis => 6379,
        Kind::Nats => 4222,
    };
    let server = BrokerServer::start_in(kind, &net.ns, port).await;
    for (_, addr) in &net.links {
        server.wait_reachable(addr).await;
    }
    let a = TestApp::spawn(&yaml(&server, &server.url_at(&net.links[0].1))).await;
    let b = TestApp::spawn(&yaml(&server, &server.url_at(&net.links[1].1))).await;
    let mut at_a = subscribe_ready(&a, &[]).await;
    let mut at_b = subscribe_ready(&b, &[]).await;

    let mut acked = Vec::new();
    for i in 0..4 {
        let app = if i % 2 == 0 { &a } else { &b };
        acked.push(post(app, &format!("before-{i}")).await.expect("accepted"));
    }

    let seen_a: Vec<String> = at_a.events(4).await.into_iter().map(|e| e.id).collect();
    assert_eq!(seen_a, acked);

    net.cut(0, true);
    let mut refused_at_a = 0;
    for i in 0..4 {
        // Whatever A acknowledges must be stored; a 503 must never be delivered.
        match post(&a, &format!("cut-a-{i}")).await {
            Some(id) => acked.push(id),
            None => refused_at_a += 1,
        }
        acked.push(
            post(&b, &format!("cut-b-{i}"))
                .await
                .expect("B still reaches the broker"),
        );
    }
    assert!(refused_at_a >= 3, "the cut-off replica kept acknowledging");
    // A's subscriber stays connected through the partition: heartbeats go on.
    for _ in 0..3 {
        let item = at_a.next_item_within(HEAL_PATIENCE).await;
        assert!(matches!(item, Some(Item::Comment(_))), "{item:?}");
    }

    net.cut(0, false);
    let deadline = tokio::time::Instant::now() + HEAL_PATIENCE;
    let healed = loop {
        if let Some(id) = post(&a, "healed").await {
            break id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never reached the broker again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    acked.push(healed);
    acked.push(post(&b, "last").await.expect("accepted"));

    // Every acknowledged event, in id order, once, at both replicas.
    let mut want = acked.clone();
    want.sort_by_key(|id| hookcast::broker::parse_stream_id(id));
    assert_eq!(want, acked, "acknowledged in this order, one after another");
    let last = want.last().unwrap().clone();
    let got_a = collect_through(&a, at_a, seen_a, &last).await;
    assert_eq!(got_a, want, "at the replica that was cut off");
    let mut got_b = Vec::new();
    while got_b.len() < want.len() {
        got_b.push(at_b.next_event().await.id);
    }
    assert_eq!(got_b, want, "at the replica that was not");
}

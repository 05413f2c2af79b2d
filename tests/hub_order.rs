//! The hub's guarantees while several threads publish at once (README,
//! "Subscribing": ordering, replay): topics spread over the hub's shards, events
//! on overlapping sets of them, subscribers on topics and patterns that span
//! shards. Each subscriber takes its events in strictly increasing id order,
//! once each, none missing; a replay joins live delivery with no gap and no
//! duplicate while publishing goes on. In process, through the hub's public API,
//! with each subscriber drained by its own thread that sleeps until woken, so a
//! lost wake-up hangs the test rather than passing it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use hookcast::hub::{Event, Hub, Limits, NewEvent, Recv, Subscription};
use hookcast::topic::{Filter, Pattern};

/// Enough topics that they land in most of the hub's shards.
const TOPICS: usize = 32;
const PUBLISHERS: usize = 4;
const PER_PUBLISHER: usize = 1500;

fn topic(i: usize) -> String {
    format!("s.t{i}")
}

/// Room for every event of a run in each history and queue: nothing is cut,
/// so anything missing is a loss.
fn limits() -> Limits {
    Limits {
        history: 1 << 20,
        history_ttl: Duration::from_secs(3600),
        history_bytes: 1 << 30,
        subscriber_queue: 1 << 20,
        subscriber_queue_bytes: 1 << 30,
        max_subscribers: 1000,
        dedupe_window: Duration::from_secs(60),
        dedupe_max_keys: 100,
    }
}

fn event(topics: Vec<String>) -> NewEvent {
    NewEvent {
        topics,
        event: None,
        data: "x".into(),
        dedupe: None,
    }
}

/// Filters of every shape: one topic, several topics (most in different
/// shards), patterns that follow some or all topics, and a mix.
fn filter_sets() -> Vec<Vec<&'static str>> {
    vec![
        vec!["s.t0"],
        vec!["s.t7"],
        vec!["s.t1", "s.t2"],
        vec!["s.t3", "s.t11", "s.t19", "s.t27"],
        vec!["s.*"],
        vec!["s.>"],
        vec!["*.t5", "s.t6"],
        vec!["s.t8", "s.t9", "s.t10", "s.t12", "s.t13", "s.t14", "s.t15"],
        vec!["s.t4", "s.*", "s.t4"],
        vec!["s.t20", "*.t21", "s.t22"],
    ]
}

fn filters(set: &[&str]) -> Vec<Filter> {
    set.iter().map(|f| Filter::parse(f).unwrap()).collect()
}

fn matches(set: &[&str], topics: &[String]) -> bool {
    set.iter().any(|f| {
        let p = Pattern::parse(f).unwrap();
        topics.iter().any(|t| p.matches(t))
    })
}

/// What one publisher thread published: seq and topics, in its publish order.
type Log = Vec<(u64, Vec<String>)>;

/// The seq of an id this hub minted: what follows its last `-`.
fn seq_of(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

/// Publishes from `PUBLISHERS` threads, each to 1..=3 random topics per event
/// (seeded, so a failure reproduces its inputs), while this thread calls
/// `during` until it returns false; each publisher stops once that is over and
/// it published at least `PER_PUBLISHER`. Returns every publish.
fn publish_concurrently(hub: &Arc<Hub>, mut during: impl FnMut() -> bool) -> Log {
    let started = Barrier::new(PUBLISHERS + 1);
    let done = AtomicBool::new(false);
    let logs: Vec<Log> = thread::scope(|s| {
        let threads: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let (hub, started, done) = (hub.clone(), &started, &done);
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(p as u64);
                    let mut log = Log::new();
                    started.wait();
                    while log.len() < PER_PUBLISHER || !done.load(Ordering::Relaxed) {
                        let n = rng.usize(1..=3);
                        let set: BTreeSet<usize> = (0..n).map(|_| rng.usize(..TOPICS)).collect();
                        let topics: Vec<String> = set.into_iter().map(topic).collect();
                        let published = hub.publish(event(topics.clone()));
                        log.push((seq_of(&published.id), topics));
                    }
                    log
                })
            })
            .collect();
        started.wait();
        while during() {}
        done.store(true, Ordering::Relaxed);
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for log in &logs {
        assert!(
            log.windows(2).all(|w| w[0].0 < w[1].0),
            "ids increase in each publisher's order"
        );
    }
    let mut all: Log = logs.into_iter().flatten().collect();
    all.sort();
    all
}

/// Wakes the draining thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Takes live events until one published to every topic (the end marker),
/// sleeping whenever the subscription has nothing ready.
fn drain_until_end(sub: &mut Subscription) -> Vec<Arc<Event>> {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut got = Vec::new();
    loop {
        match sub.poll_recv(&mut cx) {
            Poll::Ready(Recv::Event(e)) => {
                let end = e.topics.len() == TOPICS;
                got.push(e);
                if end {
                    return got;
                }
            }
            Poll::Ready(Recv::Closed(why)) => panic!("closed: {why:?}"),
            Poll::Pending => thread::park(),
        }
    }
}

/// Publishes the end marker: one event on every topic, which every subscriber
/// follows through at least one of its filters.
fn publish_end(hub: &Hub) -> u64 {
    seq_of(&hub.publish(event((0..TOPICS).map(topic).collect())).id)
}

/// Strictly increasing, so neither reordered nor doubled.
fn assert_increasing(seqs: &[u64], what: &str) {
    if let Some(w) = seqs.windows(2).find(|w| w[0] >= w[1]) {
        panic!("{what}: {} then {}", w[0], w[1]);
    }
}

#[test]
fn live_subscribers_take_every_event_once_in_id_order() {
    let hub = Hub::new(limits());
    let sets = filter_sets();
    let (logs, received) = thread::scope(|s| {
        let drains: Vec<_> = sets
            .iter()
            .map(|set| {
                let mut sub = hub.subscribe(filters(set), None, None).unwrap();
                s.spawn(move || drain_until_end(&mut sub))
            })
            .collect();
        let log = publish_concurrently(&hub, || false);
        let end = publish_end(&hub);
        let received: Vec<Vec<u64>> = drains
            .into_iter()
            .map(|d| d.join().unwrap().iter().map(|e| e.seq).collect())
            .collect();
        assert!(received.iter().all(|r| r.last() == Some(&end)));
        (log, received)
    });
    for (set, seqs) in sets.iter().zip(&received) {
        assert_increasing(seqs, &format!("{set:?}"));
        let expected: Vec<u64> = logs
            .iter()
            .filter(|(_, topics)| matches(set, topics))
            .map(|(seq, _)| *seq)
            .collect();
        assert_eq!(
            &seqs[..seqs.len() - 1],
            &expected[..],
            "{set:?} takes exactly the events its filters match"
        );
    }
}

#[test]
fn replay_joins_live_delivery_while_publishers_race() {
    let hub = Hub::new(limits());
    let sets = filter_sets();
    let first = hub.publish(event(vec![topic(0)]));
    let from = seq_of(&first.id);
    // Subscriptions opened while the publishers run, resuming after `first` or
    // (every third) without a last id; drained once publishing is over.
    let mut opened: Vec<(Vec<&str>, bool, Subscription)> = Vec::new();
    let mut n = 0;
    let log = publish_concurrently(&hub, || {
        let set = sets[n % sets.len()].clone();
        let resume = n % 3 != 0;
        let last = resume.then_some(&*first.id);
        let sub = hub.subscribe(filters(&set), last, None).unwrap();
        assert!(sub.resync.is_none(), "everything is retained");
        opened.push((set, resume, sub));
        n += 1;
        n < 60
    });
    publish_end(&hub);
    for (set, resume, mut sub) in opened {
        let replayed: Vec<u64> = sub.replay.drain(..).map(|e| e.seq).collect();
        let live: Vec<u64> = drain_until_end(&mut sub).iter().map(|e| e.seq).collect();
        let seqs: Vec<u64> = replayed
            .iter()
            .chain(&live[..live.len() - 1])
            .copied()
            .collect();
        assert_increasing(&seqs, &format!("{set:?}, replay then live"));
        let matching = log.iter().filter(|(_, topics)| matches(&set, topics));
        let expected: Vec<u64> = if resume {
            // Everything after the last id: no gap between replay and live.
            matching
                .map(|(seq, _)| *seq)
                .filter(|&s| s > from)
                .collect()
        } else {
            // Live only: from the first event taken on, nothing missing.
            let start = seqs.first().copied().unwrap_or(u64::MAX);
            matching
                .map(|(seq, _)| *seq)
                .filter(|&s| s >= start)
                .collect()
        };
        assert_eq!(seqs, expected, "{set:?}, resumed: {resume}");
    }
}

/// Publishers on disjoint topics and one subscriber per topic plus one on all
/// of them: each publisher's events reach its topic's subscriber in its order,
/// and the subscriber on all gets every event once, in id order.
#[test]
fn a_subscriber_across_all_shards_merges_them_in_id_order() {
    let hub = Hub::new(limits());
    let all_topics: Vec<String> = (0..TOPICS).map(topic).collect();
    let all_filters: Vec<&str> = all_topics.iter().map(String::as_str).collect();
    let per_topic: HashMap<usize, Vec<u64>> = thread::scope(|s| {
        let mut every = hub.subscribe(filters(&all_filters), None, None).unwrap();
        let every = s.spawn(move || drain_until_end(&mut every));
        let singles: Vec<_> = (0..TOPICS)
            .map(|t| {
                let mut sub = hub.subscribe(filters(&[&topic(t)]), None, None).unwrap();
                s.spawn(move || drain_until_end(&mut sub))
            })
            .collect();
        let mut published: HashMap<usize, Vec<u64>> = HashMap::new();
        thread::scope(|p| {
            let threads: Vec<_> = (0..PUBLISHERS)
                .map(|w| {
                    let hub = &hub;
                    p.spawn(move || {
                        (0..PER_PUBLISHER)
                            .map(|i| {
                                let t = w + PUBLISHERS * (i % (TOPICS / PUBLISHERS));
                                (t, seq_of(&hub.publish(event(vec![topic(t)])).id))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for t in threads {
                for (topic, seq) in t.join().unwrap() {
                    published.entry(topic).or_default().push(seq);
                }
            }
        });
        publish_end(&hub);
        let merged: Vec<u64> = every.join().unwrap().iter().map(|e| e.seq).collect();
        assert_increasing(&merged, "the subscriber on every topic");
        let mut expected: Vec<u64> = published.values().flatten().copied().collect();
        expected.sort_unstable();
        assert_eq!(&merged[..merged.len() - 1], &expected[..]);
        for (t, single) in singles.into_iter().enumerate() {
            let seqs: Vec<u64> = single.join().unwrap().iter().map(|e| e.seq).collect();
            let want = published.get(&t).cloned().unwrap_or_default();
            assert_eq!(
                &seqs[..seqs.len() - 1],
                &want[..],
                "topic {t}: in its publisher's order"
            );
        }
        published
    });
    assert_eq!(per_topic.len(), TOPICS, "every topic was published to");
}

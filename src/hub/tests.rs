use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::*;

fn limits() -> Limits {
    Limits {
        history: 100,
        history_ttl: Duration::from_secs(3600),
        history_bytes: 1 << 20,
        subscriber_queue: 1000,
        subscriber_queue_bytes: 1 << 20,
        max_subscribers: 1000,
        dedupe_window: Duration::from_secs(60),
        dedupe_max_keys: 100,
    }
}

fn event(topics: &[&str], data: &str) -> NewEvent {
    NewEvent {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        event: None,
        data: data.into(),
        dedupe: None,
    }
}

fn filters(f: &[&str]) -> Vec<Filter> {
    f.iter().map(|s| Filter::parse(s).unwrap()).collect()
}

/// Everything the subscription can yield now: replay, then live.
fn drain(sub: &mut Subscription) -> Vec<Arc<Event>> {
    let mut out: Vec<_> = sub.replay.drain(..).collect();
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Recv::Event(e)) = sub.poll_recv(&mut cx) {
        out.push(e);
    }
    out
}

fn seqs(events: &[Arc<Event>]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[test]
fn event_on_two_followed_topics_arrives_once() {
    let hub = Hub::new(limits());
    let mut sub = hub
        .subscribe(filters(&["a", "b", "*"]), None, None)
        .unwrap();
    hub.publish(event(&["a", "b"], "x"));
    assert_eq!(drain(&mut sub).len(), 1);
}

#[test]
fn frame_is_encoded_once_and_shared() {
    let hub = Hub::new(limits());
    let mut s1 = hub.subscribe(filters(&["a"]), None, None).unwrap();
    let mut s2 = hub.subscribe(filters(&["a"]), None, None).unwrap();
    let p = hub.publish(NewEvent {
        event: Some("e".into()),
        ..event(&["a"], "l1\nl2")
    });
    let (e1, e2) = (drain(&mut s1).remove(0), drain(&mut s2).remove(0));
    assert!(Arc::ptr_eq(&e1, &e2));
    assert_eq!(
        e1.frame(),
        format!("id: {}\nevent: e\ndata: l1\ndata: l2\n\n", p.id).as_bytes()
    );
}

#[test]
fn replay_is_exact_while_publishers_race() {
    let hub = Hub::new(Limits {
        history: 5000,
        ..limits()
    });
    let first = hub.publish(event(&["a"], "0"));
    let first_seq = hub.epoch.parse(&first.id).unwrap();
    hub.publish(event(&["b"], "start"));
    let publisher = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for i in 1..2000 {
                let topic = if i % 2 == 0 { "a" } else { "b" };
                hub.publish(event(&[topic], &i.to_string()));
            }
        })
    };
    let mut got = Vec::new();
    while !publisher.is_finished() {
        let mut sub = hub
            .subscribe(filters(&["a", "b"]), Some(&first.id), None)
            .unwrap();
        assert!(sub.resync.is_none());
        got = seqs(&drain(&mut sub));
        assert_eq!(
            got.first(),
            Some(&(first_seq + 1)),
            "replay starts right after the id"
        );
        let mut sorted = got.clone();
        sorted.dedup();
        assert_eq!(sorted, got, "no duplicate, in order");
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "no gap: {got:?}");
    }
    publisher.join().unwrap();
    assert!(!got.is_empty());
}

#[test]
fn history_bounds_trigger_resync() {
    let hub = Hub::new(Limits {
        history: 2,
        ..limits()
    });
    let first = hub.publish(event(&["a"], "1"));
    hub.publish(event(&["a", "b"], "2"));
    hub.publish(event(&["a"], "3"));
    hub.publish(event(&["a"], "4"));
    let mut sub = hub
        .subscribe(filters(&["a", "b"]), Some(&first.id), None)
        .unwrap();
    let resync = sub.resync.clone().unwrap();
    assert_eq!(resync.reason, RESYNC_TRIMMED);
    assert_eq!(resync.filters, vec!["a".to_string()]);
    assert_eq!(
        drain(&mut sub).iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2],
        "b replayed exactly"
    );

    // `history_bytes` counts data bytes: 3 hold one event of 2.
    let hub = Hub::new(Limits {
        history_bytes: 3,
        ..limits()
    });
    let first = hub.publish(event(&["a"], "12"));
    hub.publish(event(&["a"], "34"));
    let sub = hub
        .subscribe(filters(&["a"]), Some(&first.id), None)
        .unwrap();
    assert!(sub.resync.is_none(), "only the first event was dropped");
    let sub = hub.subscribe(filters(&["a"]), Some("x-1"), None).unwrap();
    assert_eq!(sub.resync.as_ref().unwrap().reason, RESYNC_UNKNOWN_ID);
}

#[test]
fn history_bytes_count_data_bytes() {
    // A body of line breaks counts its data bytes, not its `data:` lines.
    let body = "\n".repeat(100);
    let hub = Hub::new(Limits {
        history_bytes: 250,
        ..limits()
    });
    let ids: Vec<_> = (0..9)
        .map(|_| hub.publish(event(&["a"], &body)).id)
        .collect();
    let info = &hub.topics(1)[0];
    assert_eq!(info.history, 2, "two 100-byte events fit in 250 bytes");
    assert_eq!(info.history_bytes, 200);
    let mut sub = hub.subscribe(filters(&["a"]), Some(&ids[6]), None).unwrap();
    assert!(sub.resync.is_none(), "the last two are kept whole");
    let kept = drain(&mut sub);
    assert_eq!(
        kept.iter().map(|e| e.data_len).collect::<Vec<_>>(),
        [100; 2]
    );
    // What a shared broker counts for the same event.
    assert!(kept.iter().all(|e| Event::counted_len(&body) == e.data_len));
    let sub = hub.subscribe(filters(&["a"]), Some(&ids[5]), None).unwrap();
    assert_eq!(sub.resync.as_ref().unwrap().reason, RESYNC_TRIMMED);
}

#[test]
fn idle_topics_are_collected_and_replay_across_them_resyncs() {
    let hub = Hub::new(Limits {
        history_ttl: Duration::from_millis(1),
        ..limits()
    });
    let first = hub.publish(event(&["a"], "1"));
    hub.publish(event(&["a"], "2"));
    assert_eq!(hub.topic_count(), 1);
    hub.collect(Instant::now() + Duration::from_millis(5));
    assert_eq!(hub.topic_count(), 0, "no history, no subscribers");
    let sub = hub
        .subscribe(filters(&["a"]), Some(&first.id), None)
        .unwrap();
    assert_eq!(sub.resync.as_ref().map(|r| r.reason), Some(RESYNC_TRIMMED));
    drop(sub);
    assert_eq!(
        hub.topic_count(),
        0,
        "an unsubscribed empty topic is dropped at once"
    );
    assert_eq!(hub.subscriber_count(), 0);
}

#[test]
fn overflow_closes_only_the_slow_subscriber() {
    let hub = Hub::new(Limits {
        subscriber_queue: 2,
        ..limits()
    });
    let mut slow = hub.subscribe(filters(&["a"]), None, None).unwrap();
    let mut fast = hub.subscribe(filters(&["a"]), None, None).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..5 {
        hub.publish(event(&["a"], &i.to_string()));
        assert!(matches!(
            fast.poll_recv(&mut cx),
            Poll::Ready(Recv::Event(_))
        ));
    }
    assert!(matches!(
        slow.poll_recv(&mut cx),
        Poll::Ready(Recv::Closed(Close::Slow))
    ));
    assert!(drain(&mut fast).is_empty());
}

#[test]
fn a_queue_over_its_bytes_is_cut_and_counted_once() {
    let hub = Hub::new(Limits {
        subscriber_queue_bytes: 3000,
        ..limits()
    });
    let mut slow = hub.subscribe(filters(&["a"]), None, None).unwrap();
    let mut fast = hub.subscribe(filters(&["a"]), None, None).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    // One event larger than the bound is queued alone, not cut.
    hub.publish(event(&["a"], &"x".repeat(5000)));
    assert_eq!(drain(&mut slow).len(), 1);
    assert_eq!(drain(&mut fast).len(), 1);
    // Three of about 1 KiB overflow 3000 bytes: the third cuts the one not reading.
    for _ in 0..3 {
        hub.publish(event(&["a"], &"y".repeat(1000)));
        assert_eq!(drain(&mut fast).len(), 1);
    }
    assert!(matches!(
        slow.poll_recv(&mut cx),
        Poll::Ready(Recv::Closed(Close::Slow))
    ));
    hub.publish(event(&["a"], "later"));
    let text = hub.metrics().render(hub.subscriber_count());
    assert!(
        text.contains("hookcast_subscribers_dropped_total{reason=\"slow\"} 1\n"),
        "{text}"
    );
}

#[test]
fn capacity_and_shutdown_refuse_new_subscribers() {
    let hub = Hub::new(Limits {
        max_subscribers: 1,
        ..limits()
    });
    let mut sub = hub.subscribe(filters(&["a"]), None, None).unwrap();
    assert_eq!(
        hub.subscribe(filters(&["a"]), None, None).unwrap_err(),
        Refusal::Capacity
    );
    hub.publish(event(&["a"], "queued"));
    assert_eq!(hub.close_all(), 1);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        matches!(sub.poll_recv(&mut cx), Poll::Ready(Recv::Event(_))),
        "queued events come first"
    );
    assert!(matches!(
        sub.poll_recv(&mut cx),
        Poll::Ready(Recv::Closed(Close::Shutdown))
    ));
    drop(sub);
    assert_eq!(
        hub.subscribe(filters(&["a"]), None, None).unwrap_err(),
        Refusal::ShuttingDown
    );
}

#[test]
fn dedupe_returns_the_first_id() {
    let hub = Hub::new(limits());
    let key = || Some((Arc::from("route"), "k".to_string()));
    let first = hub.publish(NewEvent {
        dedupe: key(),
        ..event(&["a"], "1")
    });
    let again = hub.publish(NewEvent {
        dedupe: key(),
        ..event(&["a"], "2")
    });
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
}

/// Two topics in different shards, found by name.
fn two_shards() -> (String, String) {
    let a = "t0".to_string();
    let b = (1..)
        .map(|i| format!("t{i}"))
        .find(|b| state::shard_of(b) != state::shard_of(&a))
        .unwrap();
    (a, b)
}

/// Counts wake-ups.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_subscriber_across_shards_waits_for_an_earlier_publish_under_way() {
    let hub = Hub::new(limits());
    let (a, b) = two_shards();
    let mut sub = hub.subscribe(filters(&[&a, &b]), None, None).unwrap();
    let mut single = hub.subscribe(filters(&[&b]), None, None).unwrap();
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);

    // A publish to `a` takes its seq and has not pushed yet, as if it were slow.
    let mut locked = hub.lock_shards(1 << state::shard_of(&a));
    let flight = hub.order.begin(locked.first);
    let earlier = flight.seq;
    // One to `b` runs meanwhile, in its own shard, and takes the next seq.
    let later = hub.publish(event(&[&b], "later"));
    assert_eq!(hub.epoch.parse(&later.id), Some(earlier + 1));
    assert!(
        matches!(single.poll_recv(&mut cx), Poll::Ready(Recv::Event(e)) if e.id == later.id),
        "a subscriber within one shard is not held back"
    );
    assert!(
        sub.poll_recv(&mut cx).is_pending(),
        "the later seq waits while an earlier one may still come"
    );
    let woken = wakes.0.load(Ordering::SeqCst);

    let id: Arc<str> = hub.epoch.format(earlier);
    let topics: Arc<[Arc<str>]> = Arc::from(vec![Arc::from(a.as_str())]);
    let tail = encode::event_tail(None, "earlier", id.len());
    let wake_later = hub.insert(&mut locked, earlier, id, topics, tail, 7, Instant::now());
    assert!(sub.poll_recv(&mut cx).is_pending(), "still under way");
    drop(flight);
    wake_later.later.into_iter().for_each(Waker::wake);
    drop(locked);
    assert!(
        wakes.0.load(Ordering::SeqCst) > woken,
        "the end of the earlier publish wakes the subscriber"
    );
    let later = hub.epoch.parse(&later.id).unwrap();
    assert_eq!(
        seqs(&drain(&mut sub)),
        vec![later - 1, later],
        "in id order"
    );
}

#[test]
fn only_subscribers_across_shards_are_merged() {
    let (a, b) = two_shards();
    let same = (1..)
        .map(|i| format!("u{i}"))
        .find(|t| state::shard_of(t) == state::shard_of(&a))
        .unwrap();
    let mask = |f: &[&str]| Hub::mask_of_filters(&filters(f)).count_ones();
    assert_eq!(mask(&[&a, &same]), 1);
    assert_eq!(mask(&[&a, &b]), 2);
    assert_eq!(
        mask(&["t0.*"]),
        SHARDS as u32,
        "a pattern spans every shard"
    );
    // tests/hub_order.rs relies on its topics spreading over the shards.
    let spread: std::collections::HashSet<usize> = (0..32)
        .map(|i| state::shard_of(&format!("s.t{i}")))
        .collect();
    assert!(spread.len() >= SHARDS / 2, "{spread:?}");
    // benches/hub.rs publishes from two threads to these, expecting two shards.
    assert_ne!(state::shard_of("bench.t0"), state::shard_of("bench.t1"));
}

mod index {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::topic::Pattern;

    /// Topics and patterns over a small alphabet, so that they collide often.
    fn segment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "c"])
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 1..5).prop_map(|s| s.join("."))
    }

    fn pattern() -> impl Strategy<Value = Pattern> {
        let seg = prop::sample::select(vec!["a", "b", "*"]);
        (prop::collection::vec(seg, 1..5), any::<bool>()).prop_map(|(mut segs, rest)| {
            if rest {
                segs.push(">");
            }
            Pattern::parse(&segs.join(".")).unwrap()
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Subscribe(u64, Pattern),
        Unsubscribe(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            3 => (0u64..6, pattern()).prop_map(|(id, p)| Op::Subscribe(id, p)),
            1 => any::<usize>().prop_map(Op::Unsubscribe),
        ];
        prop::collection::vec(op, 0..60)
    }

    proptest! {
        /// The index finds exactly the patterns a scan of every pattern finds,
        /// each once, with the same subscribers, after any subscribes and unsubscribes.
        #[test]
        fn index_agrees_with_a_scan(ops in ops(), topics in prop::collection::vec(topic(), 1..20)) {
            let mut index = patterns::Patterns::default();
            let mut naive: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
            let mut live: Vec<(u64, Pattern)> = Vec::new();
            for op in ops {
                match op {
                    Op::Subscribe(id, p) => {
                        if live.contains(&(id, p.clone())) {
                            continue;
                        }
                        index.insert(&p, id, Arc::new(Inbox::new(1, 1 << 20, None, false)));
                        naive.entry(p.as_str().to_owned()).or_default().insert(id);
                        live.push((id, p));
                    }
                    Op::Unsubscribe(i) if !live.is_empty() => {
                        let (id, p) = live.swap_remove(i % live.len());
                        index.remove(&p, id);
                        let set = naive.get_mut(p.as_str()).unwrap();
                        set.remove(&id);
                        if set.is_empty() {
                            naive.remove(p.as_str());
                        }
                    }
                    Op::Unsubscribe(_) => {}
                }
                prop_assert_eq!(index.len(), naive.len());
            }
            for t in &topics {
                let mut found = Vec::new();
                index.matching(t, |subs| {
                    found.push((subs.pattern.as_str().to_owned(), subs.inboxes.keys().copied().collect::<BTreeSet<_>>()));
                });
                found.sort();
                let expected: Vec<_> = naive
                    .iter()
                    .filter(|(p, _)| Pattern::parse(p).unwrap().matches(t))
                    .map(|(p, ids)| (p.clone(), ids.clone()))
                    .collect();
                prop_assert_eq!(found, expected, "topic {}", t);
            }
            for (id, p) in live.drain(..) {
                index.remove(&p, id);
            }
            prop_assert_eq!(index.len(), 0);
            prop_assert!(index.is_pruned(), "every emptied node is removed");
        }

        /// Through the hub: each subscriber receives exactly the events one of its
        /// filters matches, once each, in publish order.
        #[test]
        fn subscribers_receive_what_their_filters_match(
            subs in prop::collection::vec(prop::collection::vec(pattern(), 1..4), 1..8),
            published in prop::collection::vec(prop::collection::btree_set(topic(), 1..4), 1..30),
        ) {
            let hub = Hub::new(limits());
            let mut open: Vec<_> = subs
                .iter()
                .map(|ps| {
                    let fs = ps.iter().cloned().map(Filter::Pattern).collect();
                    hub.subscribe(fs, None, None).unwrap()
                })
                .collect();
            let mut seqs_published = Vec::new();
            for topics in &published {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                let p = hub.publish(event(&names, "x"));
                seqs_published.push((hub.epoch.parse(&p.id).unwrap(), topics.clone()));
            }
            for (sub, ps) in open.iter_mut().zip(&subs) {
                let expected: Vec<u64> = seqs_published
                    .iter()
                    .filter(|(_, ts)| ts.iter().any(|t| ps.iter().any(|p| p.matches(t))))
                    .map(|(seq, _)| *seq)
                    .collect();
                prop_assert_eq!(seqs(&drain(sub)), expected);
            }
        }
    }

    #[test]
    fn a_deep_topic_walks_the_index_off_the_stack() {
        let mut index = patterns::Patterns::default();
        let deep: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let pattern = Pattern::parse(&format!("{}.*.>", deep[..20].join("."))).unwrap();
        index.insert(&pattern, 1, Arc::new(Inbox::new(1, 1 << 20, None, false)));
        let mut hits = 0;
        index.matching(&deep.join("."), |_| hits += 1);
        assert_eq!(hits, 1);
        index.matching(&deep[..21].join("."), |_| hits += 1);
        assert_eq!(hits, 1, "`>` needs one more segment");
    }
}

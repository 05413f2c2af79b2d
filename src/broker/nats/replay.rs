//! A subscription on JetStream: joined at the reader's position, with what the
//! client missed read from the stream and bounded per topic as the hub would
//! have kept it (README "NATS JetStream").

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream;
use tokio::sync::Notify;

use super::JetStream;
use super::message::{Stored, epoch_of, id};
use crate::broker::Unavailable;
use crate::broker::id::{parse_stream_id as parse_id, skip_through};
use crate::broker::resume::{self, Opened};
use crate::hub::{Event, Hub, Refusal, Subscription};
use crate::topic::Filter;

impl JetStream {
    /// Subscribes at this replica's reader position, then reads what the client
    /// missed from the stream up to that position (see [`resume`]).
    pub(in crate::broker) async fn subscribe(
        &self,
        hub: &Arc<Hub>,
        filters: Vec<Filter>,
        last_event_id: Option<&str>,
        on_overflow: Option<Arc<Notify>>,
    ) -> Result<Subscription, Refusal> {
        let opened = resume::open(hub, filters, last_event_id, on_overflow)?;
        let Some(js) = self.js.get() else {
            return Err(Refusal::BrokerUnavailable);
        };
        let mut r = match opened {
            Opened::Live(sub) => return Ok(sub),
            Opened::Resuming(r) => r,
        };
        let upto = parse_id(&r.position).unwrap_or((0, 0));
        let Some(from) = parse_id(&r.last).filter(|f| f.0 == upto.0) else {
            return Ok(r.unknown());
        };
        let unavailable = |_| Refusal::BrokerUnavailable;
        let stream = self
            .within("replay", js.get_stream(&self.config.stream))
            .await
            .map_err(unavailable)?;
        let info = stream.cached_info();
        if epoch_of(info) != Some(from.0) || from.1 > info.state.last_sequence {
            return Ok(r.unknown());
        }
        if from >= upto {
            // Another replica served the client further than this one's reader has
            // read; what it already has must not come again.
            if from > upto {
                skip_through(&mut r.sub, from);
            }
            return Ok(r.sub);
        }
        if info.state.first_sequence > from.1 + 1 {
            // Dropped by age or the stream's bounds: which topics is not known.
            return Ok(r.trimmed());
        }
        let events = self
            .scan(&stream, from.1 + 1, upto.1)
            .await
            .map_err(unavailable)?;
        let (events, lost) = window(
            r.sub.filters(),
            events,
            self.history,
            self.history_bytes,
            upto.0,
        );
        Ok(r.replay(events.into(), lost))
    }

    /// Every accepted message from `first` through `last`, in order.
    async fn scan(
        &self,
        stream: &stream::Stream,
        first: u64,
        last: u64,
    ) -> Result<Vec<Stored>, Unavailable> {
        let mut out = Vec::new();
        let policy = DeliverPolicy::ByStartSequence {
            start_sequence: first,
        };
        self.read_from(
            "replay",
            stream,
            policy,
            "",
            last - first + 1,
            |seq, m, at| {
                if seq > last {
                    return false;
                }
                out.extend(self.stored(seq, m, at));
                seq < last
            },
        )
        .await?;
        Ok(out)
    }
}

/// Applies the per-topic history bounds to the events after a client's last id,
/// as the in-memory hub keeps them: a topic with more than `history` events (or
/// `history_bytes`) after the id lost some, so its filter is resynced instead.
fn window(
    filters: &[Filter],
    events: Vec<Stored>,
    history: usize,
    history_bytes: u64,
    epoch: u64,
) -> (Vec<Arc<Event>>, Vec<String>) {
    let mut per_topic: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for e in &events {
        // Counted as the hub counts it: the encoded frame.
        let frame = Event::counted_len(&id(epoch, e.seq), e.event.as_deref(), &e.data) as u64;
        for t in e.topics.iter() {
            let n = per_topic.entry(t).or_default();
            n.0 += 1;
            n.1 += frame;
        }
    }
    let lost_topic = |t: &str| {
        per_topic
            .get(t)
            .is_some_and(|(n, bytes)| *n > history || *bytes > history_bytes)
    };
    let mut lost = Vec::new();
    let mut keep = vec![false; events.len()];
    for f in filters {
        let matches = |t: &str| f.matches(t);
        let trimmed = per_topic.keys().any(|t| matches(t) && lost_topic(t));
        if trimmed {
            lost.push(f.as_str().to_owned());
            continue;
        }
        for (i, e) in events.iter().enumerate() {
            keep[i] |= e.topics.iter().any(|t| matches(t));
        }
    }
    let replay = events
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(e, _)| {
            Arc::new(Event::replayed(
                Arc::from(id(epoch, e.seq)),
                e.topics,
                e.event.as_deref(),
                &e.data,
            ))
        })
        .collect();
    (replay, lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, topics: &[&str], data: &str) -> Stored {
        Stored {
            seq,
            topics: topics.iter().map(|t| Arc::from(*t)).collect(),
            event: None,
            data: data.to_owned(),
        }
    }

    fn filters(list: &[&str]) -> Vec<Filter> {
        list.iter().map(|f| Filter::parse(f).unwrap()).collect()
    }

    #[test]
    fn replay_keeps_what_the_hub_would_have_kept() {
        let events = || {
            vec![
                ev(3, &["a"], "1"),
                ev(4, &["a", "b"], "22"),
                ev(5, &["c"], "333"),
                ev(6, &["a"], "4444"),
            ]
        };
        let ids = |r: &[Arc<Event>]| r.iter().map(|e| e.id.to_string()).collect::<Vec<_>>();
        // Within history: exact, an event on two followed topics once.
        let (r, lost) = window(&filters(&["a", "b"]), events(), 3, 100, 9);
        assert_eq!(ids(&r), ["9-3", "9-4", "9-6"]);
        assert!(lost.is_empty());
        // history 2: topic a had 3 events after the id, so one was dropped.
        let (r, lost) = window(&filters(&["a", "b"]), events(), 2, 100, 9);
        assert_eq!(ids(&r), ["9-4"]);
        assert_eq!(lost, ["a"]);
        // Frames of `id: 9-N\ndata: <data>\n\n`: 17, 18, 19 and 20 bytes.
        // history_bytes 40: a's 17+18+20 bytes are over it; b's 18 and c's 19 are not.
        let (r, lost) = window(&filters(&["*"]), events(), 10, 40, 9);
        assert!(r.is_empty());
        assert_eq!(lost, ["*"]);
        let (r, lost) = window(&filters(&["c", "b"]), events(), 10, 40, 9);
        assert_eq!(ids(&r), ["9-4", "9-5"]);
        assert!(lost.is_empty());
    }
}

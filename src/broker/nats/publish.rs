//! A publish to JetStream: headers, the deadline on this host's clock, the
//! ack, and the look-up that settles a publish whose ack was lost.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::datetime::DateTime;
use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::message::PublishMessage as Publish;
use bytes::Bytes;

use super::message::{Got, Stored, id, stamp_ms, unix_ms};
use super::{BACKOFF_MIN, CLOCK_MARGIN, DEADLINE, EVENT, JetStream, MSG_ID, PUBLISH, TOPICS};
use crate::broker::Unavailable;
use crate::hub::{NewEvent, Published};

enum Ack {
    New(u64),
    Duplicate(u64),
}

impl JetStream {
    pub(in crate::broker) async fn publish(&self, new: NewEvent) -> Result<Published, Unavailable> {
        let (Some(js), Some(epoch)) = (self.js.get(), self.epoch()) else {
            return Err(Unavailable::NotStored);
        };
        let mut msg_id = new
            .dedupe
            .as_ref()
            .map(|(route, key)| format!("{}:{route}:{key}", route.len()));
        // A retried delivery whose first attempt was refused (stored too late, so
        // ignored) is stored again under a key naming the refused copy.
        for _ in 0..4 {
            let seq = self.store(js, &new, msg_id.as_deref()).await?;
            let Stored {
                seq: first, topics, ..
            } = match seq {
                Ack::New(seq) => {
                    return Ok(Published {
                        id: Arc::from(id(epoch, seq)),
                        topics: new.topics,
                        duplicate: false,
                    });
                }
                Ack::Duplicate(seq) => match self.get(js, seq).await? {
                    Some(Got::Accepted(s)) => s,
                    Some(Got::Refused) => {
                        msg_id = msg_id.map(|m| format!("{m}~{seq}"));
                        continue;
                    }
                    // Trimmed since: still a duplicate, of an event no longer kept.
                    None => Stored {
                        seq,
                        topics: new.topics.iter().map(|t| Arc::from(t.as_str())).collect(),
                        event: None,
                        data: String::new(),
                    },
                },
            };
            return Ok(Published {
                id: Arc::from(id(epoch, first)),
                topics: topics.iter().map(|t| t.to_string()).collect(),
                duplicate: true,
            });
        }
        Err(Unavailable::NotStored)
    }

    /// Publishes one message and waits for JetStream's ack, under the deadline
    /// scheme of [`CLOCK_MARGIN`].
    async fn store(
        &self,
        js: &Context,
        new: &NewEvent,
        msg_id: Option<&str>,
    ) -> Result<Ack, Unavailable> {
        let timeout = self.config.timeout;
        let start = tokio::time::Instant::now();
        let sent = unix_ms(SystemTime::now());
        let deadline = sent + (timeout + CLOCK_MARGIN).as_millis() as u64;
        let token = format!("{:032x}", fastrand::u128(..));
        let mut headers = HeaderMap::new();
        headers.insert(DEADLINE, deadline.to_string());
        headers.insert(PUBLISH, token.as_str());
        if new.topics.len() > 1 {
            headers.insert(TOPICS, new.topics.join(" "));
        }
        if let Some(e) = &new.event {
            headers.insert(EVENT, e.as_str());
        }
        if let Some(m) = msg_id {
            headers.insert(MSG_ID, m);
        }
        let publish = Publish::build()
            .payload(Bytes::from(new.data.clone()))
            .headers(headers);
        let subject = self.subject(new.topics.first().map_or("", String::as_str));
        let mut ack = std::pin::pin!(async {
            let ack = js.send_publish(subject.clone(), publish).await?;
            ack.await.map_err(async_nats::Error::from)
        });
        let ack = match tokio::time::timeout_at(start + timeout, &mut ack).await {
            Ok(ack) => Some(ack),
            // Late: wait out the margin; an ack now may be stamped either side.
            Err(_) => tokio::time::timeout_at(start + timeout + 2 * CLOCK_MARGIN, &mut ack)
                .await
                .ok(),
        };
        let late = start.elapsed() > timeout;
        let ack = match ack {
            Some(Ok(ack)) => ack,
            failed => {
                // Not knowing is not "not stored": the message may have reached
                // JetStream while its ack was lost. Past the margin anything stored
                // from now on is ignored, so a look settles it.
                match failed {
                    Some(Err(e)) => tracing::warn!(error = %e, "nats publish failed"),
                    _ => tracing::warn!(
                        timeout_ms = timeout.as_millis() as u64,
                        "nats publish not acknowledged in time; if stored later it is ignored"
                    ),
                }
                self.reconnect(js);
                tokio::time::sleep_until(start + timeout + 2 * CLOCK_MARGIN).await;
                // The connection may be coming back just now: ask again for a while.
                let give_up =
                    start + timeout + 2 * CLOCK_MARGIN + (2 * timeout).max(Duration::from_secs(2));
                loop {
                    match self.find(js, &subject, sent, &token).await {
                        Ok(Some(seq)) => return Ok(Ack::New(seq)),
                        Ok(None) => return Err(Unavailable::NotStored),
                        Err(_) if tokio::time::Instant::now() < give_up => {
                            tokio::time::sleep(BACKOFF_MIN).await;
                        }
                        Err(_) => {
                            tracing::error!(
                                "a nats publish answered 503 could not be looked up; if JetStream stored it in time it will be delivered"
                            );
                            return Err(Unavailable::Unknown);
                        }
                    }
                }
            }
        };
        if ack.duplicate {
            return Ok(Ack::Duplicate(ack.sequence));
        }
        if late && !matches!(self.get(js, ack.sequence).await?, Some(Got::Accepted(_))) {
            return Err(Unavailable::NotStored);
        }
        Ok(Ack::New(ack.sequence))
    }

    /// The sequence of the message this replica published with `token`, if
    /// JetStream stored it before its deadline: it looks through `subject` from
    /// `sent` (unix ms) on.
    async fn find(
        &self,
        js: &Context,
        subject: &str,
        sent: u64,
        token: &str,
    ) -> Result<Option<u64>, Unavailable> {
        let since = sent.saturating_sub(CLOCK_MARGIN.as_millis() as u64);
        let start_time = DateTime::from_unix_timestamp_nanos(i128::from(since) * 1_000_000)
            .map_err(|_| Unavailable::NotStored)?;
        let stream = self
            .within("find", js.get_stream_no_info(&self.config.stream))
            .await?;
        // Stored after the deadline and the margin: nothing of ours from there on counts.
        let past = sent + (self.config.timeout + 2 * CLOCK_MARGIN).as_millis() as u64;
        let mut found = None;
        let policy = DeliverPolicy::ByStartTime { start_time };
        self.read_from("find", &stream, policy, subject, u64::MAX, |seq, m, at| {
            if stamp_ms(at) > past {
                return false;
            }
            let ours = m
                .headers
                .as_ref()
                .and_then(|h| h.get(PUBLISH))
                .is_some_and(|t| t.as_str() == token);
            if ours {
                let accepted = self.stored(seq, m, at).is_some();
                found = accepted.then_some(seq);
            }
            !ours
        })
        .await?;
        Ok(found)
    }
}

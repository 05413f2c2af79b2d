//! A message in the stream as hookcast stores and reads it: its headers, the
//! deadline that makes a late one ignored, the epoch in event ids, and reading
//! a range of messages with a short-lived consumer.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::datetime::DateTime;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{self, RawMessageErrorKind};
use async_nats::jetstream::{self, Context};
use futures_util::StreamExt;

use super::{CLOCK_MARGIN, CONSUMER_IDLE, DEADLINE, EVENT, JetStream, READ_COUNT, TOPICS};
use crate::broker::Unavailable;

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn stamp_ms(t: &DateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// An event as stored: what replay and live delivery both need.
pub(super) struct Stored {
    pub(super) seq: u64,
    pub(super) topics: Arc<[Arc<str>]>,
    pub(super) event: Option<String>,
    pub(super) data: String,
}

/// Reads a stored message; `None` for one stored after its publisher's deadline
/// (answered 503), which no reader may deliver.
pub(super) fn stored(
    prefix: &str,
    seq: u64,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
    stamp: &DateTime,
) -> Option<Stored> {
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    if let Some(deadline) = header(DEADLINE).and_then(|d| d.parse::<u64>().ok())
        && stamp_ms(stamp) > deadline
    {
        return None;
    }
    let topics: Arc<[Arc<str>]> = match header(TOPICS) {
        Some(list) => list
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(Arc::from)
            .collect(),
        None => {
            let topic = subject
                .strip_prefix(prefix)
                .and_then(|s| s.strip_prefix('.'))
                .unwrap_or(subject);
            Arc::from(vec![Arc::from(topic)])
        }
    };
    Some(Stored {
        seq,
        topics,
        event: header(EVENT).map(str::to_owned),
        data: String::from_utf8_lossy(payload).into_owned(),
    })
}

pub(super) const EPOCH_PREFIX: &str = "hookcast epoch ";

/// The epoch in a stream's description.
pub(super) fn epoch_of(info: &stream::Info) -> Option<u64> {
    let d = info.config.description.as_deref()?;
    d.strip_prefix(EPOCH_PREFIX)?
        .parse()
        .ok()
        .filter(|e| *e != 0)
}

pub(super) fn id(epoch: u64, seq: u64) -> String {
    format!("{epoch}-{seq}")
}

impl JetStream {
    pub(super) fn stored(&self, seq: u64, m: &jetstream::Message, at: &DateTime) -> Option<Stored> {
        stored(
            &self.config.subject_prefix,
            seq,
            &m.subject,
            m.headers.as_ref(),
            &m.payload,
            at,
        )
    }

    /// Reads up to `count` messages (of `subject`, or all when empty) from `policy`
    /// on with a short-lived consumer, handing each to `visit` (sequence, message,
    /// stored time) until it returns false or nothing more comes.
    pub(super) async fn read_from<I: Clone + Send + Sync + 'static>(
        &self,
        what: &'static str,
        stream: &stream::Stream<I>,
        policy: DeliverPolicy,
        subject: &str,
        count: u64,
        mut visit: impl FnMut(u64, &jetstream::Message, &DateTime) -> bool,
    ) -> Result<(), Unavailable> {
        let consumer = self
            .within(
                what,
                stream.create_consumer(pull::Config {
                    deliver_policy: policy,
                    filter_subject: subject.to_owned(),
                    ack_policy: AckPolicy::None,
                    inactive_threshold: CONSUMER_IDLE,
                    memory_storage: true,
                    ..Default::default()
                }),
            )
            .await?;
        let name = consumer.cached_info().name.clone();
        let result = async {
            let mut left = count;
            while left > 0 {
                // Asking for no more than is wanted ends the batch as soon as it is read.
                let want = usize::try_from(left).map_or(READ_COUNT, |n| n.min(READ_COUNT));
                let batch = consumer
                    .batch()
                    .max_messages(want)
                    .expires(self.config.timeout)
                    .messages();
                let mut batch = self.within(what, batch).await?;
                let mut got = 0;
                // The batch itself ends after `expires`; waiting longer than that for
                // its next message means NATS went silent.
                let silent = self.config.timeout + CLOCK_MARGIN;
                while let Some(m) = tokio::time::timeout(silent, batch.next())
                    .await
                    .map_err(|_| Unavailable::NotStored)?
                {
                    let m = m.map_err(|e| {
                        tracing::warn!(what, error = %e, "nats read failed");
                        Unavailable::NotStored
                    })?;
                    let Ok(info) = m.info() else { continue };
                    got += 1;
                    if !visit(info.stream_sequence, &m, &info.published) {
                        return Ok(());
                    }
                }
                if got == 0 {
                    break;
                }
                left = left.saturating_sub(got);
            }
            Ok(())
        }
        .await;
        let stream = stream.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        result
    }

    /// One stored message by sequence; `None` when it is no longer kept.
    pub(super) async fn get(&self, js: &Context, seq: u64) -> Result<Option<Got>, Unavailable> {
        let stream = self
            .within("get", js.get_stream_no_info(&self.config.stream))
            .await?;
        match tokio::time::timeout(self.config.timeout, stream.get_raw_message(seq)).await {
            Ok(Ok(m)) => Ok(Some(
                match stored(
                    &self.config.subject_prefix,
                    m.sequence,
                    &m.subject,
                    Some(&m.headers),
                    &m.payload,
                    &m.time,
                ) {
                    Some(s) => Got::Accepted(s),
                    None => Got::Refused,
                },
            )),
            Ok(Err(e)) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "nats get failed");
                Err(Unavailable::NotStored)
            }
            Err(_) => Err(Unavailable::NotStored),
        }
    }
}

/// A stored message looked up by sequence.
pub(super) enum Got {
    Accepted(Stored),
    Refused,
}

//! This replica's reader of the stream: an ephemeral pull consumer from the
//! last sequence read, every message handed to the hub, and the way back after
//! an outage.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::message::{epoch_of, id, stored};
use super::stream::{Failed, connect, ensure_stream};
use super::{
    BACKOFF_MAX, BACKOFF_MIN, CONSUMER_IDLE, JetStream, PULL_EXPIRES, PULL_HEARTBEAT, READ_COUNT,
};
use crate::broker::reader::Backoff;
use crate::hub::{self, Hub};

/// This replica's reader: follows the stream and hands each event to the hub.
/// Reconnects with backoff and resumes after the last sequence it read.
pub(super) async fn read(shared: Weak<JetStream>, hub: Arc<Hub>) {
    let mut backoff = Backoff::new("nats", BACKOFF_MIN, BACKOFF_MAX);
    // (epoch, sequence) read through.
    let mut position: Option<(u64, u64)> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let result = follow(s, &hub, &mut position, &mut backoff).await;
        let Some(s) = shared.upgrade() else { return };
        s.following.store(false, Ordering::Relaxed);
        drop(s);
        if let Err(e) = result {
            backoff.failed(&e);
        }
        backoff.wait().await;
    }
}

/// Connects, makes sure of the stream, and follows it from `position` until
/// something fails: the error says what.
async fn follow(
    s: Arc<JetStream>,
    hub: &Hub,
    position: &mut Option<(u64, u64)>,
    backoff: &mut Backoff,
) -> Result<(), String> {
    if s.js.get().is_none() {
        let js = connect(&s.config).await?;
        let _ = s.js.set(js);
    }
    let js = s.js.get().expect("set above").clone();
    let info = match ensure_stream(&s, &js).await {
        Ok(info) => info,
        Err(Failed::Fatal(fatal)) => {
            tracing::error!("{fatal}");
            *hub::lock(&s.fatal) = Some(fatal);
            s.fatal_set.notify_waiters();
            std::future::pending::<()>().await;
            unreachable!()
        }
        Err(Failed::Retry(why)) => return Err(why),
    };
    let epoch = epoch_of(&info).expect("ensure_stream checked it");
    s.epoch.store(epoch, Ordering::Relaxed);
    let start = resume_point(*position, epoch, &info, hub);
    *position = Some((epoch, start));
    hub.set_position(Arc::from(id(epoch, start)));
    let stream = js
        .get_stream_no_info(&s.config.stream)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = tokio::time::timeout(
        s.config.timeout,
        stream.create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start + 1,
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: CONSUMER_IDLE,
            memory_storage: true,
            ..Default::default()
        }),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(READ_COUNT)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    s.following.store(true, Ordering::Relaxed);
    // Finding the stream was an answer within broker.timeout.
    s.health.answered();
    backoff.reached();
    let prefix = s.config.subject_prefix.clone();
    let restart = s.restart.clone();
    drop(s);
    deliver(&mut messages, &restart, &prefix, epoch, position, hub).await
}

/// The sequence to follow the stream after: the newest one at first start,
/// else the last one read. When messages after it were dropped meanwhile,
/// local subscribers are told to reconnect, so they replay what is left.
fn resume_point(position: Option<(u64, u64)>, epoch: u64, info: &stream::Info, hub: &Hub) -> u64 {
    match position {
        None => info.state.last_sequence,
        Some((e, seq)) if e == epoch => {
            if info.state.first_sequence > seq + 1 {
                let n = hub.disconnect_all();
                tracing::warn!(
                    subscribers = n,
                    "the nats stream dropped events past this replica's position; subscribers told to reconnect and replay"
                );
            }
            seq
        }
        Some(_) => {
            tracing::warn!(
                "the nats stream was re-created (its store lost); earlier event ids are unknown now"
            );
            0
        }
    }
}

/// Hands each message to the hub, in sequence order, until the consumer fails
/// or the stream is re-created (`restart`).
async fn deliver(
    messages: &mut pull::Stream,
    restart: &Notify,
    prefix: &str,
    epoch: u64,
    position: &mut Option<(u64, u64)>,
    hub: &Hub,
) -> Result<(), String> {
    let mut restart = std::pin::pin!(restart.notified());
    loop {
        let m = tokio::select! {
            m = messages.next() => m,
            () = &mut restart => return Err("the stream changed".to_owned()),
        };
        let Some(m) = m else {
            return Err("the consumer ended".to_owned());
        };
        let m = m.map_err(|e| e.to_string())?;
        let Ok(info) = m.info() else { continue };
        let seq = info.stream_sequence;
        let Some((_, at)) = *position else { continue };
        if seq <= at {
            continue;
        }
        if seq > at + 1 {
            let n = hub.disconnect_all();
            tracing::warn!(
                subscribers = n,
                "nats stream events were removed before this replica read them; subscribers told to reconnect and replay"
            );
        }
        if let Some(e) = stored(
            prefix,
            seq,
            &m.subject,
            m.headers.as_ref(),
            &m.payload,
            &info.published,
        ) {
            hub.deliver(
                Arc::from(id(epoch, seq)),
                e.topics,
                e.event.as_deref(),
                &e.data,
            );
        }
        *position = Some((epoch, seq));
    }
}

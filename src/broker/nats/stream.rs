//! The stream itself: made with hookcast's settings, or found and compared
//! with them; and the connection to the servers.

use std::time::SystemTime;

use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};

use super::message::{EPOCH_PREFIX, epoch_of, unix_ms};
use super::{BACKOFF_MAX, BACKOFF_MIN, CLOCK_MARGIN, JetStream, RECONNECT_EVERY};
use crate::config;

impl JetStream {
    /// The stream as hookcast wants it.
    fn wanted(&self) -> stream::Config {
        stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            max_messages: i64::try_from(self.config.max_msgs).unwrap_or(i64::MAX),
            max_bytes: self
                .config
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            max_messages_per_subject: -1,
            max_age: self.history_ttl,
            duplicate_window: self.dedupe_window,
            num_replicas: self.config.replicas,
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            ..Default::default()
        }
    }
}

/// Why the stream could not be had: try again later, or never.
pub(super) enum Failed {
    Retry(String),
    Fatal(String),
}

/// Makes the stream exist with hookcast's settings.
pub(super) async fn ensure_stream(
    shared: &JetStream,
    js: &Context,
) -> Result<stream::Info, Failed> {
    let wanted = shared.wanted();
    let timeout = shared.config.timeout;
    let timed_out = || Failed::Retry(format!("no answer within {timeout:?}"));
    let found = tokio::time::timeout(timeout, js.get_stream(&wanted.name)).await;
    let info = match found {
        Err(_) => return Err(timed_out()),
        Ok(Ok(s)) => s.cached_info().clone(),
        Ok(Err(e))
            if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            let create = stream::Config {
                description: Some(format!(
                    "{EPOCH_PREFIX}{}",
                    unix_ms(SystemTime::now()).max(1)
                )),
                ..wanted.clone()
            };
            match tokio::time::timeout(timeout, js.create_stream(create)).await {
                Ok(Ok(s)) => {
                    tracing::info!(stream = %wanted.name, "nats stream created");
                    s.cached_info().clone()
                }
                // Another replica may have just created it: the next round finds it.
                Ok(Err(e)) => {
                    return Err(Failed::Retry(format!(
                        "creating the stream `{}` failed: {e}",
                        wanted.name
                    )));
                }
                Err(_) => return Err(timed_out()),
            }
        }
        Ok(Err(e)) => return Err(Failed::Retry(e.to_string())),
    };
    if epoch_of(&info).is_none() {
        return Err(Failed::Fatal(format!(
            "the nats stream `{}` was not made by hookcast: its description lacks `{EPOCH_PREFIX}<number>`, which event ids start with; let hookcast create the stream, or set that description (any number from 1)",
            wanted.name
        )));
    }
    let differs = differences(&info.config, &wanted);
    if !differs.is_empty() {
        return Err(Failed::Fatal(format!(
            "the nats stream `{}` exists with other settings ({}); hookcast does not change a stream: edit it (nats stream edit) or hookcast's config to match",
            wanted.name,
            differs.join("; ")
        )));
    }
    Ok(info)
}

/// The stream settings hookcast checks, each with the key it comes from.
const SETTINGS: [&str; 10] = [
    "subjects",
    "max_msgs (broker.max_msgs)",
    "max_bytes (broker.max_bytes)",
    "max_msgs_per_subject",
    "max_age (sse.history_ttl)",
    "duplicate_window (dedupe.window)",
    "replicas (broker.replicas)",
    "storage",
    "retention",
    "discard",
];

/// A stream's values of [`SETTINGS`], as they are compared and reported.
fn settings(c: &stream::Config) -> [String; 10] {
    let unlimited = |n: i64| if n <= 0 { -1 } else { n }.to_string();
    [
        format!("{:?}", c.subjects),
        unlimited(c.max_messages),
        unlimited(c.max_bytes),
        unlimited(c.max_messages_per_subject),
        format!("{:?}", c.max_age),
        format!("{:?}", c.duplicate_window),
        c.num_replicas.max(1).to_string(),
        format!("{:?}", c.storage),
        format!("{:?}", c.retention),
        format!("{:?}", c.discard),
    ]
}

/// What an existing stream's settings differ in from what hookcast wants.
fn differences(have: &stream::Config, want: &stream::Config) -> Vec<String> {
    SETTINGS
        .iter()
        .zip(settings(have).into_iter().zip(settings(want)))
        .filter(|(_, (h, w))| h != w)
        .map(|(what, (h, w))| format!("{what} is {h}, hookcast wants {w}"))
        .collect()
}

pub(super) async fn connect(c: &config::NatsBroker) -> Result<Context, String> {
    let addrs = config::nats_servers(&c.url).expect("broker.url was checked");
    let options = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(c.timeout)
        .request_timeout(Some(c.timeout))
        .ping_interval(RECONNECT_EVERY * 5)
        .reconnect_delay_callback(|attempt| {
            (BACKOFF_MIN * 2u32.saturating_pow(attempt.min(8) as u32)).min(BACKOFF_MAX)
        });
    // With retry_on_initial_connect the client is returned at once and connects
    // (and reconnects) in the background.
    let client = options.connect(addrs).await.map_err(|e| e.to_string())?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(c.timeout + 2 * CLOCK_MARGIN)
        .build(client))
}

//! How every shared broker kind opens a subscription: join the hub at its
//! reader's position, then replay from the broker what the client missed up to
//! that position. Live events after it are already queued, so the two join
//! with no gap and no duplicate.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::hub::{Event, Hub, RESYNC_TRIMMED, RESYNC_UNKNOWN_ID, Refusal, Resync, Subscription};
use crate::topic::Filter;

/// A subscription just opened at the reader's position.
pub(super) enum Opened {
    /// No last event id: nothing to replay.
    Live(Subscription),
    Resuming(Resuming),
}

/// A subscription to resume after the client's last event id.
pub(super) struct Resuming {
    pub(super) sub: Subscription,
    /// The id of the last event this replica's reader delivered.
    pub(super) position: Arc<str>,
    pub(super) last: String,
}

/// Subscribes at the reader's position. Until the reader first reached the
/// broker this replica delivers nothing, so the client is told to come back
/// rather than wait on a silent stream.
pub(super) fn open(
    hub: &Arc<Hub>,
    filters: Vec<Filter>,
    last_event_id: Option<&str>,
    on_overflow: Option<Arc<Notify>>,
) -> Result<Opened, Refusal> {
    let (sub, position) = hub.subscribe_at_position(filters, on_overflow)?;
    let Some(position) = position else {
        return Err(Refusal::BrokerUnavailable);
    };
    Ok(match last_event_id.filter(|l| !l.is_empty()) {
        None => Opened::Live(sub),
        Some(last) => Opened::Resuming(Resuming {
            sub,
            position,
            last: last.to_owned(),
        }),
    })
}

impl Resuming {
    /// The last id is not one of the broker's (malformed, or from a data set
    /// that was lost): every filter is resynced.
    pub(super) fn unknown(self) -> Subscription {
        self.resync_all(RESYNC_UNKNOWN_ID)
    }

    /// Events dropped after the id on topics that cannot be told: every filter
    /// is resynced.
    pub(super) fn trimmed(self) -> Subscription {
        self.resync_all(RESYNC_TRIMMED)
    }

    /// Replays `events`; the filters in `lost` lost some and are resynced.
    pub(super) fn replay(self, events: VecDeque<Arc<Event>>, lost: Vec<String>) -> Subscription {
        let Resuming { mut sub, last, .. } = self;
        sub.replay = events;
        if !lost.is_empty() {
            sub.resync = Some(Box::new(resync(RESYNC_TRIMMED, last, lost)));
        }
        sub
    }

    fn resync_all(self, reason: &'static str) -> Subscription {
        let Resuming { mut sub, last, .. } = self;
        let all = sub
            .filters()
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect();
        sub.resync = Some(Box::new(resync(reason, last, all)));
        sub
    }
}

fn resync(reason: &'static str, last_event_id: String, filters: Vec<String>) -> Resync {
    Resync {
        reason,
        last_event_id,
        filters,
    }
}

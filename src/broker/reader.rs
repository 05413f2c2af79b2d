//! What the readers of every shared broker kind have in common: the
//! reconnection backoff, an outage logged once, and the tasks that stop with
//! the broker.

use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::health::{self, Ping};
use crate::hub::lock;

/// A reader's way back to its broker: waits that double from `min` to `max`,
/// with jitter, and one warning an outage.
#[derive(Debug)]
pub(super) struct Backoff {
    broker: &'static str,
    min: Duration,
    max: Duration,
    next: Duration,
    down_logged: bool,
}

impl Backoff {
    pub(super) fn new(broker: &'static str, min: Duration, max: Duration) -> Backoff {
        Backoff {
            broker,
            min,
            max,
            next: min,
            down_logged: false,
        }
    }

    /// The reader reached the broker: the next outage is logged, and retried
    /// from the shortest wait.
    pub(super) fn reached(&mut self) {
        tracing::info!(broker = self.broker, "broker reader connected");
        self.next = self.min;
        self.down_logged = false;
    }

    /// The reader lost the broker: the first failure of an outage is logged as
    /// a warning, the rest at debug level.
    pub(super) fn failed(&mut self, error: &dyn Display) {
        if !self.down_logged {
            tracing::warn!(broker = self.broker, %error, "broker not usable; webhooks get 503 until it is, retrying");
            self.down_logged = true;
        } else {
            tracing::debug!(broker = self.broker, %error, "broker still not usable");
        }
    }

    /// Waits before the next attempt, longer each time.
    pub(super) async fn wait(&mut self) {
        let jitter = Duration::from_millis(fastrand::u64(0..=self.next.as_millis() as u64 / 2));
        tokio::time::sleep(self.next + jitter).await;
        self.next = (self.next * 2).min(self.max);
    }
}

/// A broker's background tasks (its reader, its pinger): aborted together.
#[derive(Debug, Default)]
pub(super) struct Tasks(Mutex<Vec<AbortHandle>>);

impl Tasks {
    /// Runs `owner`'s reader, and its pinger (see [`health::keep_pinging`]),
    /// until [`Tasks::stop`].
    pub(super) fn run<T: Ping>(
        &self,
        owner: &Arc<T>,
        timeout: Duration,
        reader: impl Future<Output = ()> + Send + 'static,
    ) {
        let reader = tokio::spawn(reader);
        let pinger = tokio::spawn(health::keep_pinging(Arc::downgrade(owner), timeout));
        lock(&self.0).extend([reader.abort_handle(), pinger.abort_handle()]);
    }

    pub(super) fn stop(&self) {
        for task in lock(&self.0).drain(..) {
            task.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        // A reader may wait on its broker indefinitely; it must not outlive the broker.
        self.stop();
    }
}

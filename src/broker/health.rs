//! What every shared broker kind reports the same way: whether the server
//! answers (readiness), and the publish deadline on the server's clock.
//!
//! **Readiness.** A broker records each answer it gets ([`Health::answered`]),
//! from publishes and from a periodic ping ([`ping_every`]); it is healthy while
//! the last answer is younger than `broker.timeout`. A server that is connected
//! but stalled (paused, swapping, stuck on a slow command) therefore turns
//! `/readyz` to 503 within `broker.timeout`, and back to 200 at its first answer.
//!
//! **Never publish what was refused.** A publish that has not completed within
//! `broker.timeout` is answered 503, but the request may still sit in the
//! server's socket buffer and run later. So each publish carries a deadline on
//! the server's own clock, and the server refuses to store it past that deadline
//! (Redis: the publish script compares it with `TIME`). The deadline is the
//! publish's start plus half of `broker.timeout` ([`Health::run_limit`]),
//! translated to server time with the latest ping: `server_ms + (now -
//! received)`, where `server_ms` was read by the server before the ping's answer
//! was received, so the estimate is never ahead of the server's clock.
//!
//! The answer is waited for until the deadline plus [`CLOCK_MARGIN`]: by then
//! the server's clock has passed the deadline (unless it stepped back by more
//! than the margin), so the publish can no longer be stored, and whether it was
//! is settled for good by a receipt the publish writes (Redis:
//! `receipt:<token>`). When no answer came, or the connection broke, the
//! receipt is asked for in the other half of `broker.timeout`: found, the
//! webhook is accepted after all; absent, it was never stored and never will be.
//! Only a server that answers neither (frozen, or cut off) leaves the outcome
//! open, and hookcast answers 503 at `broker.timeout` plus the margin.
//!
//! A broker kind whose server stamps a store time can follow the same design:
//! carry the deadline with the event, let the store refuse (or every reader
//! ignore) an event stored after it, and keep a receipt to ask for. NATS
//! JetStream does so with a deadline on this host's clock and a wider margin
//! (see `nats.rs`): its readiness is [`Health`], its deadline its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::hub::lock;

/// How long past its deadline a publish is waited for before hookcast answers
/// 503: more than the clocks can drift apart between two pings.
pub const CLOCK_MARGIN: Duration = Duration::from_millis(100);

/// The answers a broker's server gave, and its clock.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    timeout: Duration,
    /// Milliseconds from `started` to the last answer, plus one; 0: never.
    last_answer: AtomicU64,
    clock: Mutex<Option<ClockSample>>,
}

#[derive(Debug, Clone, Copy)]
struct ClockSample {
    /// The server's time, in milliseconds since the Unix epoch.
    server_ms: u64,
    /// When its answer was received here.
    received: Instant,
}

impl Health {
    pub fn new(timeout: Duration) -> Health {
        Health {
            started: Instant::now(),
            timeout,
            last_answer: AtomicU64::new(0),
            clock: Mutex::new(None),
        }
    }

    /// The server answered a command just now.
    pub fn answered(&self) {
        let ms = self.started.elapsed().as_millis() as u64 + 1;
        self.last_answer.fetch_max(ms, Ordering::Relaxed);
    }

    /// Whether the server answered within the last `broker.timeout`.
    pub fn healthy(&self) -> bool {
        match self.last_answer.load(Ordering::Relaxed) {
            0 => false,
            at => {
                let now = self.started.elapsed().as_millis() as u64 + 1;
                now.saturating_sub(at) < self.timeout.as_millis() as u64
            }
        }
    }

    /// Records the server's time, read by a command answered at `received`.
    pub fn calibrate(&self, server_ms: u64, received: Instant) {
        self.answered();
        *lock(&self.clock) = Some(ClockSample {
            server_ms,
            received,
        });
    }

    /// The deadline of a publish started at `started`, on the server's clock (ms),
    /// or `None` before the first [`Health::calibrate`].
    pub fn deadline(&self, started: Instant) -> Option<u64> {
        let sample = (*lock(&self.clock))?;
        let at = started + self.run_limit();
        let ahead = at.saturating_duration_since(sample.received).as_millis() as u64;
        let behind = sample.received.saturating_duration_since(at).as_millis() as u64;
        Some((sample.server_ms + ahead).saturating_sub(behind))
    }

    /// How long after its start a publish may still be stored: half of
    /// `broker.timeout`, so the other half is left to ask for its receipt.
    pub fn run_limit(&self) -> Duration {
        self.timeout / 2
    }

    /// How long a publish's answer is waited for: until its deadline plus
    /// [`CLOCK_MARGIN`]. After that it can no longer be stored.
    pub fn answer_limit(&self) -> Duration {
        self.run_limit() + CLOCK_MARGIN
    }

    /// How long a publish takes at most, receipt included: `broker.timeout`
    /// plus [`CLOCK_MARGIN`].
    pub fn wait_limit(&self) -> Duration {
        self.timeout + CLOCK_MARGIN
    }
}

/// How often a broker pings its server: often enough that a healthy server has
/// answered within any `broker.timeout` window, at most once a second.
pub fn ping_every(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// What a broker's pinger asks of it.
pub(super) trait Ping: Send + Sync + 'static {
    /// The broker kind, for the log.
    const KIND: &'static str;

    /// Asks the server something that shows it answers, and records the answer
    /// ([`Health::answered`], [`Health::calibrate`]); whether it came.
    fn ping(self: Arc<Self>) -> impl Future<Output = bool> + Send;

    /// A ping failed, or got no answer within `broker.timeout`.
    fn unanswered(&self) {}
}

/// A broker's pinger: pings every [`ping_every`] for as long as `owner` lives,
/// each bounded by `timeout`. A ping that fails or is not answered shows as
/// silence (and [`Ping::unanswered`]); the log tells when the server stops
/// answering and when it answers again.
pub(super) async fn keep_pinging<T: Ping>(owner: Weak<T>, timeout: Duration) {
    let mut tick = tokio::time::interval(ping_every(timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answering = false;
    loop {
        tick.tick().await;
        let Some(owner) = owner.upgrade() else { return };
        let answered = tokio::time::timeout(timeout, owner.clone().ping())
            .await
            .unwrap_or(false);
        if !answered {
            owner.unanswered();
        }
        if answered != answering {
            answering = answered;
            if answered {
                tracing::info!(broker = T::KIND, "the broker answers");
            } else {
                tracing::warn!(broker = T::KIND, "the broker does not answer; not ready");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_after_a_recent_answer() {
        let h = Health::new(Duration::from_millis(50));
        assert!(!h.healthy(), "never answered");
        h.answered();
        assert!(h.healthy());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!h.healthy(), "silent for longer than the timeout");
        h.answered();
        assert!(h.healthy());
    }

    #[test]
    fn deadline_is_half_the_timeout_on_the_server_clock() {
        let h = Health::new(Duration::from_secs(4));
        let now = Instant::now();
        assert_eq!(h.deadline(now), None, "no clock sample yet");
        h.calibrate(1_000_000, now);
        assert_eq!(h.deadline(now), Some(1_002_000));
        assert_eq!(
            h.deadline(now + Duration::from_millis(500)),
            Some(1_002_500)
        );
        // A publish that started just before the sample arrived.
        h.calibrate(1_000_000, now + Duration::from_secs(3));
        assert_eq!(h.deadline(now), Some(999_000));
    }
}

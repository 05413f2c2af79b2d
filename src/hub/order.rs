//! Event order across shards: one id counter, and the low watermark below which
//! every publish has finished, so a subscriber that follows several shards takes
//! its events in id order.
//!
//! Topics live in shards (`state.rs`), each under its own lock, so publishes to
//! topics of different shards run in parallel. What keeps each guarantee:
//!
//! - **Ids increase in publish order per topic.** A publish locks the shards of
//!   all its topics (in index order, so two publishes never wait on each other in
//!   a cycle) and takes its seq from [`Order::begin`] while holding them. Two
//!   publishes to one topic hold the same shard lock, so the later one takes the
//!   larger seq; and a publish that starts after another returned takes a larger
//!   seq from the one counter, whatever their shards.
//! - **Replay, then subscribe, is atomic.** A subscription locks the shards of its
//!   topics (every shard for a pattern) while it registers and reads history. No
//!   publish is under way in a shard it holds, and one that comes later takes a
//!   seq from the counter after the subscription read the history: every event
//!   is in the replay or in the live queue, never in both, and the live ones
//!   come after the replayed ones.
//! - **An event with several topics reaches a subscriber once.** Its publish
//!   holds all its shards, so it is in flight, and cannot be taken, until its
//!   last push; the queue skips a seq it already holds (`inbox.rs`).
//! - **Each subscriber takes its events in id order.** A subscriber whose topics
//!   all live in one shard receives pushes in seq order, since that shard's lock
//!   orders them. One that spans shards (several of them, or any pattern) may
//!   receive seq 11 from one shard before seq 10 from another. Its queue keeps
//!   events sorted by seq and hands out only seqs below [`Order::complete_below`]:
//!   the smallest seq that may still be pushed. Each shard has a `busy` slot that
//!   the publish holding that shard's lock sets to a lower bound of its seq
//!   *before* taking the seq from the counter, and clears after its last push.
//!   The reader loads the counter and then every slot: a publish whose seq is
//!   below the counter value it read had already set its slot (the counter's
//!   release and acquire order the two), so the reader sees that bound, or the
//!   cleared slot whose store follows every push of the event (or a later
//!   publish's bound, which that shard's lock orders after the pushes). The reader does this
//!   while holding its queue's lock, so a push that happened before is in the
//!   queue it looks at.
//! - **Nothing waits forever.** A held-back queue registers its waker here
//!   before reading the watermark again; a publish clears its slot before
//!   looking for registered wakers. One of the two sees the other (the store
//!   and load pairs are sequentially consistent), so the wake-up is not lost.
//!
//! A publish touches one shared cache line, the counter, and its own shard's;
//! only subscribers that span shards read the slots, and only when their oldest
//! event is newer than the newest watermark any of them computed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::task::Waker;

use super::lock;
use super::state::SHARDS;

/// A slot no publish holds.
const IDLE: u64 = u64::MAX;

/// Keeps a value on its own cache line (two lines, as adjacent-line prefetch
/// pairs them), so that two cores writing neighbours do not contend.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct Padded<T>(pub(super) T);

#[derive(Debug)]
pub(crate) struct Order {
    next: Padded<AtomicU64>,
    /// Per shard: a lower bound of the seq its lock holder is publishing, or IDLE.
    busy: [Padded<AtomicU64>; SHARDS],
    /// The newest watermark a reader computed, so that a fan-out to many merged
    /// queues reads the slots once rather than once per queue.
    released: Padded<AtomicU64>,
    /// Whether `waiters` may hold a waker (read by every publish, written rarely).
    pending: Padded<AtomicBool>,
    waiters: Mutex<Vec<Waker>>,
}

/// A publish in flight: holds its shard's `busy` slot until dropped, which must
/// happen before that shard's lock is released.
#[derive(Debug)]
pub(super) struct InFlight<'a> {
    order: &'a Order,
    slot: usize,
    pub(super) seq: u64,
}

impl Order {
    pub(super) fn new() -> Self {
        Order {
            next: Padded(AtomicU64::new(1)),
            busy: std::array::from_fn(|_| Padded(AtomicU64::new(IDLE))),
            released: Padded(AtomicU64::new(0)),
            pending: Padded(AtomicBool::new(false)),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Takes the next seq, for a publish holding the lock of shard `slot`.
    ///
    /// One locked instruction: the bound is stored before the counter moves,
    /// and a reader that sees the counter moved past the seq acquires, through
    /// the counter's release sequence, the bound stored before it. Every store
    /// to a slot releases, so a reader that sees a later holder's value also
    /// sees, through the shard lock, everything earlier holders pushed.
    pub(super) fn begin(&self, slot: usize) -> InFlight<'_> {
        let busy = &self.busy[slot].0;
        busy.store(self.next.0.load(Relaxed), Release);
        let seq = self.next.0.fetch_add(1, AcqRel);
        // Raising the bound only shortens how long readers hold newer events back.
        busy.store(seq, Release);
        InFlight {
            order: self,
            slot,
            seq,
        }
    }

    /// The seq the next publish will take: every seq below it was handed out.
    pub(super) fn next(&self) -> u64 {
        self.next.0.load(SeqCst)
    }

    /// Every publish whose seq is below the returned value has made all its
    /// pushes. Cheap: what a reader last computed, which stays true.
    pub(crate) fn released(&self) -> u64 {
        self.released.0.load(Acquire)
    }

    /// Every publish whose seq is below the returned value has made all its pushes.
    /// Shared through `released`: a reader that takes it from there acquires
    /// what this reader acquired from the slots and the counter.
    pub(crate) fn complete_below(&self) -> u64 {
        let next = self.next.0.load(SeqCst);
        let low = self
            .busy
            .iter()
            .fold(next, |low, slot| low.min(slot.0.load(SeqCst)));
        self.released.0.fetch_max(low, AcqRel);
        low
    }

    /// Wakes `waker` when some publish ends; read [`Order::complete_below`] again
    /// after calling this.
    pub(crate) fn wait(&self, waker: &Waker) {
        // No search for a duplicate: a queue registers once per poll that finds
        // it held, and the list is emptied whenever a publish ends.
        let mut waiters = lock(&self.waiters);
        waiters.push(waker.clone());
        self.pending.0.store(true, SeqCst);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let order = self.order;
        // Sequentially consistent, with the load of `pending` after it: the one
        // store-load pair that must not be reordered (see `wait`).
        order.busy[self.slot].0.store(IDLE, SeqCst);
        if order.pending.0.load(SeqCst) {
            let waiters = {
                let mut waiters = lock(&order.waiters);
                order.pending.0.store(false, SeqCst);
                std::mem::take(&mut *waiters)
            };
            waiters.into_iter().for_each(Waker::wake);
        }
    }
}

//! A plugin's call slots: how many of its calls run at once (each holds an instance), and
//! how many of those one sender may hold.
//!
//! One array of `max_concurrent_calls` entries, each free or holding the sender of the call
//! that occupies it. Taking a slot claims a free entry; the sender's share is the number of
//! entries holding that sender, counted by a scan of the (small) array. Everything is a few
//! atomic operations on the hot path — a hook call that takes a lock or a timer there is
//! measurably slower for a no-op plugin — and a call only waits (on a `Notify`) when every
//! entry is taken.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::store::UserId;

/// An entry nobody holds.
const FREE: i64 = 0;
/// An entry held by a call without a sender (`authenticate`). User ids are positive.
const NO_SENDER: i64 = i64::MIN;

pub(crate) struct Slots {
    entries: Box<[AtomicI64]>,
    /// Entries taken or being taken: lets the common call skip the sender count (while
    /// fewer calls than one sender's share run, nobody can hold a whole share).
    in_use: AtomicUsize,
    per_sender: usize,
    /// Calls waiting for an entry; a release notifies only when there are some.
    waiting: AtomicUsize,
    freed: Notify,
}

/// Why no slot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The sender already holds their whole share.
    SenderShare,
}

/// A held slot, given back on drop (also when the call is abandoned at its budget).
pub(crate) struct Slot<'a> {
    slots: &'a Slots,
    index: usize,
}

impl Slots {
    pub(crate) fn new(total: u32, per_sender: u32) -> Self {
        let total = usize::try_from(total.max(1)).unwrap_or(1);
        Self {
            entries: (0..total).map(|_| AtomicI64::new(FREE)).collect(),
            in_use: AtomicUsize::new(0),
            per_sender: usize::try_from(per_sender.max(1)).unwrap_or(1),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Take a slot for a call of `sender`, waiting for one to be freed if all are taken
    /// (the flag says whether it waited). Refused at once when the sender already holds
    /// their share (waiting would let one sender queue up everybody's slots).
    pub(crate) async fn take(&self, sender: Option<UserId>) -> Result<(Slot<'_>, bool), Refused> {
        let holder = holder(sender);
        if let Some(slot) = self.try_take_as(holder)? {
            return Ok((slot, false));
        }
        loop {
            // Counted while registered, also when the caller gives up (its budget ran out
            // and this future is dropped mid-wait).
            let _waiting = Waiting::register(&self.waiting);
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            // A slot freed between the failed attempt and `enable` must not be missed.
            if let Some(slot) = self.try_take_as(holder)? {
                return Ok((slot, true));
            }
            freed.await;
            if let Some(slot) = self.try_take_as(holder)? {
                return Ok((slot, true));
            }
        }
    }

    /// Take a free slot now if there is one (`None`: all are taken), without waiting.
    pub(crate) fn try_take(&self, sender: Option<UserId>) -> Result<Option<Slot<'_>>, Refused> {
        self.try_take_as(holder(sender))
    }

    fn try_take_as(&self, holder: i64) -> Result<Option<Slot<'_>>, Refused> {
        let before = self.in_use.fetch_add(1, Ordering::AcqRel);
        if before >= self.entries.len() {
            self.in_use.fetch_sub(1, Ordering::AcqRel);
            return Ok(None);
        }
        // Only when at least a share's worth of calls runs can this sender hold a share.
        let counted = holder != NO_SENDER && before >= self.per_sender;
        if counted && self.held_by(holder) >= self.per_sender {
            self.in_use.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::SenderShare);
        }
        // `in_use` reserved an entry, so a free one exists (another taker may win a race
        // for one; the scan then goes on).
        loop {
            for (index, entry) in self.entries.iter().enumerate() {
                if entry.load(Ordering::Relaxed) == FREE
                    && entry
                        .compare_exchange(FREE, holder, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    let slot = Slot { slots: self, index };
                    // Two calls of one sender may have passed the check together: count
                    // again with this entry held, and give it back if over the share.
                    if counted && self.held_by(holder) > self.per_sender {
                        return Err(Refused::SenderShare);
                    }
                    return Ok(Some(slot));
                }
            }
            std::hint::spin_loop();
        }
    }

    fn held_by(&self, holder: i64) -> usize {
        self.entries
            .iter()
            .filter(|e| e.load(Ordering::Acquire) == holder)
            .count()
    }
}

fn holder(sender: Option<UserId>) -> i64 {
    sender.filter(|id| *id > 0).unwrap_or(NO_SENDER)
}

/// One call waiting for a slot, for as long as this lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn register(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.slots.entries.get(self.index) {
            entry.store(FREE, Ordering::Release);
        }
        self.slots.in_use.fetch_sub(1, Ordering::AcqRel);
        if self.slots.waiting.load(Ordering::Acquire) > 0 {
            self.slots.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sender_gets_at_most_their_share_and_others_the_rest() {
        let slots = Slots::new(4, 2);
        let (a1, waited) = slots.take(Some(1)).await.expect("first");
        assert!(!waited);
        let a2 = slots.take(Some(1)).await.expect("second");
        assert_eq!(slots.take(Some(1)).await.err(), Some(Refused::SenderShare));
        let b1 = slots.take(Some(2)).await.expect("another sender");
        let none = slots.take(None).await.expect("no sender");
        // All four are taken: the next call waits until one is given back.
        let waiter = slots.take(Some(3));
        let mut waiter = std::pin::pin!(waiter);
        assert!(
            futures_util::poll!(waiter.as_mut()).is_pending(),
            "all slots are taken"
        );
        drop(a1);
        let (c1, waited) = waiter.await.expect("a freed slot");
        assert!(waited);
        drop((a2, b1, none, c1));
        assert_eq!(slots.held_by(1), 0);
    }

    #[tokio::test]
    async fn a_refused_call_holds_nothing() {
        let slots = Slots::new(2, 1);
        let held = slots.take(Some(7)).await.expect("first");
        assert!(slots.take(Some(7)).await.is_err());
        assert_eq!(slots.held_by(7), 1);
        drop(held);
        assert_eq!(slots.held_by(7), 0);
        let _again = slots.take(Some(7)).await.expect("free again");
    }
}

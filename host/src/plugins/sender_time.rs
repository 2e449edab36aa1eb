//! How much of a plugin's time one sender may use per second.
//!
//! A call that stays within its CPU deadline is legal, but a member who sends a flood of
//! messages that each make a filter work hard (1,000 log lines, 64 KiB `kv` writes) spends
//! the server's cores on their own behalf, and every other room's latency pays. So each
//! sender has a budget of plugin time per second (`limits.sender_time_ms_per_second`),
//! counting the plugin's own running time — the epoch ticks its guest code ran through,
//! so waits (a WASI sleep, a host import) do not count. Over it, that sender's further
//! calls fail at once (`overloaded`: the failure policy decides, no breaker counts it)
//! until the second is over.
//!
//! The common call costs one atomic load: only calls that ran through at least one tick
//! (2 ms by default) are recorded, and the ledger is looked at only while it holds anyone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::lock;
use crate::store::UserId;

/// Calls shorter than this are not recorded (nearly every call of a healthy plugin).
const RECORDED_FROM: Duration = Duration::from_millis(1);
const WINDOW: Duration = Duration::from_secs(1);
/// Senders remembered at most; past it, those whose second is over are forgotten.
const MAX_SENDERS: usize = 10_000;

pub(crate) struct SenderTime {
    budget: Duration,
    ledger: Mutex<HashMap<UserId, Spent>>,
    /// Entries in `ledger`, readable without the lock.
    tracked: AtomicUsize,
}

struct Spent {
    since: Instant,
    used: Duration,
}

impl SenderTime {
    pub(crate) fn new(budget_ms_per_second: u32) -> Self {
        Self {
            budget: Duration::from_millis(u64::from(budget_ms_per_second)),
            ledger: Mutex::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
        }
    }

    /// Whether `sender` has used up this second's budget.
    pub(crate) fn exhausted(&self, sender: UserId) -> bool {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return false;
        }
        let ledger = lock(&self.ledger);
        ledger
            .get(&sender)
            .is_some_and(|spent| spent.since.elapsed() < WINDOW && spent.used >= self.budget)
    }

    /// Count `used` of plugin time against `sender`.
    pub(crate) fn record(&self, sender: UserId, used: Duration) {
        if used < RECORDED_FROM && self.tracked.load(Ordering::Acquire) == 0 {
            return;
        }
        // (Calls that ran through no epoch tick are not even passed here.)
        let now = Instant::now();
        let mut ledger = lock(&self.ledger);
        if used < RECORDED_FROM && !ledger.contains_key(&sender) {
            return;
        }
        if ledger.len() >= MAX_SENDERS {
            ledger.retain(|_, spent| now.duration_since(spent.since) < WINDOW);
        }
        if ledger.len() < MAX_SENDERS || ledger.contains_key(&sender) {
            let spent = ledger.entry(sender).or_insert(Spent {
                since: now,
                used: Duration::ZERO,
            });
            if now.duration_since(spent.since) >= WINDOW {
                *spent = Spent {
                    since: now,
                    used: Duration::ZERO,
                };
            }
            spent.used += used;
        }
        self.tracked.store(ledger.len(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_calls_are_not_recorded() {
        let time = SenderTime::new(10);
        for _ in 0..1000 {
            time.record(1, Duration::from_micros(50));
        }
        assert!(!time.exhausted(1));
        assert_eq!(time.tracked.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_sender_over_budget_is_refused_for_the_rest_of_the_second_only() {
        let time = SenderTime::new(10);
        time.record(1, Duration::from_millis(6));
        assert!(!time.exhausted(1));
        time.record(1, Duration::from_millis(6));
        assert!(time.exhausted(1));
        assert!(!time.exhausted(2), "another sender is not affected");
        // Once over budget, even short calls count.
        time.record(1, Duration::from_micros(10));
        let mut ledger = lock(&time.ledger);
        ledger.get_mut(&1).expect("tracked").since -= WINDOW;
        drop(ledger);
        assert!(!time.exhausted(1), "a new second, a new budget");
    }
}

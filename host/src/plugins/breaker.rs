//! The circuit breaker: a plugin that fails `threshold` times within `window` is no longer
//! called for `cooldown`; then a single trial call decides whether it is closed again.
//!
//! While a plugin's circuit is open its failure policy still decides the messages it would
//! have seen: a fail-closed DLP filter that is tripped keeps rejecting, so crafting messages
//! that crash the filter is not a way around it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::lock;

pub(crate) struct Breaker {
    threshold: usize,
    window: Duration,
    /// `None`: stays open until the plugin is re-enabled (or the server restarts).
    cooldown: Option<Duration>,
    /// Fast path: most calls see a closed circuit and take no lock.
    open: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: VecDeque<Instant>,
    /// When the circuit opened, or when the last trial started: the next trial waits a
    /// full cooldown after it. (So a trial whose caller went away just delays the next.)
    opened_at: Option<Instant>,
    trips: u64,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    /// The cooldown is over: this call is the trial.
    Trial,
    No,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, window: Duration, cooldown: Option<Duration>) -> Self {
        Self {
            threshold: usize::try_from(threshold.max(1)).unwrap_or(usize::MAX),
            window,
            cooldown,
            open: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn admit(&self) -> Admit {
        if !self.open.load(Ordering::Acquire) {
            return Admit::Yes;
        }
        let mut state = lock(&self.state);
        let (Some(cooldown), Some(opened_at)) = (self.cooldown, state.opened_at) else {
            return Admit::No;
        };
        if opened_at.elapsed() < cooldown {
            return Admit::No;
        }
        state.opened_at = Some(Instant::now());
        Admit::Trial
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn trips(&self) -> u64 {
        lock(&self.state).trips
    }

    pub(crate) fn record_success(&self, admit: Admit) {
        if admit == Admit::Trial {
            let mut state = lock(&self.state);
            state.opened_at = None;
            state.failures.clear();
            self.open.store(false, Ordering::Release);
        }
    }

    /// Count a failure; true when it opened the circuit.
    pub(crate) fn record_failure(&self, admit: Admit) -> bool {
        let now = Instant::now();
        let mut state = lock(&self.state);
        if admit == Admit::Trial {
            state.opened_at = Some(now);
            return false;
        }
        if self.open.load(Ordering::Acquire) {
            return false;
        }
        state.failures.push_back(now);
        while state
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            state.failures.pop_front();
        }
        if state.failures.len() >= self.threshold {
            state.failures.clear();
            state.opened_at = Some(now);
            state.trips += 1;
            self.open.store(true, Ordering::Release);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_within_window() {
        let b = Breaker::new(3, Duration::from_secs(60), None);
        assert!(!b.record_failure(Admit::Yes));
        assert!(!b.record_failure(Admit::Yes));
        assert_eq!(b.admit(), Admit::Yes);
        assert!(b.record_failure(Admit::Yes));
        assert_eq!(b.admit(), Admit::No);
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn old_failures_fall_out_of_the_window() {
        let b = Breaker::new(2, Duration::from_millis(20), None);
        assert!(!b.record_failure(Admit::Yes));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!b.record_failure(Admit::Yes));
        assert!(!b.is_open());
    }

    #[test]
    fn a_successful_trial_closes_the_circuit() {
        let b = Breaker::new(1, Duration::from_secs(60), Some(Duration::from_millis(10)));
        assert!(b.record_failure(Admit::Yes));
        assert_eq!(b.admit(), Admit::No);
        std::thread::sleep(Duration::from_millis(20));
        let trial = b.admit();
        assert_eq!(trial, Admit::Trial);
        assert_eq!(b.admit(), Admit::No, "only one trial at a time");
        b.record_success(trial);
        assert_eq!(b.admit(), Admit::Yes);
    }

    #[test]
    fn a_failed_trial_reopens_for_another_cooldown() {
        let b = Breaker::new(1, Duration::from_secs(60), Some(Duration::from_millis(10)));
        assert!(b.record_failure(Admit::Yes));
        std::thread::sleep(Duration::from_millis(20));
        let trial = b.admit();
        assert!(!b.record_failure(trial));
        assert_eq!(b.admit(), Admit::No);
    }
}

//! The circuit breaker, scoped so that one room or one member cannot take a plugin offline
//! for everyone.
//!
//! Failures are counted where they happen first: per **sender** (the user whose message,
//! command or login made the call) and per **room**. A sender's circuit opens on
//! `scope_threshold` of that sender's failures within `window`; a room's circuit opens on
//! as many failures in that room, but only when they came from at least two different
//! senders (so one member cannot cut a room off either). While a scope's circuit is open the
//! plugin is not called there; everyone else is still served.
//!
//! The **whole plugin's** circuit opens only when `threshold` failures within `window` came
//! from at least `min_scopes` different senders and (for hooks that fire in rooms) rooms:
//! then the plugin is broken for everyone, not attacked by someone. Calls with no sender
//! (`authenticate`) count towards the plugin's circuit directly, as before scoping.
//!
//! After `cooldown`, one trial call decides whether an open circuit (of a scope or of the
//! plugin) closes again. While any circuit is open the plugin's failure policy still decides
//! the messages it would have seen: a fail-closed DLP filter that is tripped keeps
//! rejecting there, so crafting messages that crash the filter is not a way around it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::lock;
use crate::store::{RoomId, UserId};

/// Scopes remembered at most; beyond this, the ones without recent failures are forgotten
/// first and new ones are counted only towards the plugin's circuit.
const MAX_TRACKED_SCOPES: usize = 10_000;

/// Where a call came from, for counting its failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) room: Option<RoomId>,
    pub(crate) sender: Option<UserId>,
}

/// One circuit: the plugin's, a room's or a sender's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Circuit {
    Plugin,
    Room(RoomId),
    Sender(UserId),
}

impl Circuit {
    fn label(self) -> String {
        match self {
            Self::Plugin => "plugin".to_string(),
            Self::Room(id) => format!("room:{id}"),
            Self::Sender(id) => format!("sender:{id}"),
        }
    }
}

/// An open circuit, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OpenCircuit {
    /// `plugin`, `room:<id>` or `sender:<id>`.
    pub scope: String,
    /// Seconds until a trial call may close it (`None`: stays open until re-enabled).
    pub retry_in_secs: Option<u64>,
}

/// The breaker's settings (`[plugins] breaker_*`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BreakerConfig {
    pub(crate) threshold: u32,
    pub(crate) scope_threshold: u32,
    pub(crate) min_scopes: u32,
    pub(crate) window: Duration,
    /// `None`: an open circuit stays open until the plugin is re-enabled (or restarted).
    pub(crate) cooldown: Option<Duration>,
}

pub(crate) struct Breaker {
    config: BreakerConfig,
    /// Fast path: most calls see no open circuit at all and take no lock.
    plugin_open: AtomicBool,
    open_scopes: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The plugin's recent failures and where they came from.
    failures: VecDeque<(Instant, Scope)>,
    /// When the plugin's circuit opened, or its last trial started.
    opened_at: Option<Instant>,
    trips: u64,
    scopes: HashMap<Circuit, ScopeState>,
}

#[derive(Default)]
struct ScopeState {
    failures: VecDeque<(Instant, Option<UserId>)>,
    /// When this scope's circuit opened, or its last trial started.
    opened_at: Option<Instant>,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    /// The cooldown of this circuit is over: this call is its trial.
    Trial(Circuit),
    /// This circuit is open: the plugin is not called.
    No(Circuit),
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            plugin_open: AtomicBool::new(false),
            open_scopes: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn admit(&self, scope: Scope) -> Admit {
        let plugin_open = self.plugin_open.load(Ordering::Acquire);
        if !plugin_open && self.open_scopes.load(Ordering::Acquire) == 0 {
            return Admit::Yes;
        }
        let mut state = lock(&self.state);
        let now = Instant::now();
        if plugin_open {
            return match state.opened_at {
                Some(opened) if self.cooled(opened, now) => {
                    state.opened_at = Some(now);
                    Admit::Trial(Circuit::Plugin)
                }
                _ => Admit::No(Circuit::Plugin),
            };
        }
        for circuit in scope_circuits(scope) {
            let Some(entry) = state.scopes.get_mut(&circuit) else {
                continue;
            };
            if let Some(opened) = entry.opened_at {
                if self.cooled(opened, now) {
                    entry.opened_at = Some(now);
                    return Admit::Trial(circuit);
                }
                return Admit::No(circuit);
            }
        }
        Admit::Yes
    }

    fn cooled(&self, opened: Instant, now: Instant) -> bool {
        self.config
            .cooldown
            .is_some_and(|cooldown| now.duration_since(opened) >= cooldown)
    }

    /// Whether the whole plugin's circuit is open.
    pub(crate) fn is_open(&self) -> bool {
        self.plugin_open.load(Ordering::Acquire)
    }

    pub(crate) fn trips(&self) -> u64 {
        lock(&self.state).trips
    }

    /// Every open circuit, the plugin's first, then at most `limit` scopes.
    pub(crate) fn open_circuits(&self, limit: usize) -> Vec<OpenCircuit> {
        let state = lock(&self.state);
        let now = Instant::now();
        let retry = |opened: Instant| {
            self.config.cooldown.map(|cooldown| {
                cooldown
                    .saturating_sub(now.duration_since(opened))
                    .as_secs()
            })
        };
        let mut open = Vec::new();
        if self.is_open()
            && let Some(opened) = state.opened_at
        {
            open.push(OpenCircuit {
                scope: Circuit::Plugin.label(),
                retry_in_secs: retry(opened),
            });
        }
        let mut scopes: Vec<(Circuit, Instant)> = state
            .scopes
            .iter()
            .filter_map(|(circuit, s)| s.opened_at.map(|at| (*circuit, at)))
            .collect();
        scopes.sort();
        open.extend(
            scopes
                .into_iter()
                .take(limit)
                .map(|(circuit, at)| OpenCircuit {
                    scope: circuit.label(),
                    retry_in_secs: retry(at),
                }),
        );
        open
    }

    pub(crate) fn record_success(&self, admit: Admit) {
        let Admit::Trial(circuit) = admit else {
            return;
        };
        let mut state = lock(&self.state);
        match circuit {
            Circuit::Plugin => {
                state.opened_at = None;
                state.failures.clear();
                self.plugin_open.store(false, Ordering::Release);
            }
            scope => {
                if state.scopes.remove(&scope).is_some() {
                    self.open_scopes.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Count a failure of a call from `scope`; returns the circuit it opened, if any.
    pub(crate) fn record_failure(&self, admit: Admit, scope: Scope) -> Option<Circuit> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        match admit {
            Admit::Trial(Circuit::Plugin) => {
                state.opened_at = Some(now);
                return None;
            }
            Admit::Trial(circuit) => {
                if let Some(entry) = state.scopes.get_mut(&circuit) {
                    entry.opened_at = Some(now);
                }
                return None;
            }
            Admit::No(_) => return None,
            Admit::Yes => {}
        }
        if self.is_open() {
            return None;
        }
        let window = self.config.window;
        let scope_threshold = usize::try_from(self.config.scope_threshold.max(1)).unwrap_or(1);
        let mut opened = None;
        for circuit in scope_circuits(scope) {
            if !state.scopes.contains_key(&circuit) && !make_room(&mut state.scopes, now, window) {
                continue;
            }
            let entry = state.scopes.entry(circuit).or_default();
            if entry.opened_at.is_some() {
                continue;
            }
            entry.failures.push_back((now, scope.sender));
            prune(&mut entry.failures, now, window, |(t, _)| *t);
            let senders: BTreeSet<_> = entry.failures.iter().map(|(_, s)| *s).collect();
            // A room's circuit needs two senders: one member must not cut the room off.
            let enough_senders = matches!(circuit, Circuit::Sender(_)) || senders.len() >= 2;
            if entry.failures.len() >= scope_threshold && enough_senders {
                entry.failures.clear();
                entry.opened_at = Some(now);
                self.open_scopes.fetch_add(1, Ordering::AcqRel);
                opened.get_or_insert(circuit);
            }
        }

        state.failures.push_back((now, scope));
        prune(&mut state.failures, now, window, |(t, _)| *t);
        let threshold = usize::try_from(self.config.threshold.max(1)).unwrap_or(1);
        if state.failures.len() >= threshold && self.spread_wide(&state.failures) {
            state.failures.clear();
            state.opened_at = Some(now);
            state.trips += 1;
            self.plugin_open.store(true, Ordering::Release);
            return Some(Circuit::Plugin);
        }
        if opened.is_some() {
            state.trips += 1;
        }
        opened
    }

    /// Whether recent failures come from enough different senders and rooms to be the
    /// plugin's own fault rather than one room's or one member's doing.
    fn spread_wide(&self, failures: &VecDeque<(Instant, Scope)>) -> bool {
        let min = usize::try_from(self.config.min_scopes.max(1)).unwrap_or(1);
        let unscoped = failures
            .iter()
            .filter(|(_, s)| s.sender.is_none() && s.room.is_none())
            .count();
        if unscoped >= usize::try_from(self.config.threshold.max(1)).unwrap_or(1) {
            return true;
        }
        let senders: BTreeSet<UserId> = failures.iter().filter_map(|(_, s)| s.sender).collect();
        let rooms: BTreeSet<RoomId> = failures.iter().filter_map(|(_, s)| s.room).collect();
        let any_room = failures.iter().any(|(_, s)| s.room.is_some());
        senders.len() >= min && (!any_room || rooms.len() >= min)
    }
}

fn scope_circuits(scope: Scope) -> impl Iterator<Item = Circuit> {
    scope
        .sender
        .map(Circuit::Sender)
        .into_iter()
        .chain(scope.room.map(Circuit::Room))
}

fn prune<T>(queue: &mut VecDeque<T>, now: Instant, window: Duration, at: impl Fn(&T) -> Instant) {
    while queue
        .front()
        .is_some_and(|item| now.duration_since(at(item)) > window)
    {
        queue.pop_front();
    }
}

/// Keep the scope map bounded: forget closed scopes whose failures are out of the window.
/// False when it is still full (open circuits are never forgotten).
fn make_room(scopes: &mut HashMap<Circuit, ScopeState>, now: Instant, window: Duration) -> bool {
    if scopes.len() < MAX_TRACKED_SCOPES {
        return true;
    }
    scopes.retain(|_, s| {
        s.opened_at.is_some()
            || s.failures
                .back()
                .is_some_and(|(t, _)| now.duration_since(*t) <= window)
    });
    scopes.len() < MAX_TRACKED_SCOPES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(threshold: u32, window: Duration, cooldown: Option<Duration>) -> BreakerConfig {
        BreakerConfig {
            threshold,
            scope_threshold: 3,
            min_scopes: 3,
            window,
            cooldown,
        }
    }

    fn unscoped() -> Scope {
        Scope::default()
    }

    fn from(room: RoomId, sender: UserId) -> Scope {
        Scope {
            room: Some(room),
            sender: Some(sender),
        }
    }

    #[test]
    fn opens_after_threshold_within_window() {
        let b = Breaker::new(config(3, Duration::from_secs(60), None));
        assert_eq!(b.record_failure(Admit::Yes, unscoped()), None);
        assert_eq!(b.record_failure(Admit::Yes, unscoped()), None);
        assert_eq!(b.admit(unscoped()), Admit::Yes);
        assert_eq!(
            b.record_failure(Admit::Yes, unscoped()),
            Some(Circuit::Plugin)
        );
        assert_eq!(b.admit(unscoped()), Admit::No(Circuit::Plugin));
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn old_failures_fall_out_of_the_window() {
        let b = Breaker::new(config(2, Duration::from_millis(20), None));
        assert_eq!(b.record_failure(Admit::Yes, unscoped()), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.record_failure(Admit::Yes, unscoped()), None);
        assert!(!b.is_open());
    }

    #[test]
    fn a_successful_trial_closes_the_circuit() {
        let b = Breaker::new(config(
            1,
            Duration::from_secs(60),
            Some(Duration::from_millis(10)),
        ));
        assert!(b.record_failure(Admit::Yes, unscoped()).is_some());
        assert_eq!(b.admit(unscoped()), Admit::No(Circuit::Plugin));
        std::thread::sleep(Duration::from_millis(20));
        let trial = b.admit(unscoped());
        assert_eq!(trial, Admit::Trial(Circuit::Plugin));
        assert_eq!(
            b.admit(unscoped()),
            Admit::No(Circuit::Plugin),
            "one trial at a time"
        );
        b.record_success(trial);
        assert_eq!(b.admit(unscoped()), Admit::Yes);
    }

    #[test]
    fn a_failed_trial_reopens_for_another_cooldown() {
        let b = Breaker::new(config(
            1,
            Duration::from_secs(60),
            Some(Duration::from_millis(10)),
        ));
        assert!(b.record_failure(Admit::Yes, unscoped()).is_some());
        std::thread::sleep(Duration::from_millis(20));
        let trial = b.admit(unscoped());
        assert_eq!(b.record_failure(trial, unscoped()), None);
        assert_eq!(b.admit(unscoped()), Admit::No(Circuit::Plugin));
    }

    #[test]
    fn one_member_in_one_room_opens_only_their_own_circuit() {
        let b = Breaker::new(config(3, Duration::from_secs(60), None));
        let attacker = from(1, 100);
        let mut opened = Vec::new();
        for _ in 0..50 {
            match b.admit(attacker) {
                Admit::Yes => opened.extend(b.record_failure(Admit::Yes, attacker)),
                Admit::No(circuit) => assert_eq!(circuit, Circuit::Sender(100)),
                Admit::Trial(_) => unreachable!("no cooldown"),
            }
        }
        assert_eq!(opened, vec![Circuit::Sender(100)]);
        assert!(!b.is_open());
        // The same room, another member; another room, anyone: still served.
        assert_eq!(b.admit(from(1, 101)), Admit::Yes);
        assert_eq!(b.admit(from(2, 102)), Admit::Yes);
        let open = b.open_circuits(10);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].scope, "sender:100");
    }

    #[test]
    fn one_member_in_many_rooms_cannot_open_the_plugin_circuit() {
        let b = Breaker::new(config(3, Duration::from_secs(60), None));
        for room in 1..=20 {
            let scope = from(room, 7);
            if b.admit(scope) == Admit::Yes {
                b.record_failure(Admit::Yes, scope);
            }
        }
        assert!(!b.is_open());
        assert_eq!(b.admit(from(1, 8)), Admit::Yes);
    }

    #[test]
    fn a_room_opens_when_two_of_its_members_fail() {
        let b = Breaker::new(config(100, Duration::from_secs(60), None));
        b.record_failure(Admit::Yes, from(5, 1));
        b.record_failure(Admit::Yes, from(5, 1));
        assert_eq!(b.admit(from(5, 2)), Admit::Yes);
        assert_eq!(
            b.record_failure(Admit::Yes, from(5, 2)),
            Some(Circuit::Room(5))
        );
        assert_eq!(b.admit(from(5, 3)), Admit::No(Circuit::Room(5)));
        assert_eq!(b.admit(from(6, 3)), Admit::Yes);
    }

    #[test]
    fn failures_everywhere_open_the_plugin_circuit() {
        let b = Breaker::new(config(6, Duration::from_secs(60), None));
        let mut opened = None;
        for i in 0..6 {
            opened = b.record_failure(Admit::Yes, from(i, 1000 + i));
        }
        assert_eq!(opened, Some(Circuit::Plugin));
        assert_eq!(b.admit(from(99, 99)), Admit::No(Circuit::Plugin));
    }

    #[test]
    fn a_scope_trial_closes_only_that_scope() {
        let b = Breaker::new(config(
            100,
            Duration::from_secs(60),
            Some(Duration::from_millis(10)),
        ));
        for _ in 0..3 {
            b.record_failure(Admit::Yes, from(1, 9));
        }
        assert_eq!(b.admit(from(2, 9)), Admit::No(Circuit::Sender(9)));
        std::thread::sleep(Duration::from_millis(20));
        let trial = b.admit(from(2, 9));
        assert_eq!(trial, Admit::Trial(Circuit::Sender(9)));
        b.record_success(trial);
        assert_eq!(b.admit(from(2, 9)), Admit::Yes);
        assert!(b.open_circuits(10).is_empty());
    }
}

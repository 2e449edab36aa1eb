//! Presence: who is `online`, `away` or `offline`, as people who share a room with them see
//! it. Nothing is stored: it is derived, on each node, from the node's live sockets and what
//! they do, and the nodes of a cluster tell each other through the bus.
//!
//! - A socket is *active* when it sent something that does something (not a ping) within
//!   `presence.away_after_secs` and its client has not said `away` (a hidden tab). A user is
//!   `online` on a node with an active socket, `away` with only idle ones, and `offline` once
//!   the last socket has been gone for `presence.offline_grace_ms` (a reload does not
//!   flicker).
//! - Each node announces its users' changes on the bus, and all its present users again
//!   every `presence.heartbeat_secs`; what a node said is forgotten after three heartbeats
//!   without news, so a dead node's users go offline. A user is as present as on their most
//!   present node.
//! - A user may hide their presence (`users.presence_hidden`): everyone else then sees
//!   `offline`; the flag travels on the bus too.
//! - Each node tells its own sockets: a change of a user's status goes as a `presence` frame
//!   to every local session of everyone who shares a room with them (and to the user's own).
//!
//! Sockets only queue their user for a decision (`presence_changed`); one task per node
//! decides and announces, one user at a time (an async lock around "decide, then fan out",
//! which the bus's and the API's changes take too), so clients receive a user's changes in
//! the order they were decided, and a socket never waits for someone else's announcement
//! to be fanned out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Hub, Outbound, SessionHandle, read};
use crate::bus::BusMessage;
use crate::config::PresenceConfig;
use crate::protocol::{PresenceStatus, ServerFrame};
use crate::store::{StoreResult, UserId};

/// How many users one heartbeat message carries (NATS caps a message at 1 MiB by default).
const SNAPSHOT_CHUNK: usize = 5_000;

/// The presence state of one node.
#[derive(Debug, Default)]
pub(super) struct Book {
    /// This node's users as last told to the cluster (absent: offline).
    local: HashMap<UserId, PresenceStatus>,
    /// Users with no socket left on this node, since when.
    gone_since: HashMap<UserId, Instant>,
    /// What other nodes said: per user, per node, the status and when the word expires.
    remote: HashMap<UserId, HashMap<String, (PresenceStatus, Instant)>>,
    hidden: HashSet<UserId>,
    /// Each user's status as this node's sockets were last told (absent: offline).
    shown: HashMap<UserId, PresenceStatus>,
    last_heartbeat: Option<Instant>,
    /// Users to re-decide, in the order asked, each once (`Hub::presence_changed`).
    queued: Vec<UserId>,
    queued_set: HashSet<UserId>,
}

impl Book {
    /// Record `user`'s status on this node; whether it changed.
    fn set_local(&mut self, user: UserId, status: PresenceStatus) -> bool {
        let before = self
            .local
            .get(&user)
            .copied()
            .unwrap_or(PresenceStatus::Offline);
        if status == PresenceStatus::Offline {
            self.local.remove(&user);
        } else {
            self.local.insert(user, status);
        }
        before != status
    }

    fn set_remote(&mut self, node: &str, user: UserId, status: PresenceStatus, until: Instant) {
        if status == PresenceStatus::Offline {
            if let Some(nodes) = self.remote.get_mut(&user) {
                nodes.remove(node);
                if nodes.is_empty() {
                    self.remote.remove(&user);
                }
            }
        } else {
            self.remote
                .entry(user)
                .or_default()
                .insert(node.to_string(), (status, until));
        }
    }

    /// Forget what nodes said longer ago than their word lasts; the users concerned.
    fn expire_remote(&mut self, now: Instant) -> Vec<UserId> {
        let mut touched = Vec::new();
        self.remote.retain(|user, nodes| {
            let before = nodes.len();
            nodes.retain(|_, (_, until)| *until > now);
            if nodes.len() != before {
                touched.push(*user);
            }
            !nodes.is_empty()
        });
        touched
    }

    /// The user's status on their most present node, hidden or not.
    fn real(&self, user: UserId) -> PresenceStatus {
        let local = self
            .local
            .get(&user)
            .copied()
            .unwrap_or(PresenceStatus::Offline);
        self.remote
            .get(&user)
            .into_iter()
            .flat_map(HashMap::values)
            .map(|(status, _)| *status)
            .fold(local, Ord::max)
    }

    /// What others see.
    fn effective(&self, user: UserId) -> PresenceStatus {
        if self.hidden.contains(&user) {
            PresenceStatus::Offline
        } else {
            self.real(user)
        }
    }

    /// If what others see of `user` is not what this node's sockets were last told, record
    /// and return it.
    fn reshow(&mut self, user: UserId) -> Option<PresenceStatus> {
        let now = self.effective(user);
        let before = self
            .shown
            .get(&user)
            .copied()
            .unwrap_or(PresenceStatus::Offline);
        if now == before {
            return None;
        }
        if now == PresenceStatus::Offline {
            self.shown.remove(&user);
        } else {
            self.shown.insert(user, now);
        }
        Some(now)
    }
}

/// A session's presence: when it last did something, and whether its client said `away`.
#[derive(Debug, Default)]
pub(super) struct SessionPresence {
    /// Milliseconds since the hub's epoch.
    pub(super) last_active_ms: std::sync::atomic::AtomicU64,
    pub(super) client_away: std::sync::atomic::AtomicBool,
}

impl SessionPresence {
    /// Whether the session did something within `away_after_ms` of `now_ms` and its client
    /// has not said `away`.
    fn active(&self, now_ms: u64, away_after_ms: u64) -> bool {
        !self.client_away.load(Ordering::Relaxed)
            && now_ms.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) < away_after_ms
    }
}

impl Hub {
    fn presence_config(&self) -> Option<&PresenceConfig> {
        self.presence_config.get().filter(|c| c.enabled)
    }

    pub(super) fn since_epoch_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Start tracking presence (with the users who hid theirs); without this call presence
    /// is off and everyone reads as offline.
    pub fn enable_presence(&self, config: PresenceConfig, hidden: Vec<UserId>) {
        super::lock(&self.presence).hidden = hidden.into_iter().collect();
        let _ = self.presence_config.set(config);
    }

    /// A session did something (any frame but a ping): it is active again. Returns whether
    /// its user's presence may have changed (it was idle or said `away`), so the caller
    /// should `refresh_presence`.
    pub fn presence_activity(&self, handle: &SessionHandle) -> bool {
        let Some(config) = self.presence_config() else {
            return false;
        };
        let now = self.since_epoch_ms(Instant::now());
        let before = handle.presence.last_active_ms.swap(now, Ordering::Relaxed);
        let was_away = handle.presence.client_away.swap(false, Ordering::Relaxed);
        was_away || now.saturating_sub(before) >= config.away_after_secs.saturating_mul(1000)
    }

    /// The client said whether its user is looking (`away`: a hidden or idle window).
    pub fn presence_client_away(&self, handle: &SessionHandle, away: bool) {
        if !away {
            handle
                .presence
                .last_active_ms
                .store(self.since_epoch_ms(Instant::now()), Ordering::Relaxed);
        }
        handle.presence.client_away.store(away, Ordering::Relaxed);
    }

    /// `user`'s status from this node's sockets: `None` while their last socket is gone but
    /// the grace has not passed (keep what was said).
    fn local_presence(&self, user: UserId, now: Instant) -> Option<PresenceStatus> {
        let config = self.presence_config()?;
        let away_after = config.away_after_secs.saturating_mul(1000);
        let now_ms = self.since_epoch_ms(now);
        // (The sessions' lock is let go before the book's is taken: never both at once.)
        let active = read(&self.sessions)
            .get(&user)
            .map(|list| list.iter().any(|h| h.presence.active(now_ms, away_after)));
        match active {
            Some(true) => Some(PresenceStatus::Online),
            Some(false) => Some(PresenceStatus::Away),
            None => {
                let book = super::lock(&self.presence);
                let grace = Duration::from_millis(config.offline_grace_ms);
                match book.gone_since.get(&user) {
                    Some(since) if now.saturating_duration_since(*since) < grace => None,
                    _ => Some(PresenceStatus::Offline),
                }
            }
        }
    }

    /// `user`'s presence on this node may have changed (a socket came, went, or did
    /// something after an idle spell): have the presence task re-decide it. Returns at once,
    /// so a socket never waits for announcements to be fanned out; in a reconnect storm each
    /// user is queued once however many of their sockets come and go.
    pub fn presence_changed(&self, user: UserId) {
        if self.presence_config().is_none() {
            return;
        }
        let mut book = super::lock(&self.presence);
        if book.queued_set.insert(user) {
            book.queued.push(user);
            drop(book);
            self.presence_wake.notify_one();
        }
    }

    /// The presence task (run once per node while presence is on): re-decides the users
    /// [`Self::presence_changed`] queued, as they come, and runs [`Self::presence_tick`]
    /// every `tick`.
    pub async fn run_presence(self: Arc<Self>, tick: Duration) {
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.presence_tick().await,
                () = self.presence_wake.notified() => {}
            }
            loop {
                let queued = {
                    let mut book = super::lock(&self.presence);
                    book.queued_set.clear();
                    std::mem::take(&mut book.queued)
                };
                if queued.is_empty() {
                    break;
                }
                for user in queued {
                    self.refresh_presence(user).await;
                }
            }
        }
    }

    /// Re-derive `user`'s presence on this node: tell the cluster if it changed, and this
    /// node's sockets if what others see changed.
    async fn refresh_presence(&self, user: UserId) {
        if self.presence_config().is_none() {
            return;
        }
        let _turn = self.presence_turn.lock().await;
        let now = Instant::now();
        let Some(status) = self.local_presence(user, now) else {
            return;
        };
        let (changed, shown) = {
            let mut book = super::lock(&self.presence);
            // Offline for good, or back (a socket again): no grace running any more.
            book.gone_since.remove(&user);
            let changed = book.set_local(user, status);
            (changed, book.reshow(user))
        };
        if changed {
            self.publish(BusMessage::Presence {
                origin: self.node_id(),
                users: vec![(user, status)],
            });
        }
        if let Some(status) = shown {
            self.announce_presence(user, status).await;
        }
    }

    /// A session ended: if it was the user's last here, the grace starts.
    pub(super) fn presence_session_gone(&self, user: UserId, was_last: bool) {
        if was_last && self.presence_config().is_some() {
            super::lock(&self.presence)
                .gone_since
                .insert(user, Instant::now());
        }
    }

    /// The periodic check: sockets gone idle, graces over, nodes gone silent, and the
    /// heartbeat to the cluster.
    async fn presence_tick(&self) {
        let Some(config) = self.presence_config().cloned() else {
            return;
        };
        let now = Instant::now();
        let suspects = self.presence_suspects(&config, now);
        let (expired, heartbeat) = {
            let mut book = super::lock(&self.presence);
            let expired = book.expire_remote(now);
            let every = Duration::from_secs(config.heartbeat_secs.max(1));
            let due = book
                .last_heartbeat
                .is_none_or(|at| now.saturating_duration_since(at) >= every);
            if due {
                book.last_heartbeat = Some(now);
            }
            let heartbeat = due.then(|| {
                book.local
                    .iter()
                    .map(|(user, status)| (*user, *status))
                    .collect::<Vec<_>>()
            });
            (expired, heartbeat)
        };
        for user in suspects {
            self.refresh_presence(user).await;
        }
        for user in expired {
            let _turn = self.presence_turn.lock().await;
            let shown = super::lock(&self.presence).reshow(user);
            if let Some(status) = shown {
                self.announce_presence(user, status).await;
            }
        }
        if let Some(present) = heartbeat {
            for chunk in present.chunks(SNAPSHOT_CHUNK) {
                self.publish(BusMessage::Presence {
                    origin: self.node_id(),
                    users: chunk.to_vec(),
                });
            }
        }
    }

    /// The users whose status on this node may have changed since it was last decided: a
    /// socket gone idle (or active again), a grace over, or a status kept for a user with
    /// neither a socket nor a grace. One pass over the sessions, outside the announcements'
    /// lock, so a tick costs each quiet user a few atomic loads; `refresh_presence` decides
    /// for the few suspects.
    fn presence_suspects(&self, config: &PresenceConfig, now: Instant) -> Vec<UserId> {
        let away_after = config.away_after_secs.saturating_mul(1000);
        let now_ms = self.since_epoch_ms(now);
        // (The sessions' lock is let go before the book's is taken: never both at once.)
        let derived: HashMap<UserId, PresenceStatus> = read(&self.sessions)
            .iter()
            .map(|(user, list)| {
                let active = list.iter().any(|h| h.presence.active(now_ms, away_after));
                let status = if active {
                    PresenceStatus::Online
                } else {
                    PresenceStatus::Away
                };
                (*user, status)
            })
            .collect();
        let book = super::lock(&self.presence);
        let grace = Duration::from_millis(config.offline_grace_ms);
        let changed = derived
            .iter()
            .filter(|(user, status)| book.local.get(user) != Some(status))
            .map(|(user, _)| *user);
        let graces_over = book
            .gone_since
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= grace)
            .map(|(user, _)| *user);
        let stale = book
            .local
            .keys()
            .filter(|user| !derived.contains_key(user) && !book.gone_since.contains_key(user))
            .copied();
        changed.chain(graces_over).chain(stale).collect()
    }

    /// What another node says about its users' presence.
    pub(super) async fn apply_remote_presence(
        &self,
        origin: &str,
        users: &[(UserId, PresenceStatus)],
    ) {
        let Some(config) = self.presence_config() else {
            return;
        };
        let until =
            Instant::now() + Duration::from_secs(config.heartbeat_secs.max(1)).saturating_mul(3);
        let _turn = self.presence_turn.lock().await;
        let mut changes = Vec::new();
        {
            let mut book = super::lock(&self.presence);
            for (user, status) in users {
                book.set_remote(origin, *user, *status, until);
                if let Some(shown) = book.reshow(*user) {
                    changes.push((*user, shown));
                }
            }
        }
        for (user, status) in changes {
            self.announce_presence(user, status).await;
        }
    }

    /// Hide `user`'s presence from others, or show it again, on this node; `announce` tells
    /// the other nodes too (the caller stored the choice).
    pub async fn set_presence_hidden(&self, user: UserId, hidden: bool, announce: bool) {
        if announce {
            self.publish(BusMessage::PresenceHidden {
                origin: self.node_id(),
                user,
                hidden,
            });
        }
        let _turn = self.presence_turn.lock().await;
        let shown = {
            let mut book = super::lock(&self.presence);
            if hidden {
                book.hidden.insert(user);
            } else {
                book.hidden.remove(&user);
            }
            book.reshow(user)
        };
        if let Some(status) = shown {
            self.announce_presence(user, status).await;
        }
    }

    /// `user`'s own status (as if not hidden) and whether they hide it.
    pub fn own_presence(&self, user: UserId) -> (PresenceStatus, bool) {
        let book = super::lock(&self.presence);
        (book.real(user), book.hidden.contains(&user))
    }

    /// The users `viewer` shares a room with who are not offline, with their status.
    pub async fn visible_presence(
        &self,
        viewer: UserId,
    ) -> StoreResult<Vec<(UserId, PresenceStatus)>> {
        let shown: Vec<(UserId, PresenceStatus)> = super::lock(&self.presence)
            .shown
            .iter()
            .map(|(user, status)| (*user, *status))
            .collect();
        if shown.is_empty() {
            return Ok(shown);
        }
        let peers = self.room_peers(viewer).await?;
        let mut visible: Vec<_> = shown
            .into_iter()
            .filter(|(user, _)| peers.contains(user))
            .collect();
        visible.sort_unstable();
        Ok(visible)
    }

    /// Everyone who shares a room with `user`, and `user`.
    async fn room_peers(&self, user: UserId) -> StoreResult<HashSet<UserId>> {
        let mut peers = HashSet::from([user]);
        for room in self.membership.rooms_of(user).await? {
            peers.extend(self.membership.members(room).await?.iter().copied());
        }
        Ok(peers)
    }

    /// Tell this node's sessions of everyone who shares a room with `user` (and `user`'s
    /// own) that `user` is now `status`.
    async fn announce_presence(&self, user: UserId, status: PresenceStatus) {
        let peers = match self.room_peers(user).await {
            Ok(peers) => peers,
            Err(err) => {
                // Not fatal: the next change, or a client's `GET /api/v1/presence`, catches up.
                tracing::warn!(user, error = %err, "presence change not announced");
                return;
            }
        };
        let frame: Arc<str> = ServerFrame::Presence { user, status }.to_json().into();
        let peers: Vec<UserId> = peers.into_iter().collect();
        self.deliver(&peers, &Outbound::Ephemeral(frame), None);
    }

    fn publish(&self, message: BusMessage) {
        if let Some(bus) = self.bus.get() {
            bus.publish(message);
        }
    }

    fn node_id(&self) -> String {
        self.bus
            .get()
            .map(|bus| bus.node_id().to_string())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PresenceStatus::{Away, Offline, Online};

    #[test]
    fn a_user_is_as_present_as_on_their_most_present_node_unless_hidden() {
        let mut book = Book::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(90);
        assert_eq!(book.effective(1), Offline);
        assert!(book.set_local(1, Away));
        assert!(!book.set_local(1, Away));
        assert_eq!(book.reshow(1), Some(Away));
        assert_eq!(book.reshow(1), None, "said once");
        book.set_remote("b", 1, Online, later);
        assert_eq!(book.reshow(1), Some(Online));
        book.hidden.insert(1);
        assert_eq!(book.reshow(1), Some(Offline));
        assert_eq!(book.real(1), Online, "the user still sees their own");
        book.hidden.remove(&1);
        assert_eq!(book.reshow(1), Some(Online));
        // The other node goes silent: its word expires, the local one remains.
        assert_eq!(
            book.expire_remote(now + Duration::from_secs(60)),
            Vec::<UserId>::new()
        );
        assert_eq!(book.expire_remote(later), vec![1]);
        assert_eq!(book.reshow(1), Some(Away));
        // An explicit offline from a node removes its word at once.
        book.set_remote("b", 1, Online, later);
        book.set_remote("b", 1, Offline, later);
        assert!(book.remote.is_empty());
        assert!(book.set_local(1, Offline));
        assert_eq!(book.reshow(1), Some(Offline));
        assert!(book.shown.is_empty() && book.local.is_empty());
    }
}

//! Live sessions on this node and fan-out of room events to them.
//!
//! Each WebSocket session owns a bounded queue. Fan-out never waits on a client: it
//! `try_send`s, and a session whose queue is full is closed as a slow consumer, so one slow
//! client can neither stall delivery to others nor grow the server's memory.
//!
//! An event is serialized once and the same `Arc<str>` goes to every recipient. Events reach
//! the hub in commit order (the group-commit writer publishes them), so each session sees a
//! room's events in `seq` order; the session itself still checks for gaps (see `api::ws`),
//! which is what makes delivery across nodes safe too.
//!
//! The hub also keeps who is online (`presence`): it is derived from the same sessions.

mod presence;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::{Notify, mpsc};

use crate::bus::{Bus, BusMessage};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::protocol::PresenceStatus;
use crate::protocol::ServerFrame;
use crate::store::{Event, EventKind, RoomId, StoreResult, UserId};

/// An item on a session's outbound queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A committed room event, already serialized.
    Event {
        room: RoomId,
        seq: i64,
        frame: Arc<str>,
        /// For a `member_left` event: who left (their sessions stop tracking the room).
        left: Option<UserId>,
    },
    /// Typing, read receipts: not part of the room log, dropped rather than gap-filled.
    Ephemeral(Arc<str>),
}

/// Why the server closed a session; `code()` goes into the WebSocket close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    SlowConsumer,
    SessionEnded,
    Idle,
    Shutdown,
    /// The client sent a frame over `limits.max_frame_bytes`.
    FrameTooLarge,
    /// Ended normally (the client closed, or the connection dropped).
    Closed,
}

impl CloseReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow_consumer",
            Self::SessionEnded => "session_ended",
            Self::Idle => "idle_timeout",
            Self::Shutdown => "server_shutdown",
            Self::FrameTooLarge => "frame_too_large",
            Self::Closed => "closed",
        }
    }
}

/// The hub's handle on one live WebSocket session.
#[derive(Debug)]
pub struct SessionHandle {
    pub conn_id: u64,
    pub user_id: UserId,
    pub kind: ListenerKind,
    /// The auth session the connection was opened under (revoking it closes the socket).
    pub session_id: String,
    tx: mpsc::Sender<Outbound>,
    close_reason: Mutex<Option<CloseReason>>,
    closed: Notify,
    /// When it last did something, and whether its client said `away`.
    presence: presence::SessionPresence,
}

/// What a hub session delivers to: both kinds get the same events and count for presence,
/// but each is counted in its own gauge (an operator sizing WebSocket capacity should not
/// see waiting Matrix `/sync` requests as sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// A WebSocket connection (`/api/v1/ws`).
    WebSocket,
    /// A Matrix `/sync` long poll, registered for as long as it waits.
    LongPoll,
}

impl SessionHandle {
    /// Ask the session to close; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let mut slot = self
            .close_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
            // Every waiter: the socket's writer (which sends the close frame) and the task
            // that owns the connection both wait; waking only one could leave the writer
            // asleep and the client without a close frame.
            self.closed.notify_waiters();
        }
    }

    /// Resolves when `close` has been called.
    pub async fn closed(&self) -> CloseReason {
        loop {
            // Register before checking, so a `close` between the check and the wait is not
            // missed (`notify_waiters` keeps no permit for later waiters).
            let notified = self.closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }

    pub fn reason(&self) -> Option<CloseReason> {
        *self
            .close_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, item: Outbound) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(CloseReason::SlowConsumer);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Live sessions on this node and fan-out to them.
pub struct Hub {
    /// Whose sessions get a room's events; every membership event the hub delivers drops
    /// that room's entry.
    membership: Arc<Membership>,
    metrics: Metrics,
    sessions: RwLock<HashMap<UserId, Vec<Arc<SessionHandle>>>>,
    next_conn: AtomicU64,
    /// Other nodes, when clustered.
    bus: OnceLock<Arc<dyn Bus>>,
    /// Presence settings, once enabled (`enable_presence`).
    presence_config: OnceLock<crate::config::PresenceConfig>,
    presence: Mutex<presence::Book>,
    /// Held while a presence change is decided and announced, so they go out in order.
    presence_turn: tokio::sync::Mutex<()>,
    /// Wakes the presence task when users are queued for it.
    presence_wake: Notify,
    /// Sessions' activity is kept as milliseconds since this instant.
    epoch: std::time::Instant,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl Hub {
    pub fn new(membership: Arc<Membership>, metrics: Metrics) -> Self {
        Self {
            membership,
            metrics,
            sessions: RwLock::default(),
            next_conn: AtomicU64::new(1),
            bus: OnceLock::new(),
            presence_config: OnceLock::new(),
            presence: Mutex::default(),
            presence_turn: tokio::sync::Mutex::new(()),
            presence_wake: Notify::new(),
            epoch: std::time::Instant::now(),
        }
    }

    /// Add a live session with an outbound queue of `capacity` items.
    pub fn register(
        &self,
        kind: ListenerKind,
        user_id: UserId,
        session_id: String,
        capacity: usize,
    ) -> (Arc<SessionHandle>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let handle = Arc::new(SessionHandle {
            conn_id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            user_id,
            kind,
            session_id,
            tx,
            close_reason: Mutex::new(None),
            closed: Notify::new(),
            presence: presence::SessionPresence::default(),
        });
        handle.presence.last_active_ms.store(
            self.since_epoch_ms(std::time::Instant::now()),
            Ordering::Relaxed,
        );
        write(&self.sessions)
            .entry(user_id)
            .or_default()
            .push(handle.clone());
        self.gauge(kind).inc();
        (handle, rx)
    }

    fn gauge(&self, kind: ListenerKind) -> &prometheus_client::metrics::gauge::Gauge {
        match kind {
            ListenerKind::WebSocket => &self.metrics.ws_connections,
            ListenerKind::LongPoll => &self.metrics.long_polls,
        }
    }

    /// Drop a closed session. Call `presence_changed` for its user afterwards.
    pub fn unregister(&self, handle: &SessionHandle) {
        let mut was_last = false;
        {
            let mut sessions = write(&self.sessions);
            if let Some(list) = sessions.get_mut(&handle.user_id) {
                let before = list.len();
                list.retain(|h| h.conn_id != handle.conn_id);
                if list.len() < before {
                    self.gauge(handle.kind).dec();
                }
                if list.is_empty() {
                    sessions.remove(&handle.user_id);
                    was_last = true;
                }
            }
        }
        self.presence_session_gone(handle.user_id, was_last);
    }

    /// Open WebSocket connections on this node (waiting long polls are not counted).
    pub fn connection_count(&self) -> usize {
        read(&self.sessions)
            .values()
            .flatten()
            .filter(|handle| handle.kind == ListenerKind::WebSocket)
            .count()
    }

    /// Sessions that were just revoked in the store (deactivation, a password reset or
    /// change): close their connections here and on every other node. Without this, a
    /// socket opened on another node would outlive the session it was opened under.
    pub fn end_sessions(&self, user: UserId, sessions: &[String]) {
        if let Some(bus) = self.bus.get() {
            bus.publish(BusMessage::EndSessions {
                origin: bus.node_id().to_string(),
                user,
                sessions: sessions.to_vec(),
            });
        }
        self.close_sessions(user, sessions);
    }

    /// Close this node's connections opened under any of `sessions` of `user`.
    pub fn close_sessions(&self, user: UserId, sessions: &[String]) {
        if let Some(list) = read(&self.sessions).get(&user) {
            for handle in list {
                if sessions.contains(&handle.session_id) {
                    handle.close(CloseReason::SessionEnded);
                }
            }
        }
    }

    /// Close every connection (shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        for handle in read(&self.sessions).values().flatten() {
            handle.close(reason);
        }
    }

    /// Join a cluster: from now on what this node publishes also goes to the other nodes.
    pub fn set_bus(&self, bus: Arc<dyn Bus>) {
        let _ = self.bus.set(bus);
    }

    /// `local` without a cluster, else the bus's connection status.
    pub fn bus_status(&self) -> &'static str {
        self.bus.get().map_or("local", |bus| bus.status())
    }

    /// A committed event from this node: deliver it here and tell the other nodes.
    pub async fn publish_event(&self, event: &Event) -> StoreResult<()> {
        if let Some(bus) = self.bus.get() {
            bus.publish(BusMessage::Event {
                origin: bus.node_id().to_string(),
                event: Box::new(event.clone()),
            });
        }
        self.deliver_event(event).await
    }

    /// An ephemeral frame from this node: deliver it here and tell the other nodes.
    pub async fn publish_ephemeral(
        &self,
        room: RoomId,
        frame: Arc<str>,
        except_conn: Option<u64>,
    ) -> StoreResult<()> {
        if let Some(bus) = self.bus.get() {
            bus.publish(BusMessage::Ephemeral {
                origin: bus.node_id().to_string(),
                room,
                frame: frame.to_string(),
            });
        }
        self.deliver_ephemeral(room, frame, except_conn).await
    }

    /// Deliver a committed event to every live session of every member on this node.
    pub async fn deliver_event(&self, event: &Event) -> StoreResult<()> {
        if matches!(event.kind, EventKind::MemberJoined | EventKind::MemberLeft) {
            self.membership.invalidate(event.room_id);
        }
        let members = self.membership.members(event.room_id).await?;
        let frame: Arc<str> = ServerFrame::Event { event }.to_json().into();
        let left = (event.kind == EventKind::MemberLeft)
            .then_some(event.target)
            .flatten();
        let item = Outbound::Event {
            room: event.room_id,
            seq: event.seq,
            frame,
            left,
        };
        self.deliver(&members, &item, None);
        // Whoever just left no longer counts as a member but must learn that they left.
        if let Some(left) = left {
            self.deliver(&[left], &item, None);
        }
        Ok(())
    }

    /// Deliver an ephemeral frame (typing, read receipt) to a room's members on this node,
    /// except the connection it came from.
    pub async fn deliver_ephemeral(
        &self,
        room: RoomId,
        frame: Arc<str>,
        except_conn: Option<u64>,
    ) -> StoreResult<()> {
        let members = self.membership.members(room).await?;
        self.deliver(&members, &Outbound::Ephemeral(frame), except_conn);
        Ok(())
    }

    /// Deliver a frame to one user's live sessions on this node only (a plugin's private
    /// command reply: it is answered on the node that took the command).
    pub fn deliver_to_user(&self, user: UserId, frame: Arc<str>) {
        self.deliver(&[user], &Outbound::Ephemeral(frame), None);
    }

    fn deliver(&self, users: &[UserId], item: &Outbound, except_conn: Option<u64>) {
        let sessions = read(&self.sessions);
        let mut delivered = 0u64;
        for user in users {
            let Some(list) = sessions.get(user) else {
                continue;
            };
            for handle in list {
                if Some(handle.conn_id) != except_conn && handle.push(item.clone()) {
                    delivered += 1;
                }
            }
        }
        self.metrics.deliveries.inc_by(delivered);
    }
}

// Locks here guard plain maps; a panic elsewhere cannot leave them half-updated, so a
// poisoned lock is still safe to use.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait::async_trait]
impl crate::bus::Inbound for Hub {
    async fn remote_event(&self, event: &Event) -> StoreResult<()> {
        self.deliver_event(event).await
    }

    async fn remote_ephemeral(&self, room: RoomId, frame: Arc<str>) -> StoreResult<()> {
        self.deliver_ephemeral(room, frame, None).await
    }

    fn remote_end_sessions(&self, user: UserId, sessions: &[String]) {
        self.close_sessions(user, sessions);
    }

    async fn remote_presence(&self, origin: &str, users: &[(UserId, PresenceStatus)]) {
        self.apply_remote_presence(origin, users).await;
    }

    async fn remote_presence_hidden(&self, user: UserId, hidden: bool) {
        self.set_presence_hidden(user, hidden, false).await;
    }
}

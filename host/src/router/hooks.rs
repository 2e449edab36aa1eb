//! The seam between the message path and the plugin layer.
//!
//! The router only knows this trait; `plugins::PluginHost` implements it with WebAssembly
//! components, and [`NoHooks`] stands in when no plugin is loaded. Keeping the seam here keeps
//! wasmtime out of the router and lets the router skip a hook entirely when nothing
//! implements it.

use async_trait::async_trait;

use crate::store::{Event, EventId, Metadata, Room, RoomId, User, UserId};

/// The hooks the router can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    MessagePreSend,
    MessageDelivered,
    OnLogin,
    OnConnect,
}

/// A message about to be stored: a new one, or an edit of `editing`.
#[derive(Debug, Clone)]
pub struct PreSend {
    pub room_id: RoomId,
    pub sender_id: UserId,
    pub sender_name: String,
    pub client_msg_id: String,
    /// For an edit: the message being edited (the hook sees the new body in `body`).
    pub editing: Option<EventId>,
    pub body: String,
    pub metadata: Metadata,
}

/// What the chain decided. Rejects name the plugin and carry its code and reason, which the
/// sender is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreSendOutcome {
    /// Store the message with this body and metadata (`modified` if any plugin changed them).
    Continue {
        body: String,
        metadata: Metadata,
        modified: bool,
    },
    Reject {
        plugin: String,
        code: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { plugin: String, reason: String },
}

#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// Whether any enabled plugin implements `hook`; the router skips the call when not.
    fn implements(&self, hook: HookKind) -> bool;
    async fn message_pre_send(&self, msg: PreSend) -> PreSendOutcome;
    /// Called after a message is stored and fanned out. Must not block: implementations queue
    /// the event (bounded) and observe it asynchronously.
    fn message_delivered(&self, room: &Room, event: &Event);
    async fn on_login(&self, user: &User) -> Decision;
    async fn on_connect(&self, user: &User, session_id: &str) -> Decision;
}

/// The hook layer when no plugin is loaded: everything continues or is allowed.
#[derive(Debug, Default)]
pub struct NoHooks;

#[async_trait]
impl Hooks for NoHooks {
    fn implements(&self, _hook: HookKind) -> bool {
        false
    }
    async fn message_pre_send(&self, msg: PreSend) -> PreSendOutcome {
        PreSendOutcome::Continue {
            body: msg.body,
            metadata: msg.metadata,
            modified: false,
        }
    }
    fn message_delivered(&self, _room: &Room, _event: &Event) {}
    async fn on_login(&self, _user: &User) -> Decision {
        Decision::Allow
    }
    async fn on_connect(&self, _user: &User, _session_id: &str) -> Decision {
        Decision::Allow
    }
}

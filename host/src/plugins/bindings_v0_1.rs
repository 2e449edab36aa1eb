//! Host side of WIT `switchboard:plugin@0.1.0`: the generated bindings, the host imports
//! (`log`, `config`, `kv`) behind their capability checks, and conversions between the
//! server's types and the interface's.
//!
//! When the interface grows to 0.2 this module stays as it is (pointing at a frozen copy of
//! the 0.1 WIT) and a `bindings_v0_2` joins it; `instance` picks one by the version of the
//! `hooks` interface a component exports.

use wasmtime::component::{HasSelf, Linker};

use super::capabilities::HostState;
use super::manifest::{Capability, HookName};
use crate::router::hooks::PreSend;
use crate::store::{self, Metadata};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // Hooks are called with `call_async` so that WASI's host functions (which are async in
    // wasmtime-wasi and would otherwise `block_on` inside a tokio worker) and epoch yields
    // work inside the server's runtime. The host imports themselves are synchronous: they
    // never do I/O (see `kv`).
    exports: { default: async },
});

pub(crate) use switchboard::plugin::types::{
    Decision, Event, EventKind, HookSet, HostError, Message, PreSendOutcome, Room, RoomKind, User,
};

/// The export every 0.1 component has; used to tell interface versions apart.
pub(crate) const HOOKS_EXPORT: &str = "switchboard:plugin/hooks@0.1.0";

/// Longest log line a plugin may write; longer ones are cut.
const MAX_LOG_LINE: usize = 4096;

/// Add WASI (locked down by the store's context) and the 0.1 host imports to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

impl HostState {
    fn require(&self, capability: Capability) -> Result<(), HostError> {
        if self.ctx.granted(capability) {
            Ok(())
        } else {
            Err(HostError::NotGranted)
        }
    }
}

impl switchboard::plugin::types::Host for HostState {}

impl switchboard::plugin::log::Host for HostState {
    fn write(
        &mut self,
        level: switchboard::plugin::log::Level,
        mut message: String,
    ) -> Result<(), HostError> {
        use switchboard::plugin::log::Level;
        self.require(Capability::Log)?;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.ctx.name;
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
        Ok(())
    }
}

impl switchboard::plugin::config::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<String>, HostError> {
        self.require(Capability::Config)?;
        Ok(self.ctx.settings.get(&key).cloned())
    }

    fn keys(&mut self) -> Result<Vec<String>, HostError> {
        self.require(Capability::Config)?;
        Ok(self.ctx.settings.keys().cloned().collect())
    }
}

impl switchboard::plugin::kv::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, HostError> {
        self.kv()?.get(&key)
    }
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), HostError> {
        self.kv()?.set(key, value)
    }
    fn delete(&mut self, key: String) -> Result<bool, HostError> {
        self.kv()?.delete(&key)
    }
    fn keys(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, HostError> {
        self.kv()?.keys(&prefix, limit)
    }
    fn increment(&mut self, key: String, delta: i64) -> Result<i64, HostError> {
        self.kv()?.increment(key, delta)
    }
}

impl HostState {
    fn kv(&self) -> Result<&super::kv::KvSpace, HostError> {
        self.ctx.kv.as_deref().ok_or(HostError::NotGranted)
    }
}

impl HookSet {
    pub(crate) fn contains_hook(self, hook: HookName) -> bool {
        self.contains(match hook {
            HookName::MessagePreSend => HookSet::MESSAGE_PRE_SEND,
            HookName::MessageDelivered => HookSet::MESSAGE_DELIVERED,
            HookName::OnLogin => HookSet::ON_LOGIN,
            HookName::OnConnect => HookSet::ON_CONNECT,
        })
    }
}

pub(crate) fn metadata_to_wit(metadata: &Metadata) -> Vec<(String, String)> {
    metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(crate) fn message(msg: &PreSend, body: &str, metadata: &Metadata) -> Message {
    Message {
        room_id: msg.room_id,
        sender_id: msg.sender_id,
        sender_name: msg.sender_name.clone(),
        client_msg_id: msg.client_msg_id.clone(),
        editing: msg.editing,
        body: body.to_string(),
        metadata: metadata_to_wit(metadata),
    }
}

pub(crate) fn user(user: &store::User) -> User {
    User {
        id: user.id,
        name: user.name.clone(),
        display_name: user.display_name.clone(),
        is_admin: user.is_admin,
        is_bot: user.is_bot,
    }
}

pub(crate) fn room(room: &store::Room) -> Room {
    Room {
        id: room.id,
        kind: match room.kind {
            store::RoomKind::Direct => RoomKind::Direct,
            store::RoomKind::Group => RoomKind::Group,
        },
        name: room.name.clone(),
    }
}

pub(crate) fn event(event: &store::Event) -> Event {
    Event {
        id: event.id,
        room_id: event.room_id,
        seq: event.seq,
        kind: match event.kind {
            store::EventKind::Message => EventKind::Message,
            store::EventKind::Edit => EventKind::Edit,
            store::EventKind::Delete => EventKind::Delete,
            store::EventKind::MemberJoined => EventKind::MemberJoined,
            store::EventKind::MemberLeft => EventKind::MemberLeft,
        },
        sender_id: event.sender_id,
        target: event.target,
        body: event.body.clone(),
        metadata: metadata_to_wit(&event.metadata),
        created_at: event.created_at,
    }
}

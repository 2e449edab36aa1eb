//! Host side of WIT `switchboard:plugin@0.2.0` (`wit/`): the generated bindings, the 0.2
//! host imports (`log`, `config`, `kv`, `bot`) adapted to the version-neutral capability
//! logic in `capabilities`, and conversions between the server's types and 0.2's.
//!
//! 0.2 is 0.1 plus: the `command` hook, the `bot`, `http` and `rooms` imports, and
//! `host-error::denied`.

use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker};

use super::call::{DecisionAnswer, PreSendAnswer, Request, Response};
use super::capabilities::{CapError, HostState, LogLevel};
use super::manifest::HookName;
use crate::store;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // Hooks are called with `call_async` so that WASI's host functions (which are async in
    // wasmtime-wasi and would otherwise `block_on` inside a tokio worker) and epoch yields
    // work inside the server's runtime. The host imports themselves are synchronous: they
    // never do I/O (see `kv`).
    exports: { default: async },
    // `http.send` waits for the network: async, so the guest's fiber yields meanwhile.
    imports: {
        "switchboard:plugin/http.send": async,
        "switchboard:plugin/bot.post": async,
        "switchboard:plugin/bot.reply": async,
        "switchboard:plugin/rooms.info": async,
        "switchboard:plugin/rooms.members": async,
        "switchboard:plugin/rooms.display-name": async,
    },
});

use switchboard::plugin::types::{
    AuthOutcome, CommandCall, CommandOutcome, Credentials, Decision, Event, EventKind, HookSet,
    HostError, Message, PreSendOutcome, Room, RoomKind, User,
};

use super::call::{AuthAnswer, CommandAnswer};

/// The export every 0.2 component has; used to tell interface versions apart.
pub(crate) const HOOKS_EXPORT: &str = "switchboard:plugin/hooks@0.2.0";

/// Add WASI (locked down by the store's context) and the 0.2 host imports to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

/// The hooks the component says it implements.
pub(crate) async fn implemented_hooks(
    bindings: &Plugin,
    store: &mut Store<HostState>,
) -> wasmtime::Result<Vec<HookName>> {
    let set = bindings
        .switchboard_plugin_hooks()
        .call_implemented_hooks(store)
        .await?;
    Ok([
        (HookSet::MESSAGE_PRE_SEND, HookName::MessagePreSend),
        (HookSet::MESSAGE_DELIVERED, HookName::MessageDelivered),
        (HookSet::ON_LOGIN, HookName::OnLogin),
        (HookSet::ON_CONNECT, HookName::OnConnect),
        (HookSet::COMMAND, HookName::Command),
        (HookSet::AUTHENTICATE, HookName::Authenticate),
    ]
    .into_iter()
    .filter(|(flag, _)| set.contains(*flag))
    .map(|(_, hook)| hook)
    .collect())
}

/// Make one hook call.
pub(crate) async fn call(
    bindings: &Plugin,
    store: &mut Store<HostState>,
    request: Request<'_>,
) -> wasmtime::Result<Response> {
    let hooks = bindings.switchboard_plugin_hooks();
    Ok(match request {
        Request::PreSend {
            msg,
            body,
            metadata,
        } => {
            let input = Message {
                room_id: msg.room_id,
                sender_id: msg.sender_id,
                sender_name: msg.sender_name.clone(),
                client_msg_id: msg.client_msg_id.clone(),
                editing: msg.editing,
                body: body.to_string(),
                metadata: pairs(metadata),
            };
            Response::PreSend(match hooks.call_message_pre_send(store, &input).await? {
                PreSendOutcome::Continue => PreSendAnswer::Continue,
                PreSendOutcome::Modify(m) => PreSendAnswer::Modify {
                    body: m.body,
                    metadata: m.metadata,
                },
                PreSendOutcome::Reject(r) => PreSendAnswer::Reject {
                    code: r.code,
                    reason: r.reason,
                },
            })
        }
        Request::Delivered(room_, event_) => {
            hooks
                .call_message_delivered(store, &room(room_), &event(event_))
                .await?;
            Response::Delivered
        }
        Request::Login(u) => decision(hooks.call_on_login(store, &user(u)).await?),
        Request::Connect(u, session) => {
            decision(hooks.call_on_connect(store, &user(u), session).await?)
        }
        Request::Command(c) => {
            let input = CommandCall {
                name: c.name.clone(),
                args: c.args.clone(),
                room_id: c.room_id,
                sender: user(&c.sender),
            };
            Response::Command(match hooks.call_command(store, &input).await? {
                CommandOutcome::Done => CommandAnswer::Done,
                CommandOutcome::Reply(text) => CommandAnswer::Reply(text),
                CommandOutcome::PrivateReply(text) => CommandAnswer::PrivateReply(text),
            })
        }
        Request::Authenticate(a) => {
            let input = Credentials {
                method: a.method.clone(),
                username: a.username.clone(),
                credential: a.credential.clone(),
            };
            Response::Auth(match hooks.call_authenticate(store, &input).await? {
                AuthOutcome::Accept(name) => AuthAnswer::Accept(name),
                AuthOutcome::Reject(reason) => AuthAnswer::Reject(reason),
                AuthOutcome::Defer => AuthAnswer::Defer,
            })
        }
    })
}

fn decision(d: Decision) -> Response {
    Response::Decision(match d {
        Decision::Allow => DecisionAnswer::Allow,
        Decision::Deny(reason) => DecisionAnswer::Deny(reason),
    })
}

impl From<CapError> for HostError {
    fn from(e: CapError) -> Self {
        match e {
            CapError::NotGranted => Self::NotGranted,
            CapError::TooLarge => Self::TooLarge,
            CapError::QuotaExceeded => Self::QuotaExceeded,
            CapError::InvalidArgument(m) => Self::InvalidArgument(m),
            CapError::Unavailable(m) => Self::Unavailable(m),
            CapError::Denied(m) => Self::Denied(m),
        }
    }
}

impl switchboard::plugin::types::Host for HostState {}

impl switchboard::plugin::log::Host for HostState {
    fn write(
        &mut self,
        level: switchboard::plugin::log::Level,
        message: String,
    ) -> Result<(), HostError> {
        use switchboard::plugin::log::Level;
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        Ok(self.log_write(level, message)?)
    }
}

impl switchboard::plugin::config::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<String>, HostError> {
        Ok(self.config_get(&key)?)
    }

    fn keys(&mut self) -> Result<Vec<String>, HostError> {
        Ok(self.config_keys()?)
    }
}

impl switchboard::plugin::kv::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.kv_get(&key)?)
    }
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), HostError> {
        Ok(self.kv_set(key, value)?)
    }
    fn delete(&mut self, key: String) -> Result<bool, HostError> {
        Ok(self.kv_delete(&key)?)
    }
    fn keys(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, HostError> {
        Ok(self.kv_keys(&prefix, limit)?)
    }
    fn increment(&mut self, key: String, delta: i64) -> Result<i64, HostError> {
        Ok(self.kv_increment(key, delta)?)
    }
}

impl switchboard::plugin::bot::Host for HostState {
    async fn post(&mut self, room_id: i64, body: String) -> Result<(), HostError> {
        Ok(self.bot_post(Some(room_id), body).await?)
    }
    async fn reply(&mut self, body: String) -> Result<(), HostError> {
        let room = self.call.room;
        Ok(self.bot_post(room, body).await?)
    }
    fn user_id(&mut self) -> Result<i64, HostError> {
        Ok(self.bot_user_id()?)
    }
}

impl switchboard::plugin::http::Host for HostState {
    async fn send(
        &mut self,
        request: switchboard::plugin::http::Request,
    ) -> Result<switchboard::plugin::http::Response, HostError> {
        let response = self
            .http_send(super::http::HttpRequest {
                method: request.method,
                url: request.url,
                headers: request.headers,
                body: request.body,
            })
            .await?;
        Ok(switchboard::plugin::http::Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

impl switchboard::plugin::rooms::Host for HostState {
    async fn info(
        &mut self,
        room_id: i64,
    ) -> Result<switchboard::plugin::rooms::RoomInfo, HostError> {
        let (rooms, started) = self.rooms()?;
        let result = rooms.info(room_id).await;
        self.settle(started);
        let (r, member_count) = result?;
        Ok(switchboard::plugin::rooms::RoomInfo {
            room: room(&r),
            topic: r.topic.clone(),
            member_count,
        })
    }

    async fn members(
        &mut self,
        room_id: i64,
    ) -> Result<Vec<switchboard::plugin::rooms::Member>, HostError> {
        use switchboard::plugin::rooms::{Member, Role};
        let (rooms, started) = self.rooms()?;
        let result = rooms.members(room_id).await;
        self.settle(started);
        Ok(result?
            .into_iter()
            .map(|(u, m)| Member {
                user: user(&u),
                role: match m.role {
                    store::Role::Member => Role::Member,
                    store::Role::Admin => Role::Admin,
                    store::Role::Owner => Role::Owner,
                },
            })
            .collect())
    }

    async fn display_name(&mut self, user_id: i64) -> Result<String, HostError> {
        let (rooms, started) = self.rooms()?;
        let result = rooms.display_name(user_id).await;
        self.settle(started);
        Ok(result?)
    }
}

fn pairs(metadata: &store::Metadata) -> Vec<(String, String)> {
    metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn user(user: &store::User) -> User {
    User {
        id: user.id,
        name: user.name.clone(),
        display_name: user.display_name.clone(),
        is_admin: user.is_admin,
        is_bot: user.is_bot,
    }
}

fn room(room: &store::Room) -> Room {
    Room {
        id: room.id,
        kind: match room.kind {
            store::RoomKind::Direct => RoomKind::Direct,
            store::RoomKind::Group => RoomKind::Group,
        },
        name: room.name.clone(),
    }
}

fn event(event: &store::Event) -> Event {
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
        metadata: pairs(&event.metadata),
        created_at: event.created_at,
    }
}

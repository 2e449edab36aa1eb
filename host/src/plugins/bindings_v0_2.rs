//! Host side of WIT `switchboard:plugin@0.2.0` (`wit/`): the generated bindings, the 0.2
//! host imports (`log`, `config`, `kv`, `bot`) adapted to the version-neutral capability
//! logic in `capabilities`, and conversions between the server's types and 0.2's.
//!
//! 0.2 is 0.1 plus: the `command` hook, the `bot`, `http` and `rooms` imports, and
//! `host-error::denied`.

use super::call::{DecisionAnswer, PreSendAnswer, Request, Response};
use super::capabilities::{CapError, HostState, LogLevel};
use crate::router::hooks::HookKind;
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

super::bindings_common::interface_glue!(
    extra_hooks: [(COMMAND, Command), (AUTHENTICATE, Authenticate)],
    extra_calls: |hooks, store| {
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
    },
    extra_errors: {
        CapError::Unavailable(m) => Self::Unavailable(m),
        CapError::Denied(m) => Self::Denied(m),
    },
);

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
            .http_send(super::capabilities::http::HttpRequest {
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

//! Host side of WIT `switchboard:plugin@0.2.0`, frozen in `wit/v0.2/`: the generated
//! bindings, the 0.2 host imports (`log`, `config`, `kv`, `bot`, `http`, `rooms`) adapted
//! to the version-neutral capability logic in `capabilities`, and conversions between the
//! server's types and 0.2's. A plugin built against 0.2 keeps loading through this module.
//!
//! 0.2 is 0.1 plus: the `command` hook, the `bot`, `http` and `rooms` imports, and
//! `host-error::denied`.

use super::call::{DecisionAnswer, PreSendAnswer, Request, Response};
use super::capabilities::{CapError, HostState, LogLevel};
use crate::router::hooks::HookKind;
use crate::store;

wasmtime::component::bindgen!({
    path: "../wit/v0.2",
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
    Decision, Event, EventKind, HookSet, HostError, Message, PreSendOutcome, Room, RoomKind, User,
};

/// The export every 0.2 component has; used to tell interface versions apart.
pub(crate) const HOOKS_EXPORT: &str = "switchboard:plugin/hooks@0.2.0";

super::bindings_common::interface_glue!(
    extra_hooks: [(COMMAND, Command), (AUTHENTICATE, Authenticate)],
    extra_calls: |hooks, store| {
        Request::Command(c) => command(hooks, store, c).await?,
        Request::Authenticate(a) => authenticate(hooks, store, a).await?,
        // The chain never routes a hook the plugin did not declare; a 0.2 plugin cannot.
        Request::FileUpload { .. } | Request::FileDownload(..) => {
            wasmtime::bail!("interface 0.2 has no such hook")
        }
    },
    extra_errors: {
        CapError::Unavailable(m) => Self::Unavailable(m),
        CapError::Denied(m) => Self::Denied(m),
    },
    extra_message_fields: |msg| {},
    extra_event_fields: |event| {},
);

super::bindings_common::since_v0_2!(extra_bot_imports: {});

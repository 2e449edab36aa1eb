//! Host side of WIT `switchboard:plugin@0.1.0`, frozen in `wit/v0.1/`: the generated
//! bindings, the 0.1 host imports (`log`, `config`, `kv`) adapted to the version-neutral
//! capability logic in `capabilities`, and conversions between the server's types and
//! 0.1's. A plugin built against 0.1 keeps loading through this module unchanged.

use super::call::{DecisionAnswer, PreSendAnswer, Request, Response};
use super::capabilities::{CapError, HostState, LogLevel};
use crate::router::hooks::HookKind;
use crate::store;

wasmtime::component::bindgen!({
    path: "../wit/v0.1",
    world: "plugin",
    // Hooks are called with `call_async` so that WASI's host functions (which are async in
    // wasmtime-wasi and would otherwise `block_on` inside a tokio worker) and epoch yields
    // work inside the server's runtime. The host imports themselves are synchronous: they
    // never do I/O (see `kv`).
    exports: { default: async },
});

use switchboard::plugin::types::{
    Decision, Event, EventKind, HookSet, HostError, Message, PreSendOutcome, Room, RoomKind, User,
};

/// The export every 0.1 component has; used to tell interface versions apart.
pub(crate) const HOOKS_EXPORT: &str = "switchboard:plugin/hooks@0.1.0";

super::bindings_common::interface_glue!(
    extra_hooks: [],
    // The chain never routes a hook the plugin did not declare; a 0.1 plugin cannot.
    extra_calls: |hooks, store| {
        Request::Command(_)
        | Request::Authenticate(_)
        | Request::FileUpload { .. }
        | Request::FileDownload(..) => {
            wasmtime::bail!("interface 0.1 has no such hook")
        }
    },
    // 0.1 has no `denied`: a refusal by policy reads as `unavailable`.
    extra_errors: {
        CapError::Unavailable(m) | CapError::Denied(m) => Self::Unavailable(m),
    },
    extra_message_fields: |msg| {},
    extra_event_fields: |event| {},
);

//! The operator's language model (capability `llm`, and an `[llm]` endpoint in the server's
//! configuration), governed by the server: the prompt and the reply pass its DLP detectors,
//! context comes only from rooms the *invoking user* (the person who caused the hook) is a
//! member of, the model's tools run with that person's permissions under the operator's
//! policy, and every call is audited and counted against daily token budgets
//! ([`HostError::Denied`], saying which budget, when spent). Only `command`, `message-delivered` and
//! `message-pre-send` may call it; elsewhere every call is [`HostError::InvalidArgument`].

#[cfg(target_arch = "wasm32")]
use crate::__wit::switchboard::plugin::llm as wit;
// Natively, the fake host of `testing` answers (so hooks run in `cargo test`).
use crate::HostError;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::llm as wit;

pub use crate::__wit::switchboard::plugin::llm::{
    ChatMessage, Completion, ContextSource, Delivery, Request, Role,
};

/// Ask and wait for the whole reply (it counts against the hook's wall-clock budget; tools
/// under an `ask` policy are refused, as there is nobody to ask mid-call).
pub fn complete(request: &Request) -> Result<Completion, HostError> {
    wit::complete(request)
}

/// Ask, and let the host deliver the reply where `delivery` says (it needs `bot` too: the
/// answer comes from the plugin's bot), with `preface` before it in a posted message. Returns once the request
/// is checked; later failures are shown to the invoking user as a notice.
pub fn answer(
    request: &Request,
    delivery: &Delivery,
    preface: Option<&str>,
) -> Result<(), HostError> {
    wit::answer(request, *delivery, preface)
}

/// The invoking user's decision on a tool call waiting for their approval (`code` is what
/// the host showed them); [`HostError::InvalidArgument`] for an unknown, expired or another
/// person's code.
pub fn decide(code: &str, approve: bool) -> Result<(), HostError> {
    wit::decide(code, approve)
}

impl ChatMessage {
    /// An instruction to the model.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// What the person asks.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An earlier answer of the model.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

impl ContextSource {
    /// The latest `limit` messages of a room's main timeline.
    pub fn room(room_id: i64, limit: u32) -> Self {
        Self {
            room_id,
            thread_root: None,
            limit,
            since_ms: None,
        }
    }

    /// The latest `limit` messages of the thread of `root` (its root and replies).
    pub fn thread(room_id: i64, root: i64, limit: u32) -> Self {
        Self {
            room_id,
            thread_root: Some(root),
            limit,
            since_ms: None,
        }
    }
}

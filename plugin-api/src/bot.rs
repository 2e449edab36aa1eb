//! The plugin's own bot user (capability `bot`): post in rooms the bot is a member of, or
//! reply in the room where the current hook fired.
//!
//! Posts are queued and sent by the server after the hook returns, through the same path
//! as any user's message (membership, rate limit, the `message-pre-send` chain). A post the
//! server then refuses is logged by the server; the plugin is not told. The plugin is
//! never called for its own bot's messages, and chains of bots answering bots are cut after
//! the operator's `[bot] max_depth`.

#[cfg(target_arch = "wasm32")]
use crate::__wit::switchboard::plugin::bot as wit;
// Natively, the fake host of `testing` answers (so hooks run in `cargo test`).
use crate::HostError;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::bot as wit;

/// Post `body` in room `room_id` as the bot; [`HostError::Denied`] when the bot is not a
/// member of the room.
pub fn post(room_id: i64, body: &str) -> Result<(), HostError> {
    wit::post(room_id, body)
}

/// Post `body` as the bot in the room where the current hook fired (same membership rule).
pub fn reply(body: &str) -> Result<(), HostError> {
    wit::reply(body)
}

/// Post `body` as the bot in the thread of `root_id`, a top-level message of `room_id`
/// (same membership rule; the server refuses — and logs — a reply to a reply, a deleted
/// root or one in another room).
pub fn reply_in_thread(room_id: i64, root_id: i64, body: &str) -> Result<(), HostError> {
    wit::reply_in_thread(room_id, root_id, body)
}

/// React as the bot to `message_id`, a message of `room_id`, with one emoji (`"👍"`) or a
/// `:shortcode:` ([`HostError::InvalidArgument`] for anything else; same membership rule as
/// posts). Sent when the hook returns; reacting twice with one emoji is one reaction.
pub fn react(room_id: i64, message_id: i64, emoji: &str) -> Result<(), HostError> {
    wit::react(room_id, message_id, emoji)
}

/// The bot's user id.
pub fn user_id() -> Result<i64, HostError> {
    wit::user_id()
}

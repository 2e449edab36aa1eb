//! Read-only room and user lookups (capability `rooms`): limited to rooms the plugin's bot
//! is a member of (and users who share one with it), or every room when the operator set
//! `[rooms] scope = "all"`. Anything outside the scope is [`HostError::Denied`].

#[cfg(target_arch = "wasm32")]
use crate::__wit::switchboard::plugin::rooms as wit;
// Natively, the fake host of `testing` answers (so hooks run in `cargo test`).
use crate::HostError;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::rooms as wit;

pub use crate::__wit::switchboard::plugin::rooms::{Member, Role, RoomInfo};

/// A room's name, kind, topic and member count.
pub fn info(room_id: i64) -> Result<RoomInfo, HostError> {
    wit::info(room_id)
}

/// A room's members with their roles.
pub fn members(room_id: i64) -> Result<Vec<Member>, HostError> {
    wit::members(room_id)
}

/// A user's display name.
pub fn display_name(user_id: i64) -> Result<String, HostError> {
    wit::display_name(user_id)
}

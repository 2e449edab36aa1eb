//! The WebSocket wire protocol: JSON text frames, each an object with a `type`.
//!
//! Client frames are parsed strictly (`deny_unknown_fields`) so a typo is an error rather
//! than a silently ignored field. Every client frame may carry a `req` id, echoed in the
//! `ack` or `error` it causes. `docs/protocol.md` documents each frame with examples.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;
use crate::store::{Event, EventId, Metadata, RoomId, UserId};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Post a message; acked only after it is committed.
    Send {
        #[serde(default)]
        req: Option<String>,
        room: RoomId,
        client_msg_id: String,
        body: String,
        #[serde(default)]
        metadata: Metadata,
        /// Files uploaded to this room by the sender, to attach.
        #[serde(default)]
        files: Vec<i64>,
        /// A reply in the thread of this top-level message of the room.
        #[serde(default)]
        thread_root: Option<EventId>,
        /// A reply that clients should show in the room's timeline too.
        #[serde(default)]
        also_to_room: bool,
    },
    Edit {
        #[serde(default)]
        req: Option<String>,
        room: RoomId,
        message: EventId,
        body: String,
    },
    Delete {
        #[serde(default)]
        req: Option<String>,
        room: RoomId,
        message: EventId,
    },
    /// React to a message with one emoji (or `:shortcode:`).
    React {
        #[serde(default)]
        req: Option<String>,
        room: RoomId,
        message: EventId,
        emoji: String,
    },
    /// Take back one's own reaction.
    Unreact {
        #[serde(default)]
        req: Option<String>,
        room: RoomId,
        message: EventId,
        emoji: String,
    },
    /// Pin a message to the room.
    Pin {
        #[serde(default)]
        req: Option<String>,
        room: RoomId,
        message: EventId,
    },
    Unpin {
        #[serde(default)]
        req: Option<String>,
        room: RoomId,
        message: EventId,
    },
    /// Move the read cursor.
    Read {
        #[serde(default)]
        req: Option<String>,
        room: RoomId,
        seq: i64,
    },
    /// Typing indicator (not stored); `active: false` stops it early.
    Typing {
        #[serde(default)]
        req: Option<String>,
        room: RoomId,
        #[serde(default = "yes")]
        active: bool,
    },
    /// The client says whether its user is looking at it: `away` when its window is hidden
    /// or idle, `online` when they are back (any frame that does something counts as
    /// activity too).
    Presence {
        #[serde(default)]
        req: Option<String>,
        status: ClientPresence,
    },
    /// Catch up after a reconnect: for each room, the last `seq` the client has seen.
    /// The server sends every event after it, then `synced`, then live events, with no gap
    /// and no duplicate.
    Sync {
        #[serde(default)]
        req: Option<String>,
        #[serde(deserialize_with = "room_keys")]
        rooms: BTreeMap<RoomId, i64>,
    },
    Ping {
        #[serde(default)]
        req: Option<String>,
    },
}

fn yes() -> bool {
    true
}

/// JSON object keys are strings; room ids are integers. (serde_json would convert on its
/// own, but not through the buffering an internally tagged enum does.)
fn room_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<RoomId, i64>, D::Error> {
    let raw = BTreeMap::<String, i64>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            k.parse::<RoomId>()
                .map(|k| (k, v))
                .map_err(|_| serde::de::Error::custom(format!("room id `{k}` is not an integer")))
        })
        .collect()
}

impl ClientFrame {
    pub fn req(&self) -> Option<&str> {
        match self {
            Self::Send { req, .. }
            | Self::Edit { req, .. }
            | Self::Delete { req, .. }
            | Self::React { req, .. }
            | Self::Unreact { req, .. }
            | Self::Pin { req, .. }
            | Self::Unpin { req, .. }
            | Self::Read { req, .. }
            | Self::Presence { req, .. }
            | Self::Typing { req, .. }
            | Self::Sync { req, .. }
            | Self::Ping { req } => req.as_deref(),
        }
    }
}

/// Whether a user is around, as people who share a room with them see it. Ordered: a user
/// with sessions on several nodes is the most present of them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// No live socket (or hidden by the user).
    Offline,
    /// Sockets, but nothing sent for a while, or every client said its window is hidden.
    Away,
    Online,
}

/// What a client says about its user in a `presence` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientPresence {
    Online,
    Away,
}

/// What the server acknowledges after a committed write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ack {
    pub room: RoomId,
    /// The message id (the id of its `message` event).
    pub id: EventId,
    /// The `seq` of the event this write created (for a retried send: the original's).
    pub seq: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_msg_id: Option<String>,
    /// True when a plugin changed the body or metadata (e.g. DLP redaction); the stored
    /// body is then in `body`.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub modified: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body: Option<String>,
    /// True when this was a retry of an already stored `client_msg_id`.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub duplicate: bool,
    /// Set when the message was a `/name args` command a plugin answered: nothing was
    /// stored (`id` and `seq` are then 0), replies arrive as the bot's messages or as a
    /// `notice` frame.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub command: Option<String>,
    /// Names the message mentions of people who are not members of the room: they were
    /// not mentioned (add them to the room, or leave it).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mentions_not_in_room: Vec<String>,
}

impl Ack {
    /// The ack of a write about message `id` (an edit, a delete, a reaction, a pin): the
    /// new event's `seq`, nothing else said.
    pub fn about(room: RoomId, id: EventId, seq: i64) -> Self {
        Self {
            room,
            id,
            seq,
            client_msg_id: None,
            modified: false,
            body: None,
            duplicate: false,
            command: None,
            mentions_not_in_room: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// First frame on a new connection.
    Hello {
        user: UserId,
        session: &'a str,
        heartbeat_secs: u64,
    },
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<&'a str>,
        #[serde(flatten)]
        ack: &'a Ack,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<&'a str>,
        #[serde(flatten)]
        error: &'a ErrorBody,
    },
    /// A room event (message, edit, delete, membership change, reaction, pin), in `seq`
    /// order per room.
    Event {
        #[serde(flatten)]
        event: &'a Event,
    },
    Typing {
        room: RoomId,
        user: UserId,
        active: bool,
    },
    Read {
        room: RoomId,
        user: UserId,
        seq: i64,
    },
    /// Catch-up finished: for each requested room, the last `seq` sent. `truncated` rooms had
    /// more missed events than one catch-up sends; page the rest with the history API.
    Synced {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<&'a str>,
        rooms: &'a BTreeMap<RoomId, i64>,
        #[serde(skip_serializing_if = "<[RoomId]>::is_empty")]
        truncated: &'a [RoomId],
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        req: Option<&'a str>,
    },
    /// Someone who shares a room with the receiver (or the receiver) changed presence.
    Presence {
        user: UserId,
        status: PresenceStatus,
    },
    /// Text for this user only, not stored: a plugin's private reply to a command.
    Notice {
        room: RoomId,
        plugin: &'a str,
        body: &'a str,
    },
}

impl ServerFrame<'_> {
    /// Serialize; infallible for these types, but never panic on the wire path.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"internal server error"}"#.to_string()
        })
    }
}

//! Persistent state behind one trait, so the server runs on SQLite (embedded default) or
//! PostgreSQL (scale) without the rest of the code knowing which.
//!
//! The trait speaks in domain types, never SQL rows. Every implementation must satisfy the
//! same contract (the shared suite in `tests/e2e/store_contract.rs`):
//! - `append_events` assigns each room a gap-free, strictly increasing `seq` inside the write
//!   transaction, and returns only after commit;
//! - a repeated `(sender, client_msg_id)` returns the original event flagged `duplicate`,
//!   never a second row and never a burnt `seq`;
//! - deleting a message erases its body (and the bodies of its edits) from storage.

pub mod chain;
mod checkpoint;
mod common;
pub mod migrate;
pub mod postgres;
pub mod schema;
pub mod search_text;
mod sql;
pub mod sqlite;
mod sqlite_index_merge;
mod sqlite_messages;
mod sqlite_raw;
mod sqlite_sent_keys;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub type UserId = i64;
pub type RoomId = i64;
pub type EventId = i64;
/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

/// Free-form string metadata attached to a message (plugins may add to it, e.g. DLP flags).
pub type Metadata = BTreeMap<String, String>;

#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub display_name: String,
    pub is_admin: bool,
    /// May read and verify the audit log (and, as they come, manage holds, retention and
    /// exports); every such read is itself audited.
    pub is_compliance: bool,
    pub is_bot: bool,
    pub active: bool,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub display_name: String,
    /// Argon2id PHC string; `None` for accounts that cannot log in with a password (bots).
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub is_bot: bool,
}

/// An incoming webhook: a secret URL that posts into one room as the hook's own bot user.
/// Only a digest of the secret is stored; the URL is shown once, when the hook is made.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct IncomingWebhook {
    pub id: i64,
    pub room_id: RoomId,
    /// The bot account the hook posts as (one per hook).
    pub bot_user_id: UserId,
    /// What the hook is for, as its creator named it (the bot's display name).
    pub name: String,
    /// SHA-256 (hex) of the secret key in the hook's URL.
    #[serde(skip)]
    #[schema(ignore)]
    pub key_hash: String,
    pub created_by: UserId,
    pub created_at: Millis,
    /// When the hook was revoked; a revoked hook accepts nothing.
    pub revoked_at: Option<Millis>,
}

/// An account's identity at an identity provider (a `source`: `scim`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The provider's own id for the account (SCIM `externalId`).
    pub external_id: Option<String>,
    pub email: Option<String>,
}

/// A group an identity provider manages.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DirectoryGroup {
    pub id: i64,
    pub source: String,
    pub name: String,
    pub external_id: Option<String>,
    pub created_at: Millis,
}

/// A login session: the refresh token's hash and the lifetime of every access token issued
/// under it. Revoking the session invalidates both.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    pub id: String,
    pub user_id: UserId,
    pub refresh_hash: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub revoked: bool,
}

#[derive(utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    Direct,
    Group,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(Self::Direct),
            "group" => Some(Self::Group),
            _ => None,
        }
    }
}

#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Room {
    pub id: RoomId,
    #[sqlx(try_from = "String")]
    pub kind: RoomKind,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub created_by: UserId,
    pub created_at: Millis,
    /// The highest `seq` assigned in this room (0 before the first event).
    pub last_seq: i64,
    /// Every member may pin messages (owners and admins always may).
    #[serde(default)]
    pub members_may_pin: bool,
}

#[derive(Debug, Clone)]
pub struct NewRoom {
    pub kind: RoomKind,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub created_by: UserId,
}

/// A member's role in a room; ordered so that `Owner > Admin > Member`.
#[derive(
    utoipa::ToSchema,
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
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Member {
    pub room_id: RoomId,
    pub user_id: UserId,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub joined_at: Millis,
}

/// A room the user belongs to, with what a room list needs.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    #[serde(flatten)]
    pub room: Room,
    pub role: Role,
    /// The user's read cursor in this room (0 if never read).
    pub read_seq: i64,
    /// Message events after the read cursor (not counting the user's own, nor thread
    /// replies not also sent to the room).
    pub unread: i64,
    /// Of the messages after the read cursor, those that mention the user (by name or
    /// `@room`; thread replies included).
    pub mentions: i64,
    /// The other member of a direct room, for naming it.
    pub peer: Option<UserId>,
}

#[derive(utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Message,
    Edit,
    Delete,
    MemberJoined,
    MemberLeft,
    /// A member reacted to a message (`target`) with an emoji (`body`).
    Reaction,
    /// A member took back their reaction (`body`) to a message (`target`).
    ReactionRemoved,
    /// A message (`target`) was pinned to the room.
    Pinned,
    /// A message (`target`) was unpinned.
    Unpinned,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Edit => "edit",
            Self::Delete => "delete",
            Self::MemberJoined => "member_joined",
            Self::MemberLeft => "member_left",
            Self::Reaction => "reaction",
            Self::ReactionRemoved => "reaction_removed",
            Self::Pinned => "pinned",
            Self::Unpinned => "unpinned",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "message" => Some(Self::Message),
            "edit" => Some(Self::Edit),
            "delete" => Some(Self::Delete),
            "member_joined" => Some(Self::MemberJoined),
            "member_left" => Some(Self::MemberLeft),
            "reaction" => Some(Self::Reaction),
            "reaction_removed" => Some(Self::ReactionRemoved),
            "pinned" => Some(Self::Pinned),
            "unpinned" => Some(Self::Unpinned),
            _ => None,
        }
    }
}

/// One entry in a room's ordered log. A message's id is the id of its `Message` event; edits
/// and deletes point at it through `target`.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub room_id: RoomId,
    pub seq: i64,
    pub kind: EventKind,
    pub sender_id: UserId,
    /// For `Edit`/`Delete`, reactions and pins: the message event; for
    /// `MemberJoined`/`MemberLeft`: the user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<i64>,
    /// Current text (a `Message` shows its latest edit); `None` once deleted. For a
    /// reaction event: the emoji.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Metadata::is_empty", default)]
    pub metadata: Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    pub created_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<Millis>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub deleted: bool,
    /// A reply: the top-level message of the same room it answers.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thread_root: Option<EventId>,
    /// A reply its sender also wants shown in the room's timeline.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub also_to_room: bool,
    /// Members the message mentions by `@name`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mentions: Vec<UserId>,
    /// The message says `@room`: it mentions every member.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub mentions_room: bool,
    /// A message with replies, as history shows it (not stored: filled in when read).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thread: Option<ThreadSummary>,
    /// A message's reactions, as history shows them under it, in the order they were first
    /// given (not stored with the event: filled in when read).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub reactions: Vec<ReactionCount>,
}

/// What history shows under a page's messages (see [`Store::annotations`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    pub threads: Vec<(EventId, ThreadSummary)>,
    pub reactions: Vec<(EventId, ReactionCount)>,
}

/// How many members reacted to a message with one emoji, and whether the reader did.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: u64,
    /// The member reading history is one of them.
    pub me: bool,
}

/// Who reacted to a message with one emoji, earliest first.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reactors {
    pub emoji: String,
    pub users: Vec<UserId>,
}

/// A message pinned to its room.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub message: Event,
    pub pinned_by: UserId,
    pub pinned_at: Millis,
}

/// The replies a top-level message has, as history shows them under it.
#[derive(utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSummary {
    /// Replies not deleted.
    pub replies: u64,
    /// When the latest of them was sent.
    pub last_reply_at: Millis,
}

/// Whom a message mentions (resolved to the room's members by the router).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mentions {
    pub users: Vec<UserId>,
    /// `@room`.
    pub room: bool,
}

impl Mentions {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && !self.room
    }
}

/// Where a new message goes in a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadReply {
    /// The top-level message replied to.
    pub root: EventId,
    /// Show it in the room's timeline too.
    pub also_to_room: bool,
}

/// A write to a room's log. Every variant gets the room's next `seq`.
#[derive(Debug, Clone)]
pub enum NewEvent {
    Message {
        room_id: RoomId,
        sender_id: UserId,
        client_msg_id: String,
        body: String,
        metadata: Metadata,
        /// Files to attach, claimed in the same transaction: each must be a finished upload
        /// of this sender in this room not attached yet, or nothing is stored
        /// (`file_unavailable`).
        files: Vec<i64>,
        /// A reply in a thread: the store checks that the root is a live top-level message
        /// of the same room (`NotFound`, `Conflict("nested_thread")`).
        thread: Option<ThreadReply>,
        /// Whom it mentions.
        mentions: Mentions,
    },
    /// Replace a message's body. The store checks that `target` is a live message in the room
    /// written by `sender_id`.
    Edit {
        room_id: RoomId,
        sender_id: UserId,
        target: EventId,
        body: String,
        metadata: Metadata,
        /// Whom the new text mentions (replaces the message's mentions).
        mentions: Mentions,
    },
    /// Erase a message. `sender_id` may be the author or a moderator: the router decides who
    /// may, the store only checks that the message exists in the room and is not deleted.
    Delete {
        room_id: RoomId,
        sender_id: UserId,
        target: EventId,
    },
    /// Add `user_id` with `role`; `Conflict("already_member")` if present.
    Join {
        room_id: RoomId,
        actor_id: UserId,
        user_id: UserId,
        role: Role,
    },
    /// Remove `user_id`; `NotFound` if not a member.
    Leave {
        room_id: RoomId,
        actor_id: UserId,
        user_id: UserId,
    },
    /// `sender_id` reacts to `target`, a live message of the room, with `emoji`. Reacting
    /// again with the same emoji stores nothing and answers with the first reaction's event
    /// (`duplicate`); a message that already has `distinct_max` different emoji takes no new
    /// one (`Conflict("too_many_reactions")`).
    React {
        room_id: RoomId,
        sender_id: UserId,
        target: EventId,
        emoji: String,
        distinct_max: u32,
    },
    /// Take back `sender_id`'s `emoji` reaction to `target` (`NotFound` if there is none).
    Unreact {
        room_id: RoomId,
        sender_id: UserId,
        target: EventId,
        emoji: String,
    },
    /// Pin `target`, a live message of the room. The router decides who may. Pinning a
    /// pinned message answers with its `pinned` event (`duplicate`); a room with `pins_max`
    /// pins takes no more (`Conflict("too_many_pins")`).
    Pin {
        room_id: RoomId,
        actor_id: UserId,
        target: EventId,
        pins_max: u32,
    },
    /// Unpin `target` (`NotFound` if it is not pinned).
    Unpin {
        room_id: RoomId,
        actor_id: UserId,
        target: EventId,
    },
}

impl NewEvent {
    pub fn room_id(&self) -> RoomId {
        match self {
            Self::Message { room_id, .. }
            | Self::Edit { room_id, .. }
            | Self::Delete { room_id, .. }
            | Self::Join { room_id, .. }
            | Self::Leave { room_id, .. }
            | Self::React { room_id, .. }
            | Self::Unreact { room_id, .. }
            | Self::Pin { room_id, .. }
            | Self::Unpin { room_id, .. } => *room_id,
        }
    }
}

/// What `append_events` did with one `NewEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub event: Event,
    /// True when this was a retry of an already-stored `(sender, client_msg_id)`.
    pub duplicate: bool,
}

/// One page of a room's log, in ascending `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Events with `seq > after`, oldest first.
    After(i64),
    /// Events with `seq < before`, the newest `limit` of them, returned oldest first.
    Before(i64),
}

/// A search over live messages' folded text (`store::search_text`), newest first. Every
/// condition holds at once; an empty list does not restrict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Whose rooms: `Some(user)` searches only the rooms the user is a member of now (the
    /// store checks it in the query itself, not on the results); `None` searches every
    /// room (the compliance role).
    pub reader: Option<UserId>,
    /// Folded text each result contains.
    pub required: Vec<String>,
    /// Folded text no result contains.
    pub excluded: Vec<String>,
    /// Any of these senders.
    pub senders: Vec<UserId>,
    /// Any of these rooms.
    pub rooms: Vec<RoomId>,
    /// Created at or after.
    pub since: Option<Millis>,
    /// Created before.
    pub until: Option<Millis>,
    /// Only messages with an attached file still available.
    pub has_file: bool,
    /// Paging: only messages with a smaller id than this (the last result of the page before).
    pub before_id: Option<EventId>,
    /// Only among the newest this many events (by id): the bound on a search no index
    /// serves (no word of three characters or more, no `has:file`), so it stays a bounded
    /// scan.
    pub recent_events: Option<u64>,
    /// When `senders` is not empty and they have at most this many live messages, walk
    /// their messages (the `events_sender_live` index) rather than the word index. A
    /// choice of plan, not of results: both give the same page. 0: the word index.
    pub sender_scan_max: u64,
    pub limit: u32,
}

/// One step of (re)building the search text: where it got to and how much it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReindexStep {
    /// The last message id looked at; `None` when there was nothing after `after`.
    pub last: Option<EventId>,
    /// Messages looked at.
    pub visited: u64,
    /// Messages whose search text was written (it was missing or out of date).
    pub written: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or state rule was broken; the code is stable and client-safe.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database was upgraded by a newer binary (the text says which versions).
    #[error("{0}")]
    SchemaNewer(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database refused one row's values (a value its column cannot hold, a check or
    /// trigger an operator added). Concerns that row only: a batch rolls back just the item,
    /// and the client is told its request was refused, not that the server failed. The text
    /// is the database's own and is logged, never shown to clients.
    #[error("row refused: {0}")]
    Refused(String),
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A stored text that names no known variant: a row that does not match the schema.
#[derive(Debug, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

impl TryFrom<String> for RoomKind {
    type Error = UnknownValue;
    fn try_from(text: String) -> Result<Self, UnknownValue> {
        Self::parse(&text).ok_or(UnknownValue(text))
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownValue;
    fn try_from(text: String) -> Result<Self, UnknownValue> {
        Self::parse(&text).ok_or(UnknownValue(text))
    }
}

/// An operator-facing record of something that mattered (plugin decisions, admin actions).
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    /// Position in the hash chain (1, 2, 3, …).
    pub seq: i64,
    pub at: Millis,
    /// Who acted: `user:<id>`, `plugin:<name>` or `system`.
    pub actor: String,
    /// What happened, e.g. `plugin.reject`, `plugin.flag`, `user.deactivate`.
    pub action: String,
    /// What it concerned, e.g. `room:3`, `user:7`.
    pub subject: String,
    /// Details without sensitive content (never a message body).
    pub detail: serde_json::Value,
    /// The hash of the record before it in the chain (`""` for the first).
    pub prev_hash: Option<String>,
    /// SHA-256 over `prev_hash` and this record's content (see `store::chain`).
    pub hash: Option<String>,
}

/// A legal hold: while active, the earlier text of every message it covers is kept when the
/// message is edited or deleted.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    pub id: i64,
    pub name: String,
    /// Senders covered (empty: any).
    pub users: Vec<UserId>,
    /// Rooms covered (empty: any).
    pub rooms: Vec<RoomId>,
    /// Messages created at or after / before these times (`None`: unbounded).
    pub from_at: Option<Millis>,
    pub until_at: Option<Millis>,
    pub created_by: UserId,
    pub created_at: Millis,
    pub release_requested_by: Option<UserId>,
    pub release_requested_at: Option<Millis>,
    /// When the hold stops covering (in the future while a release waits out its delay).
    pub released_at: Option<Millis>,
}

impl LegalHold {
    /// Whether the hold is in force at `now`.
    pub fn active(&self, now: Millis) -> bool {
        self.released_at.is_none_or(|at| at > now)
    }

    /// Whether the hold covers a message of `sender` in `room` created at `created_at`.
    pub fn covers(&self, room: RoomId, sender: UserId, created_at: Millis) -> bool {
        (self.rooms.is_empty() || self.rooms.contains(&room))
            && (self.users.is_empty() || self.users.contains(&sender))
            && self.from_at.is_none_or(|from| created_at >= from)
            && self.until_at.is_none_or(|until| created_at < until)
    }
}

/// A new hold's criteria.
#[derive(Debug, Clone, Default)]
pub struct NewHold {
    pub name: String,
    pub users: Vec<UserId>,
    pub rooms: Vec<RoomId>,
    pub from_at: Option<Millis>,
    pub until_at: Option<Millis>,
    pub created_by: UserId,
}

/// An earlier text of a message, kept for compliance.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventVersion {
    /// The event the text belonged to (the message, or one of its edits).
    pub event_id: EventId,
    pub replaced_at: Millis,
    /// `edit` or `delete`.
    pub cause: String,
    pub body: Option<String>,
    pub metadata: Metadata,
}

/// A signed statement of the audit chain's head at a moment.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    pub seq: i64,
    pub head_hash: String,
    pub at: Millis,
    /// Which key signed it (the public key's id).
    pub key_id: String,
    /// Base64 ed25519 signature over `checkpoint_message(seq, head_hash, at)`.
    pub signature: String,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is (`sqlite` or `postgres`), for logs and `/metrics`.
    fn backend(&self) -> &'static str;
    /// Whether a write runs on the calling thread (SQLite, a database inside this process:
    /// a commit is CPU and an `fsync` there) rather than awaiting a server (PostgreSQL). The
    /// group commit gives such a store's writer a thread of its own.
    fn writes_on_calling_thread(&self) -> bool;
    /// Cheap liveness probe.
    async fn ping(&self) -> StoreResult<()>;
    /// Bytes the database occupies, if the backend can tell.
    async fn size_bytes(&self) -> StoreResult<Option<u64>>;

    // ---- users ----
    async fn count_users(&self) -> StoreResult<i64>;
    /// `Conflict("user_exists")` if the name is taken.
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;
    /// The user and their password hash, for login.
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<(User, Option<String>)>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    async fn set_user_active(&self, id: UserId, active: bool) -> StoreResult<()>;
    /// Grant or take away the compliance role.
    async fn set_user_compliance(&self, id: UserId, compliance: bool) -> StoreResult<()>;
    async fn set_password_hash(&self, id: UserId, hash: &str) -> StoreResult<()>;
    /// Hide the user's presence from others (or show it again); `NotFound` for no such user.
    async fn set_presence_hidden(&self, id: UserId, hidden: bool) -> StoreResult<()>;
    /// The users who hid their presence.
    async fn presence_hidden_users(&self) -> StoreResult<Vec<UserId>>;
    async fn set_display_name(&self, id: UserId, display_name: &str) -> StoreResult<()>;
    async fn set_user_admin(&self, id: UserId, admin: bool) -> StoreResult<()>;

    // ---- directory: accounts and groups an identity provider manages ----
    /// A page of the accounts that are people (not bots), by id, and how many there are.
    async fn people_page(&self, offset: i64, limit: i64) -> StoreResult<(i64, Vec<User>)>;
    /// Set (insert or replace) the account's identity at `source`;
    /// `Conflict("identity_taken")` if another account holds that external id there.
    async fn set_external_identity(
        &self,
        user: UserId,
        source: &str,
        identity: &ExternalIdentity,
    ) -> StoreResult<()>;
    async fn external_identity(
        &self,
        user: UserId,
        source: &str,
    ) -> StoreResult<Option<ExternalIdentity>>;
    async fn user_by_external_id(
        &self,
        source: &str,
        external_id: &str,
    ) -> StoreResult<Option<User>>;
    /// Every account with an identity at `source`, by user id.
    async fn identities(&self, source: &str) -> StoreResult<Vec<(User, ExternalIdentity)>>;
    /// A group with its first members, in one transaction: `Conflict("group_exists")` for a
    /// name taken at the source, `NotFound` if a member names no user (nothing is created).
    async fn create_group(
        &self,
        source: &str,
        name: &str,
        external_id: Option<&str>,
        members: &[UserId],
    ) -> StoreResult<DirectoryGroup>;
    async fn group(&self, source: &str, id: i64) -> StoreResult<Option<DirectoryGroup>>;
    /// A page of a source's groups by id (only the one named `name`, if given), and how many
    /// there are.
    async fn groups_page(
        &self,
        source: &str,
        name: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(i64, Vec<DirectoryGroup>)>;
    /// Rename a group or change its external id (`Conflict("group_exists")`).
    async fn update_group(&self, id: i64, name: &str, external_id: Option<&str>)
    -> StoreResult<()>;
    async fn delete_group(&self, id: i64) -> StoreResult<()>;
    async fn group_members(&self, id: i64) -> StoreResult<Vec<UserId>>;
    /// Add and remove members in one transaction, under the group's lock: `NotFound` if
    /// the group or an added user does not exist, `Conflict("group_too_large")` if the group
    /// would pass `max_members` (nothing changes either way). Returns who was really added
    /// and removed (already members and non-members are skipped).
    async fn change_group_members(
        &self,
        id: i64,
        add: &[UserId],
        remove: &[UserId],
        max_members: usize,
    ) -> StoreResult<(Vec<UserId>, Vec<UserId>)>;
    /// The names of every group (of any source) the user is in.
    async fn group_names_of(&self, user: UserId) -> StoreResult<Vec<String>>;
    /// The groups of `source` the user is in.
    async fn user_groups(&self, user: UserId, source: &str) -> StoreResult<Vec<DirectoryGroup>>;

    // ---- one-time values (sign-in state, hand-over tickets) ----
    /// Keep a value under `key` (a digest of a secret), and drop every value written before
    /// `expired_before` (they can no longer be used).
    async fn put_once(
        &self,
        key: &str,
        kind: &str,
        payload: &str,
        expired_before: Millis,
    ) -> StoreResult<()>;
    /// Take the value under `key` if it is of `kind`: it is gone afterwards, whoever asks
    /// again (on any node) gets `None`. Returns the payload and when it was written.
    async fn take_once(&self, key: &str, kind: &str) -> StoreResult<Option<(String, Millis)>>;

    // ---- incoming webhooks ----
    /// Keep a new hook of `room` that posts as `bot` (a bot account made for it).
    async fn create_incoming_webhook(
        &self,
        room: RoomId,
        bot: UserId,
        name: &str,
        key_hash: &str,
        created_by: UserId,
    ) -> StoreResult<IncomingWebhook>;
    /// The hook whose key has digest `key_hash`, revoked or not.
    async fn incoming_webhook_by_key(&self, key_hash: &str)
    -> StoreResult<Option<IncomingWebhook>>;
    /// One hook, revoked or not.
    async fn incoming_webhook(&self, id: i64) -> StoreResult<Option<IncomingWebhook>>;
    /// The hooks of `room` (every room's: `None`), newest first, revoked ones too.
    async fn incoming_webhooks(&self, room: Option<RoomId>) -> StoreResult<Vec<IncomingWebhook>>;
    /// Revoke a live hook at `at`; `false` when it was revoked already (or does not exist).
    async fn revoke_incoming_webhook(&self, id: i64, at: Millis) -> StoreResult<bool>;

    // ---- language model budgets ----
    /// Tokens used on UTC `day` by a person (`scope` `user`) or in a room (`room`).
    async fn llm_usage(&self, day: i64, scope: &str, id: i64) -> StoreResult<u64>;
    /// Every count of `day`: `(scope, id, tokens)`, heaviest first (at most 100).
    async fn llm_usage_of_day(&self, day: i64) -> StoreResult<Vec<(String, i64, u64)>>;
    /// Forget the counts of days before `before_day`.
    async fn prune_llm_usage(&self, before_day: i64) -> StoreResult<u64>;
    /// Count `tokens` more for `day`, `scope` and `id`.
    async fn add_llm_usage(&self, day: i64, scope: &str, id: i64, tokens: u64) -> StoreResult<()>;

    // ---- sessions ----
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    async fn session(&self, id: &str) -> StoreResult<Option<Session>>;
    /// Atomically replace the refresh hash if it still equals `old_hash` and the session is
    /// live; returns false otherwise (a replayed or revoked refresh token).
    async fn rotate_refresh(
        &self,
        id: &str,
        old_hash: &str,
        new_hash: &str,
        expires_at: Millis,
    ) -> StoreResult<bool>;
    async fn revoke_session(&self, id: &str) -> StoreResult<()>;
    /// Revoke every live session of a user; returns their ids.
    async fn revoke_user_sessions(&self, user: UserId) -> StoreResult<Vec<String>>;

    // ---- rooms and members ----
    /// Create a group room with its initial members (the creator among them, as owner).
    async fn create_room(&self, room: NewRoom, members: &[(UserId, Role)]) -> StoreResult<Room>;
    /// The direct room of two users, created if absent: exactly one per pair, even when both
    /// ask at once. Returns the room and whether it was created now.
    async fn direct_room(&self, a: UserId, b: UserId) -> StoreResult<(Room, bool)>;
    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>>;
    async fn rooms_for_user(&self, user: UserId) -> StoreResult<Vec<RoomSummary>>;
    async fn list_rooms(&self) -> StoreResult<Vec<Room>>;
    async fn room_members(&self, room: RoomId) -> StoreResult<Vec<Member>>;
    /// The ids of the rooms `user` is a member of.
    async fn room_ids_of(&self, user: UserId) -> StoreResult<Vec<RoomId>>;
    async fn member(&self, room: RoomId, user: UserId) -> StoreResult<Option<Member>>;

    // ---- the room log ----
    /// Apply a batch in one transaction (group commit). Results are positional. A failed
    /// item (e.g. editing a deleted message) does not fail the others, burns no `seq`, and
    /// leaves nothing behind.
    async fn append_events(&self, batch: &[NewEvent]) -> StoreResult<Vec<StoreResult<Appended>>>;
    /// One bounded step of the search index's deferred merging, up to about `pages` pages
    /// (SQLite: `store::sqlite_index_merge`; the group commit calls it between batches).
    /// `Ok(true)` when it merged something and more may be waiting, `Ok(false)` when there
    /// was nothing to merge; always `Ok(false)` on PostgreSQL, whose index has no such work.
    async fn merge_search_index(&self, pages: u32) -> StoreResult<bool>;
    async fn event(&self, id: EventId) -> StoreResult<Option<Event>>;
    async fn event_by_client_msg_id(
        &self,
        sender: UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Event>>;
    /// [`event_by_client_msg_id`](Self::event_by_client_msg_id) for many sends at once:
    /// the events stored for any of the `(sender, client_msg_id)` keys, in no set order.
    async fn events_by_client_msg_ids(&self, keys: &[(UserId, &str)]) -> StoreResult<Vec<Event>>;
    /// False only when no event with this `(sender, client_msg_id)` is stored, known without
    /// reading the database (SQLite: `store::sqlite_sent_keys`); true when one may be, and
    /// always on PostgreSQL, where other nodes write too.
    fn may_hold_client_msg_id(&self, sender: UserId, client_msg_id: &str) -> bool;
    async fn events(&self, room: RoomId, page: Page, limit: u32) -> StoreResult<Vec<Event>>;

    // ---- read cursors ----
    /// Move the user's cursor forward to `seq` (never backwards); returns the cursor now held.
    async fn set_read_cursor(&self, user: UserId, room: RoomId, seq: i64) -> StoreResult<i64>;

    // ---- threads ----
    /// One page of a thread's replies (messages of `room` whose `thread_root` is `root`), in
    /// ascending `seq`; deleted replies included, as in the room's history.
    async fn thread_replies(
        &self,
        room: RoomId,
        root: EventId,
        page: Page,
        limit: u32,
    ) -> StoreResult<Vec<Event>>;
    /// The user's read cursor in the thread (`0` before the first read) and how many live
    /// replies from others come after it.
    async fn thread_unread(&self, user: UserId, root: EventId) -> StoreResult<(i64, u64)>;
    /// Move the user's thread cursor forward to `seq` (clamped to the thread's last reply,
    /// never backwards); returns the cursor now held.
    async fn set_thread_read(
        &self,
        user: UserId,
        room: RoomId,
        root: EventId,
        seq: i64,
    ) -> StoreResult<i64>;

    // ---- reactions and pins ----
    /// What history shows under a page's messages, in one read: the live-reply counts of
    /// those of `roots` (messages of `room`) that have replies, and the reactions to those of
    /// `messages` that have any, per message in the order each emoji was first given (`me`:
    /// `viewer` gave it).
    async fn annotations(
        &self,
        viewer: UserId,
        room: RoomId,
        roots: &[EventId],
        messages: &[EventId],
    ) -> StoreResult<Annotations>;
    /// Who reacted to `message` with what: per emoji (in the order first given), the users
    /// earliest first.
    async fn reactors(&self, message: EventId) -> StoreResult<Vec<Reactors>>;
    /// The room's pinned messages, the latest pinned first.
    async fn pins(&self, room: RoomId) -> StoreResult<Vec<Pin>>;
    /// Let every member pin (or only owners and admins); `NotFound` for no such room.
    async fn set_members_may_pin(&self, room: RoomId, allowed: bool) -> StoreResult<()>;

    // ---- mentions ----
    /// Live messages that mention `user` (by name, or `@room` in a room the user is a member
    /// of now), sent by others, in rooms the user is a member of now; newest first, ids
    /// below `before` (paging), at most `limit`.
    async fn mentions_of(
        &self,
        user: UserId,
        before: Option<EventId>,
        limit: u32,
    ) -> StoreResult<Vec<Event>>;

    // ---- plugin key/value (one namespace per plugin) ----
    async fn kv_get(&self, plugin: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn kv_put(&self, plugin: &str, key: &str, value: &[u8]) -> StoreResult<()>;
    async fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<bool>;
    /// Keys with `prefix`, sorted, at most `limit`.
    async fn kv_keys(&self, plugin: &str, prefix: &str, limit: u32) -> StoreResult<Vec<String>>;

    // ---- audit ----
    async fn append_audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> StoreResult<()>;
    /// Newest first, at most `limit`.
    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditRecord>>;
    /// The chain in order: up to `limit` records with `seq > after`.
    async fn audit_chain(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>>;
    /// The chain's head: the last `seq` and its hash (`0` and `""` when empty).
    async fn audit_head(&self) -> StoreResult<(i64, String)>;
    /// Keep a signed checkpoint (a second one for the same `seq` is ignored: several nodes
    /// may sign the same head).
    async fn add_audit_checkpoint(&self, checkpoint: &AuditCheckpoint) -> StoreResult<()>;
    /// Every checkpoint, in `seq` order.
    async fn audit_checkpoints(&self) -> StoreResult<Vec<AuditCheckpoint>>;

    // ---- legal holds and kept versions ----
    async fn create_hold(&self, hold: &NewHold) -> StoreResult<LegalHold>;
    async fn holds(&self) -> StoreResult<Vec<LegalHold>>;
    /// Record a release: who asked, when, and when the hold stops (`released_at`).
    async fn set_hold_release(
        &self,
        id: i64,
        requested_by: UserId,
        requested_at: Millis,
        released_at: Millis,
    ) -> StoreResult<()>;
    /// The kept earlier texts of a message (and of its edits), oldest first.
    async fn message_versions(&self, message: EventId) -> StoreResult<Vec<EventVersion>>;

    // ---- search ----
    /// Live messages matching `query`, newest (highest id) first, at most `query.limit`.
    async fn search_messages(&self, query: &SearchQuery) -> StoreResult<Vec<Event>>;
    /// (Re)compute the search text of up to `batch` live messages with `id > after`, in id
    /// order: all of them, or with `missing_only` those stored before search existed.
    async fn reindex_messages(
        &self,
        after: EventId,
        batch: u32,
        missing_only: bool,
    ) -> StoreResult<ReindexStep>;
    /// How many live messages a reindex would visit (for progress).
    async fn messages_to_index(&self, missing_only: bool) -> StoreResult<u64>;

    // ---- retention ----
    /// Set a room's retention in days (`None`: follow the global setting).
    async fn set_room_retention(&self, room: RoomId, days: Option<i64>) -> StoreResult<()>;
    /// Every room's own retention, `(room, days)`.
    async fn room_retentions(&self) -> StoreResult<Vec<(RoomId, i64)>>;
    /// Live messages past their room's retention at `now` (a room's own days, else
    /// `global_days`; `None`: no global limit), with `id > after`, oldest ids first, at
    /// most `limit`: `(id, room, sender, created_at)`.
    async fn expired_messages(
        &self,
        now: Millis,
        global_days: Option<i64>,
        after: EventId,
        limit: u32,
    ) -> StoreResult<Vec<(EventId, RoomId, UserId, Millis)>>;
    /// Erase these messages for real: their text, their edits' text, and any kept versions
    /// of them. Users see them deleted. Returns how many messages were erased.
    async fn erase_messages(&self, ids: &[EventId]) -> StoreResult<u64>;

    // ---- files ----
    /// Record an upload about to start (`uploading`), under its storage key.
    async fn create_file(
        &self,
        room: RoomId,
        uploader: UserId,
        name: &str,
        storage_key: &str,
    ) -> StoreResult<FileRecord>;
    /// Record a resumable upload of `size` bytes (`receiving`, nothing received yet).
    async fn create_resumable_file(
        &self,
        room: RoomId,
        uploader: UserId,
        name: &str,
        storage_key: &str,
        size: i64,
    ) -> StoreResult<FileRecord>;
    /// Move a resumable upload's `received` from `from` to `to`; false if it was not at
    /// `from` (or is not receiving any more).
    async fn advance_resumable_file(&self, id: i64, from: i64, to: i64) -> StoreResult<bool>;
    /// A resumable upload that received all its bytes becomes `uploading` (assembled
    /// next); false if it is not complete or not receiving.
    async fn resumable_file_complete(&self, id: i64) -> StoreResult<bool>;
    /// Mark an upload complete with what its bytes turned out to be: `ready`, or
    /// `quarantined` when `finished.quarantine` says so.
    async fn finish_file(&self, id: i64, finished: &FinishedFile) -> StoreResult<()>;
    /// Make a quarantined file `ready`; false if it is not (any more) quarantined.
    async fn release_file(&self, id: i64) -> StoreResult<bool>;
    /// Mark a quarantined file `deleted` (its bytes are purged next); false if it is not
    /// quarantined.
    async fn discard_quarantined_file(&self, id: i64) -> StoreResult<bool>;
    async fn file(&self, id: i64) -> StoreResult<Option<FileRecord>>;
    async fn delete_file(&self, id: i64) -> StoreResult<()>;
    /// Files in one state: `uploading` (never finished: a crash or a stop mid-upload),
    /// `ready`, `kept` (its message was deleted; kept for compliance), `deleted` (its bytes
    /// are to be purged).
    async fn files_in_state(&self, state: &str) -> StoreResult<Vec<FileRecord>>;
    /// Mark `ready` files attached to no message and uploaded before `before` as `deleted`
    /// (their bytes are purged next); how many.
    async fn discard_unattached_files(&self, before: i64) -> StoreResult<u64>;
    /// Mark one `ready` file attached to no message `deleted`; false if it is not such a
    /// file (attached: delete its message instead).
    async fn discard_unattached_file(&self, id: i64) -> StoreResult<bool>;
    /// The files messages of `room` carry, in the order they were uploaded (one query for a
    /// room's export, not one per message).
    async fn attached_files(&self, room: RoomId) -> StoreResult<Vec<FileRecord>>;
    /// Files and their bytes per state, in all rooms (storage usage).
    async fn files_usage(&self) -> StoreResult<Vec<FileUsage>>;
}

/// A file uploaded to a room. Written as `uploading` before its bytes, `ready` once they are
/// all in storage (with their size, SHA-256 and sniffed type); when its message is deleted,
/// `kept` (under a hold or `preserve_deleted`) or `deleted` (bytes purged, then the row).
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FileRecord {
    pub id: i64,
    pub room_id: RoomId,
    pub uploader_id: UserId,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    #[serde(skip)]
    pub storage_key: String,
    pub state: String,
    pub created_at: Millis,
    /// The message it is attached to, once sent.
    pub message_id: Option<EventId>,
    /// In `quarantined` state: the plugin that quarantined it, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_reason: Option<String>,
    /// An image with a thumbnail (`GET /api/v1/files/{id}/thumbnail`).
    pub has_thumbnail: bool,
    /// In `receiving` state (a resumable upload): the bytes committed so far.
    #[serde(skip)]
    pub received: i64,
}

/// What an upload's bytes turned out to be, after the plugins' checks.
#[derive(Debug, Clone)]
pub struct FinishedFile {
    pub size: i64,
    pub sha256: String,
    pub content_type: String,
    /// A new name (a plugin replaced the content and renamed it).
    pub name: Option<String>,
    /// The plugin that quarantined it, and why.
    pub quarantine: Option<(String, String)>,
    /// A thumbnail was stored beside it.
    pub thumbnail: bool,
}

/// Storage used by files in one state.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileUsage {
    pub state: String,
    pub files: i64,
    pub bytes: i64,
}

/// Open the store a database URL names: `sqlite://path` (or a bare path) or `postgres://…`.
/// Migrations run before this returns.
pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url, options).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url, options).await?))
    } else if !url.contains("://") && !url.is_empty() {
        let url = format!("sqlite://{url}");
        Ok(Arc::new(sqlite::SqliteStore::open(&url, options).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// Tuning shared by the backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections for reads (SQLite) or for everything (PostgreSQL).
    pub max_connections: u32,
    /// SQLite `synchronous`: `full` (survives power loss) or `normal` (survives a crash of
    /// the process, may lose the last transactions on power loss).
    pub sqlite_synchronous: SqliteSync,
    /// How often a connection of its own checkpoints SQLite's WAL (`store::checkpoint`);
    /// `None`: SQLite checkpoints inside the commit that fills 1,000 pages.
    pub sqlite_checkpoint_interval: Option<Duration>,
    /// Keep every message's earlier text on edit and delete (`compliance.preserve_deleted`),
    /// not only under a legal hold.
    pub preserve_versions: bool,
    /// Write each message's search text (and so index it); `store.search_index`.
    pub index_search: bool,
    /// SQLite: pages of the search index merged per step between commits
    /// (`store.search_merge_pages`); 0 leaves merging to FTS5, inside commits.
    pub search_merge_pages: u32,
    /// SQLite: most message keys the in-memory retry filter holds
    /// (`store.sqlite_retry_filter_keys`, `store::sqlite_sent_keys`); 0: no filter.
    pub sqlite_retry_filter_keys: u64,
}

/// What a write does beside storing the event, from [`StoreOptions`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct WritePolicy {
    /// Keep earlier texts on every edit and delete (`StoreOptions::preserve_versions`).
    pub preserve: bool,
    /// Write messages' search text (`StoreOptions::index_search`).
    pub index_search: bool,
}

impl WritePolicy {
    fn from_options(options: &StoreOptions) -> Self {
        Self {
            preserve: options.preserve_versions,
            index_search: options.index_search,
        }
    }

    /// A message body's search text, when search is on.
    pub(crate) fn search_text(self, body: &str) -> Option<String> {
        self.index_search.then(|| search_text::fold(body))
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            sqlite_synchronous: SqliteSync::Full,
            sqlite_checkpoint_interval: Some(Duration::from_millis(100)),
            preserve_versions: false,
            index_search: true,
            search_merge_pages: 16,
            sqlite_retry_filter_keys: 50_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSync {
    Full,
    Normal,
}

/// The URL with any password removed, safe to log or show.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// A UTC time in RFC 3339 (`2026-12-01T22:53:46Z`): how archives and prompts print times.
pub fn rfc3339(at: Millis) -> String {
    let secs = at.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The current time in milliseconds since the epoch.
pub fn now_millis() -> Millis {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

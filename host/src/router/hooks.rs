//! The seam between the message path and the plugin layer.
//!
//! The router only knows this trait; `plugins::PluginHost` implements it with WebAssembly
//! components, and [`NoHooks`] stands in when no plugin is loaded. Keeping the seam here keeps
//! wasmtime out of the router and lets the router skip a hook entirely when nothing
//! implements it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::{Event, EventId, Metadata, RoomId, User, UserId};

/// The hooks the router can call, named as in plugin manifests and the WIT interface
/// (`message-pre-send`, …).
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
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    MessagePreSend,
    MessageDelivered,
    OnLogin,
    OnConnect,
    /// `/name args` commands registered by plugins. Since interface 0.2.
    Command,
    /// Logins with a method other than `password`. Since interface 0.2.
    Authenticate,
    /// Uploaded files, before they can be downloaded. Since interface 0.3.
    FilePreUpload,
    /// Downloads of files. Since interface 0.3.
    FilePreDownload,
}

impl HookKind {
    pub const ALL: [HookKind; 8] = [
        Self::MessagePreSend,
        Self::MessageDelivered,
        Self::OnLogin,
        Self::OnConnect,
        Self::Command,
        Self::Authenticate,
        Self::FilePreUpload,
        Self::FilePreDownload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessagePreSend => "message-pre-send",
            Self::MessageDelivered => "message-delivered",
            Self::OnLogin => "on-login",
            Self::OnConnect => "on-connect",
            Self::Command => "command",
            Self::Authenticate => "authenticate",
            Self::FilePreUpload => "file-pre-upload",
            Self::FilePreDownload => "file-pre-download",
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message about to be stored: a new one, or an edit of `editing`.
#[derive(Debug, Clone)]
pub struct PreSend {
    pub room_id: RoomId,
    pub sender_id: UserId,
    pub sender_name: String,
    pub client_msg_id: String,
    /// For an edit: the message being edited (the hook sees the new body in `body`).
    pub editing: Option<EventId>,
    /// For a reply in a thread (or an edit of one): the thread's root message.
    pub thread_root: Option<EventId>,
    pub body: String,
    pub metadata: Metadata,
    /// The largest body the server stores (`limits.max_message_bytes`): what a plugin
    /// returns must fit it, like what a user sends.
    pub max_body_bytes: usize,
    /// How many bot posts led to this message (0: a person's); the plugin layer stops bots
    /// from triggering each other forever.
    pub depth: u32,
}

/// What the chain decided. Rejects name the plugin and carry its code and reason, which the
/// sender is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreSendOutcome {
    /// Store the message with this body and metadata (`modified` if any plugin changed them).
    Continue {
        body: String,
        metadata: Metadata,
        modified: bool,
        /// Metadata key → the plugin that set it (keys a plugin added or changed), so that
        /// what a key claims (`dlp.flagged`) is never taken for who wrote it.
        authors: std::collections::BTreeMap<String, String>,
    },
    Reject {
        plugin: String,
        code: String,
        reason: String,
    },
}

/// A `/name args` message addressed to the plugin that registered `name`.
#[derive(Debug, Clone)]
pub struct CommandCall {
    pub name: String,
    pub args: String,
    pub room_id: RoomId,
    pub sender: User,
    /// How many bot posts led to this call (0: a person typed it).
    pub depth: u32,
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// No plugin registered the name: the text is an ordinary message.
    Unknown,
    /// The plugin ran; its room replies are queued as bot posts. `private` is text for the
    /// sender's eyes only.
    Handled {
        plugin: String,
        private: Option<String>,
    },
    /// The plugin failed (trap, timeout, invalid answer, open circuit).
    Failed { plugin: String, reason: String },
}

/// What a plugin's bot writes in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotWrite {
    /// A message; a reply in the thread of `thread_root` when set.
    Message {
        thread_root: Option<EventId>,
        body: String,
    },
    /// A reaction to `message`.
    Reaction { message: EventId, emoji: String },
    /// An answer of the language model to deliver as it streams (`llm.answer`).
    Assistant(Box<crate::llm::AssistantJob>),
}

/// A message (or reaction) a plugin's bot posts: queued by the plugin layer while the hook
/// runs, sent by the router after it returned, through the same path as any user's.
#[derive(Debug, Clone)]
pub struct BotPost {
    pub plugin: String,
    pub bot: User,
    pub room_id: RoomId,
    pub write: BotWrite,
    /// 1 + the depth of the event whose hook produced the post.
    pub depth: u32,
}

/// A login attempt with a method the server does not check itself.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub method: String,
    pub username: Option<String>,
    pub credential: String,
}

/// What the `authenticate` chain decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// `plugin` vouches for the user of this name.
    Accept {
        plugin: String,
        user_name: String,
    },
    Reject {
        plugin: String,
        reason: String,
    },
    /// No plugin took the method.
    Unhandled,
}

/// A file that was uploaded, as plugins are told about it.
#[derive(Debug, Clone)]
pub struct FileCheck {
    pub id: i64,
    pub room_id: RoomId,
    pub uploader: User,
    /// Already made safe (`files::safe_name`).
    pub name: String,
    /// Sniffed from the bytes.
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    /// The largest content a plugin may put in its place (`files.max_upload_bytes`).
    pub max_bytes: u64,
}

/// The bytes of the file a `file-pre-upload` call is about, read in ranges (the plugin
/// layer serves the plugin's `upload.read` from this).
#[async_trait]
pub trait FileContent: Send + Sync {
    /// The bytes in `offset..offset + len`, fewer at the end of the file.
    async fn read(&self, offset: u64, len: u32) -> Result<bytes::Bytes, String>;
}

/// Content a plugin put in place of an upload's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReplacement {
    /// The plugins that replaced it, in order.
    pub plugins: Vec<String>,
    pub content: bytes::Bytes,
    /// A new name, already made safe.
    pub name: Option<String>,
}

/// What the `file-pre-upload` chain decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileUploadOutcome {
    /// Keep the file: as uploaded, or as replaced; and either available or in quarantine.
    Accept {
        replacement: Option<FileReplacement>,
        /// The plugin that quarantined it, and why.
        quarantine: Option<(String, String)>,
    },
    /// Refuse it; nothing is kept.
    Reject {
        plugin: String,
        code: String,
        reason: String,
    },
}

impl FileUploadOutcome {
    pub const ALLOW: Self = Self::Accept {
        replacement: None,
        quarantine: None,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { plugin: String, reason: String },
}

#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// Whether any enabled plugin implements `hook`; the router skips the call when not.
    fn implements(&self, hook: HookKind) -> bool;
    async fn message_pre_send(&self, msg: PreSend) -> PreSendOutcome;
    /// Called after a message is stored and fanned out, with the number of bot posts that
    /// led to it (`depth`; the plugin layer stops bots triggering each other forever). Must
    /// not block: implementations queue the event (bounded) and observe it asynchronously.
    fn message_delivered(&self, event: &Event, depth: u32);
    async fn on_login(&self, user: &User) -> Decision;
    async fn on_connect(&self, user: &User, session_id: &str) -> Decision;

    /// Whether a plugin registered the command `name` (without the slash).
    fn has_command(&self, name: &str) -> bool {
        let _ = name;
        false
    }

    /// Run a registered command.
    async fn command(&self, call: CommandCall) -> CommandOutcome {
        let _ = call;
        CommandOutcome::Unknown
    }

    /// A login with a plugin-checked method: the first plugin that accepts or rejects wins.
    async fn authenticate(&self, request: AuthRequest) -> AuthOutcome {
        let _ = request;
        AuthOutcome::Unhandled
    }

    /// An uploaded file's check: plugins read it from `content`, then allow, reject,
    /// replace or quarantine it.
    async fn file_pre_upload(
        &self,
        file: FileCheck,
        content: std::sync::Arc<dyn FileContent>,
    ) -> FileUploadOutcome {
        let _ = (file, content);
        FileUploadOutcome::ALLOW
    }

    /// Whether `user` may download `file`.
    async fn file_pre_download(&self, file: FileCheck, user: &User) -> Decision {
        let _ = (file, user);
        Decision::Allow
    }

    /// The queue of bot posts, handed to the router once (it sends them).
    fn take_bot_outbox(&self) -> Option<tokio::sync::mpsc::Receiver<BotPost>> {
        None
    }
}

/// The hook layer when no plugin is loaded: everything continues or is allowed.
#[derive(Debug, Default)]
pub struct NoHooks;

#[async_trait]
impl Hooks for NoHooks {
    fn implements(&self, _hook: HookKind) -> bool {
        false
    }
    async fn message_pre_send(&self, msg: PreSend) -> PreSendOutcome {
        PreSendOutcome::Continue {
            body: msg.body,
            metadata: msg.metadata,
            modified: false,
            authors: Default::default(),
        }
    }
    fn message_delivered(&self, _event: &Event, _depth: u32) {}
    async fn on_login(&self, _user: &User) -> Decision {
        Decision::Allow
    }
    async fn on_connect(&self, _user: &User, _session_id: &str) -> Decision {
        Decision::Allow
    }
}

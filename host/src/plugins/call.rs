//! One hook call in host terms, independent of the WIT version the plugin was built
//! against: each `bindings_v0_*` module converts a [`Request`] into its own generated types
//! and its generated answer back into a [`Response`], so the chain, the observer and the
//! outbox never see a versioned type.

use crate::router::hooks::HookKind;
use crate::router::hooks::{AuthRequest, CommandCall, FileCheck, FileContent, PreSend};
use crate::store::{Event, Metadata, Room, RoomId, User, UserId};

use super::breaker::Scope;

/// One hook call's arguments.
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    /// The message as the chain has it so far (`body`/`metadata` after earlier plugins).
    PreSend {
        msg: &'a PreSend,
        body: &'a str,
        metadata: &'a Metadata,
    },
    Delivered(&'a Room, &'a Event),
    Login(&'a User),
    Connect(&'a User, &'a str),
    Command(&'a CommandCall),
    Authenticate(&'a AuthRequest),
    /// The file as the chain has it so far; `content` serves its bytes (after an earlier
    /// plugin's replacement, the replacement's).
    FileUpload {
        file: &'a FileCheck,
        content: &'a std::sync::Arc<dyn FileContent>,
    },
    FileDownload(&'a FileCheck, &'a User),
}

impl Request<'_> {
    pub(crate) fn hook(&self) -> HookKind {
        match self {
            Self::PreSend { .. } => HookKind::MessagePreSend,
            Self::Delivered(..) => HookKind::MessageDelivered,
            Self::Login(_) => HookKind::OnLogin,
            Self::Connect(..) => HookKind::OnConnect,
            Self::Command(_) => HookKind::Command,
            Self::Authenticate(_) => HookKind::Authenticate,
            Self::FileUpload { .. } => HookKind::FilePreUpload,
            Self::FileDownload(..) => HookKind::FilePreDownload,
        }
    }

    /// The room the hook fired in: where `bot.reply` posts.
    pub(crate) fn room(&self) -> Option<RoomId> {
        match self {
            Self::PreSend { msg, .. } => Some(msg.room_id),
            Self::Delivered(room, _) => Some(room.id),
            Self::Command(call) => Some(call.room_id),
            Self::FileUpload { file, .. } | Self::FileDownload(file, _) => Some(file.room_id),
            Self::Login(_) | Self::Connect(..) | Self::Authenticate(_) => None,
        }
    }

    /// The file a `file-pre-upload` call may read.
    pub(crate) fn upload_content(&self) -> Option<std::sync::Arc<dyn FileContent>> {
        match self {
            Self::FileUpload { content, .. } => Some(std::sync::Arc::clone(content)),
            _ => None,
        }
    }

    /// Where the call's failures are counted by the circuit breaker: the room and the user
    /// whose action made the call (`authenticate` has neither: it counts for the plugin).
    pub(crate) fn scope(&self) -> Scope {
        let sender = match self {
            Self::Login(user) | Self::Connect(user, _) => Some(user.id),
            other => other.actor(),
        };
        Scope {
            room: self.room(),
            sender,
        }
    }

    /// The person on whose behalf the plugin may use the language model: who sent the
    /// message or the command. Not for logins, connections or files.
    pub(crate) fn invoker(&self) -> Option<UserId> {
        match self {
            Self::PreSend { msg, .. } => Some(msg.sender_id),
            Self::Delivered(_, event) => Some(event.sender_id),
            Self::Command(call) => Some(call.sender.id),
            _ => None,
        }
    }

    /// Who caused the call, when it is a user's action in a room; a plugin is never called
    /// for what its own bot did.
    pub(crate) fn actor(&self) -> Option<UserId> {
        match self {
            Self::PreSend { msg, .. } => Some(msg.sender_id),
            Self::Delivered(_, event) => Some(event.sender_id),
            Self::Command(call) => Some(call.sender.id),
            Self::FileUpload { file, .. } => Some(file.uploader.id),
            Self::FileDownload(_, user) => Some(user.id),
            Self::Login(_) | Self::Connect(..) | Self::Authenticate(_) => None,
        }
    }
}

/// What `message-pre-send` answered.
pub(crate) enum PreSendAnswer {
    Continue,
    Modify {
        body: String,
        metadata: Vec<(String, String)>,
    },
    Reject {
        code: String,
        reason: String,
    },
}

/// What `on-login` / `on-connect` answered.
pub(crate) enum DecisionAnswer {
    Allow,
    Deny(String),
}

/// What `command` answered.
pub(crate) enum CommandAnswer {
    Done,
    Reply(String),
    PrivateReply(String),
}

/// What `authenticate` answered.
pub(crate) enum AuthAnswer {
    Accept(String),
    Reject(String),
    Defer,
}

/// What `file-pre-upload` answered.
pub(crate) enum FileUploadAnswer {
    Allow,
    Reject {
        code: String,
        reason: String,
    },
    Replace {
        content: Vec<u8>,
        name: Option<String>,
    },
    Quarantine(String),
}

/// One hook call's answer.
pub(crate) enum Response {
    PreSend(PreSendAnswer),
    Delivered,
    Decision(DecisionAnswer),
    Command(CommandAnswer),
    Auth(AuthAnswer),
    FileUpload(FileUploadAnswer),
}

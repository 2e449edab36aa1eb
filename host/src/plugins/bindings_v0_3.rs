//! Host side of WIT `switchboard:plugin@0.3.0` (`wit/`, not yet released: the next
//! interface changes go here): the generated bindings, the host imports adapted to the
//! version-neutral capability logic in `capabilities`, and conversions between the
//! server's types and 0.3's.
//!
//! 0.3 is 0.2 plus: the `file-pre-upload` and `file-pre-download` hooks and the `upload`
//! import that serves the file's bytes to the first; threads (`thread-root` on the
//! `message` and `event` records, the `bot.reply-in-thread` import); `bot.react`; the
//! `llm` import (the server's governed language model).

use super::call::{DecisionAnswer, FileUploadAnswer, PreSendAnswer, Request, Response};
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
        "switchboard:plugin/bot.reply-in-thread": async,
        "switchboard:plugin/bot.react": async,
        "switchboard:plugin/rooms.info": async,
        "switchboard:plugin/rooms.members": async,
        "switchboard:plugin/rooms.display-name": async,
        "switchboard:plugin/upload.read": async,
        "switchboard:plugin/llm.complete": async,
        "switchboard:plugin/llm.answer": async,
    },
});

use switchboard::plugin::types::{
    Decision, Event, EventKind, FileInfo, FileUploadOutcome, HookSet, HostError, Message,
    PreSendOutcome, Room, RoomKind, User,
};

/// The export every 0.3 component has; used to tell interface versions apart.
pub(crate) const HOOKS_EXPORT: &str = "switchboard:plugin/hooks@0.3.0";

super::bindings_common::interface_glue!(
    extra_hooks: [
        (COMMAND, Command),
        (AUTHENTICATE, Authenticate),
        (FILE_PRE_UPLOAD, FilePreUpload),
        (FILE_PRE_DOWNLOAD, FilePreDownload),
    ],
    extra_calls: |hooks, store| {
        Request::Command(c) => command(hooks, store, c).await?,
        Request::Authenticate(a) => authenticate(hooks, store, a).await?,
        Request::FileUpload { file, .. } => {
            Response::FileUpload(match hooks.call_file_pre_upload(store, &file_info(file)).await? {
                FileUploadOutcome::Allow => FileUploadAnswer::Allow,
                FileUploadOutcome::Reject(r) => FileUploadAnswer::Reject {
                    code: r.code,
                    reason: r.reason,
                },
                FileUploadOutcome::Replace(r) => FileUploadAnswer::Replace {
                    content: r.content,
                    name: r.name,
                },
                FileUploadOutcome::Quarantine(reason) => FileUploadAnswer::Quarantine(reason),
            })
        }
        Request::FileDownload(file, downloader) => decision(
            hooks
                .call_file_pre_download(store, &file_info(file), &user(downloader))
                .await?,
        ),
    },
    extra_errors: {
        CapError::Unavailable(m) => Self::Unavailable(m),
        CapError::Denied(m) => Self::Denied(m),
    },
    extra_message_fields: |msg| { thread_root: msg.thread_root, },
    extra_event_fields: |event| { thread_root: event.thread_root, },
);

super::bindings_common::since_v0_2!(extra_bot_imports: {
    async fn reply_in_thread(
        &mut self,
        room_id: i64,
        root_id: i64,
        body: String,
    ) -> Result<(), HostError> {
        Ok(self.bot_post(Some(room_id), Some(root_id), body).await?)
    }
    async fn react(&mut self, room_id: i64, message_id: i64, emoji: String) -> Result<(), HostError> {
        Ok(self.bot_react(room_id, message_id, emoji).await?)
    }
});

fn file_info(file: &crate::router::hooks::FileCheck) -> FileInfo {
    FileInfo {
        id: file.id,
        room_id: file.room_id,
        uploader: user(&file.uploader),
        name: file.name.clone(),
        content_type: file.content_type.clone(),
        size: file.size,
        sha256: file.sha256.clone(),
    }
}

impl switchboard::plugin::upload::Host for HostState {
    async fn read(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, HostError> {
        Ok(self.upload_read(offset, len).await?)
    }
}

impl switchboard::plugin::llm::Host for HostState {
    async fn complete(
        &mut self,
        req: switchboard::plugin::llm::Request,
    ) -> Result<switchboard::plugin::llm::Completion, HostError> {
        let done = self.llm_complete(llm_request(req)).await?;
        Ok(switchboard::plugin::llm::Completion {
            text: done.text,
            tokens_in: done.tokens_in,
            tokens_out: done.tokens_out,
        })
    }

    async fn answer(
        &mut self,
        req: switchboard::plugin::llm::Request,
        delivery: switchboard::plugin::llm::Delivery,
        preface: Option<String>,
    ) -> Result<(), HostError> {
        use switchboard::plugin::llm::Delivery as D;
        let delivery = match delivery {
            D::Room => crate::llm::Delivery::Room,
            D::Thread(root) => crate::llm::Delivery::Thread(root),
            D::Private => crate::llm::Delivery::Private,
        };
        Ok(self.llm_answer(llm_request(req), delivery, preface).await?)
    }

    fn decide(&mut self, code: String, approve: bool) -> Result<(), HostError> {
        Ok(self.llm_decide(&code, approve)?)
    }
}

fn llm_request(req: switchboard::plugin::llm::Request) -> super::capabilities::llm::LlmRequest {
    use switchboard::plugin::llm::Role as R;
    super::capabilities::llm::LlmRequest {
        messages: req
            .messages
            .into_iter()
            .map(|m| crate::llm::ChatMessage {
                role: match m.role {
                    R::System => crate::llm::Role::System,
                    R::User => crate::llm::Role::User,
                    R::Assistant => crate::llm::Role::Assistant,
                },
                content: m.content,
            })
            .collect(),
        context: req
            .context
            .into_iter()
            .map(|c| crate::llm::ContextSource {
                room: c.room_id,
                thread_root: c.thread_root,
                limit: c.limit,
                since: c.since_ms,
            })
            .collect(),
        max_tokens: req.max_tokens,
        tools: req.tools,
    }
}

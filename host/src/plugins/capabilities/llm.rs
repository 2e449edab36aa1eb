//! The `llm` capability: a plugin's requests to the server's governed language model
//! ([`crate::llm`]). This side only checks the grant, who the call is for (the person who
//! caused the hook: the plugin cannot name someone else) and where an answer may go; the
//! governance itself (context, DLP, tools, budgets, audit) is the `llm` module's.

use crate::llm::{AssistantJob, Call, ChatMessage, ContextSource, Delivery, LlmError};
use crate::router::hooks::BotWrite;

use super::{CapError, HostState, QueuedPost};

/// The longest preface `answer` accepts.
const MAX_PREFACE_BYTES: usize = 4 * 1024;

/// A request as a plugin wrote it (version-neutral).
pub(crate) struct LlmRequest {
    pub(crate) messages: Vec<ChatMessage>,
    pub(crate) context: Vec<ContextSource>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) tools: bool,
}

pub(crate) struct LlmCompletion {
    pub(crate) text: String,
    pub(crate) tokens_in: u32,
    pub(crate) tokens_out: u32,
}

impl From<LlmError> for CapError {
    fn from(err: LlmError) -> Self {
        match err {
            LlmError::InvalidRequest(why) => Self::InvalidArgument(why),
            LlmError::Denied(_) | LlmError::PromptBlocked(_) | LlmError::Budget { .. } => {
                Self::Denied(err.to_string())
            }
            LlmError::NotConfigured | LlmError::Model(_) | LlmError::Store(_) => {
                Self::Unavailable(err.to_string())
            }
        }
    }
}

impl HostState {
    /// The call a request makes, for the person who caused the running hook.
    async fn llm_call(&mut self, request: LlmRequest, interactive: bool) -> Result<Call, CapError> {
        let llm = self.ctx.llm.clone().ok_or(CapError::NotGranted)?;
        let Some(invoker) = self.call.invoker else {
            return Err(CapError::InvalidArgument(
                "llm is only available in hooks a person caused (command, message-delivered, message-pre-send)".into(),
            ));
        };
        let started = std::time::Instant::now();
        let user = llm.user(invoker).await;
        self.settle(started);
        let user =
            user?.ok_or_else(|| CapError::Denied("the person is not an active user".into()))?;
        // A bot's message (another plugin's, or an answer being written) is nobody's
        // request: the model works for people.
        if user.is_bot {
            return Err(CapError::Denied(
                "llm calls are made for people, not bots".into(),
            ));
        }
        Ok(Call {
            plugin: self.ctx.name.to_string(),
            user,
            room: self.call.room,
            messages: request.messages,
            context: request.context,
            max_tokens: request.max_tokens,
            tools: request.tools,
            interactive,
        })
    }

    /// `llm.complete`: the whole reply, returned to the plugin. Waiting for the model is
    /// not the plugin's CPU time, but the hook's wall-clock budget bounds it.
    pub(crate) async fn llm_complete(
        &mut self,
        request: LlmRequest,
    ) -> Result<LlmCompletion, CapError> {
        let call = self.llm_call(request, false).await?;
        let llm = self.ctx.llm.clone().ok_or(CapError::NotGranted)?;
        let started = std::time::Instant::now();
        // On its own task: if the hook's wall-clock budget cuts the plugin off, the call
        // still finishes, and is counted and audited.
        let answer = tokio::spawn(async move { llm.chat(&call, None).await }).await;
        self.settle(started);
        let answer =
            answer.map_err(|_| CapError::Unavailable("the model call failed".into()))??;
        Ok(LlmCompletion {
            text: answer.text,
            tokens_in: u32::try_from(answer.tokens_in).unwrap_or(u32::MAX),
            tokens_out: u32::try_from(answer.tokens_out).unwrap_or(u32::MAX),
        })
    }

    /// `llm.answer`: checked now, queued for the router (like a bot post), which delivers
    /// the reply as it streams.
    pub(crate) async fn llm_answer(
        &mut self,
        request: LlmRequest,
        delivery: Delivery,
        preface: Option<String>,
    ) -> Result<(), CapError> {
        let bot = self.ctx.bot.clone().ok_or_else(|| {
            CapError::Denied("llm.answer posts as the plugin's bot: grant `bot` too".into())
        })?;
        if preface
            .as_ref()
            .is_some_and(|p| p.len() > MAX_PREFACE_BYTES)
        {
            return Err(CapError::TooLarge);
        }
        let call = self.llm_call(request, true).await?;
        let room = call
            .room
            .ok_or_else(|| CapError::InvalidArgument("this hook did not fire in a room".into()))?;
        let llm = self.ctx.llm.clone().ok_or(CapError::NotGranted)?;
        let started = std::time::Instant::now();
        let checked = llm.precheck(&call).await;
        self.settle(started);
        checked?;
        let job = AssistantJob {
            call,
            delivery,
            preface,
        };
        let write = BotWrite::Assistant(Box::new(job));
        match delivery {
            // The bot must be a member of the room it answers in (checked again on posting).
            Delivery::Room | Delivery::Thread(_) => self.queue_bot_write(&bot, room, write).await,
            Delivery::Private => {
                if self.call.posts.len() >= super::MAX_POSTS_PER_CALL {
                    return Err(CapError::QuotaExceeded);
                }
                self.call.posts.push(QueuedPost {
                    room_id: room,
                    write,
                });
                Ok(())
            }
        }
    }

    /// `llm.decide`: the invoking person's decision on a tool call waiting for it.
    pub(crate) fn llm_decide(&mut self, code: &str, approve: bool) -> Result<(), CapError> {
        let llm = self.ctx.llm.clone().ok_or(CapError::NotGranted)?;
        let invoker = self.call.invoker.ok_or_else(|| {
            CapError::InvalidArgument(
                "llm.decide is only available in hooks a person caused".into(),
            )
        })?;
        Ok(llm.decide(invoker, code, approve)?)
    }
}

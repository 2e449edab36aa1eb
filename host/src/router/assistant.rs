//! Delivering the language model's answers (`llm.answer`), and what the model may do in
//! chat through its tools.
//!
//! A plugin's `llm.answer` reaches the router as a job in its bot's outbox. The job runs on
//! its own task (a model answers in seconds, the outbox must not wait): for a room or a
//! thread, the bot posts a placeholder and edits it as the governed, masked text streams in
//! ([`crate::llm`] decides what is visible), then writes the final answer. Every post and
//! edit goes through the ordinary send path, so the `message-pre-send` chain (a DLP filter)
//! sees each before anyone else does. A private answer is a notice to the person alone,
//! sent once it is complete. Failures are told to the person who asked.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Router, RouterCore};
use crate::error::ApiError;
use crate::ids::random_token;
use crate::llm::{AssistantJob, ChatActions, Delivery, Llm, STREAMING_KEY};
use crate::protocol::ServerFrame;
use crate::store::{EventId, Metadata, RoomId, ThreadReply, User, UserId};

/// How often a final edit that met the rate limit is tried again.
const FINAL_EDIT_TRIES: u32 = 20;

impl Router {
    /// Give the router the language model (and the model its chat actions).
    pub fn attach_llm(&self, llm: Arc<Llm>) {
        llm.attach(Arc::new(RouterActions(Arc::downgrade(&self.core))));
        let _ = self.core.llm.set(llm);
    }
}

/// The model's actions in chat, as the person it works for.
struct RouterActions(Weak<RouterCore>);

#[async_trait::async_trait]
impl ChatActions for RouterActions {
    async fn post_as(&self, user: &User, room: RoomId, text: String) -> Result<EventId, String> {
        let router = self.0.upgrade().ok_or("the server is stopping")?;
        // The person's own message (their metadata rules apply: no reserved keys); the
        // audit record of the call names the tool that posted it.
        let metadata = Metadata::new();
        router
            .send_message(
                user,
                room,
                format!("llm-{}", random_token(16)),
                text,
                metadata,
                1,
            )
            .await
            .map(|ack| ack.id)
            .map_err(|err| err.body().message)
    }

    fn notify(&self, user: UserId, room: Option<RoomId>, text: &str) {
        if let Some(router) = self.0.upgrade() {
            router.notify(user, room.unwrap_or(0), "assistant", text);
        }
    }
}

impl RouterCore {
    fn notify(&self, user: UserId, room: RoomId, plugin: &str, text: &str) {
        let frame = ServerFrame::Notice {
            room,
            plugin,
            body: text,
        }
        .to_json();
        self.hub.deliver_to_user(user, frame.into());
    }

    /// Run one `llm.answer` job for the plugin whose bot is `bot`.
    pub(super) async fn run_assistant(
        &self,
        bot: &User,
        room: RoomId,
        job: AssistantJob,
        depth: u32,
    ) {
        let plugin = job.call.plugin.clone();
        let asker = job.call.user.id;
        let Some(llm) = self.llm.get().cloned() else {
            self.notify(
                asker,
                room,
                &plugin,
                "The assistant could not answer: no language model is configured on this server.",
            );
            return;
        };
        let thread = match job.delivery {
            Delivery::Private => {
                let text = match llm.chat(&job.call, None).await {
                    Ok(answer) => self.private_answer(bot, room, &plugin, answer, depth).await,
                    Err(err) => format!("The assistant could not answer: {err}"),
                };
                self.notify(asker, room, &plugin, &text);
                return;
            }
            Delivery::Room => None,
            Delivery::Thread(root) => Some(ThreadReply {
                root,
                also_to_room: false,
            }),
        };
        let preface = job
            .preface
            .as_deref()
            .map(|p| format!("{}\n\n", p.trim()))
            .unwrap_or_default();
        let mut metadata = Metadata::new();
        metadata.insert(super::bots::BOT_PLUGIN_KEY.to_string(), plugin.clone());
        metadata.insert(STREAMING_KEY.to_string(), "1".to_string());
        let placeholder = self
            .send_message_with_files(
                bot,
                room,
                format!("bot-{}", random_token(16)),
                format!("{preface}…"),
                metadata,
                Vec::new(),
                thread,
                depth,
            )
            .await;
        let message = match placeholder {
            Ok(ack) => ack.id,
            Err(err) => {
                tracing::warn!(plugin = %plugin, room, code = err.code(), "assistant answer not posted");
                self.notify(
                    asker,
                    room,
                    &plugin,
                    &format!(
                        "The assistant could not answer here: {}",
                        err.body().message
                    ),
                );
                return;
            }
        };
        let (progress, mut visible) = tokio::sync::watch::channel(String::new());
        let ask = async move {
            let answer = llm.chat(&job.call, Some(&progress)).await;
            drop(progress);
            answer
        };
        let stream = async {
            while visible.changed().await.is_ok() {
                let text = visible.borrow_and_update().clone();
                if text.is_empty() {
                    continue;
                }
                // A partial edit may meet the rate limit or a filter; the final one decides.
                if let Err(err) = self
                    .edit_bot_answer(bot, room, message, format!("{preface}{text} …"), true)
                    .await
                {
                    tracing::debug!(plugin = %plugin, code = err.code(), "a streamed edit was skipped");
                }
            }
        };
        let (answer, ()) = tokio::join!(ask, stream);
        let text = match &answer {
            Ok(answer) => self.fit(&preface, &answer.text),
            Err(err) => format!("[The assistant could not answer: {err}]"),
        };
        if let Err(err) = answer {
            self.notify(
                asker,
                room,
                &plugin,
                &format!("The assistant could not answer: {err}"),
            );
        }
        let mut result = Err(ApiError::internal(anyhow::anyhow!("not tried")));
        for _ in 0..FINAL_EDIT_TRIES {
            result = self
                .edit_bot_answer(bot, room, message, format!("{preface}{text}"), false)
                .await;
            match &result {
                Err(err) if err.code() == "rate_limited" => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                _ => break,
            }
        }
        if let Err(err) = result {
            // Refused by the chain (a DLP filter, say): nothing of it may show.
            tracing::warn!(plugin = %plugin, room, code = err.code(), "assistant answer refused");
            let withheld = format!(
                "{preface}[The assistant's answer was withheld: {}]",
                err.body().message
            );
            let _ = self
                .edit_bot_answer(bot, room, message, withheld, false)
                .await;
            self.notify(
                asker,
                room,
                &plugin,
                &format!(
                    "The assistant's answer was withheld: {}",
                    err.body().message
                ),
            );
        }
    }

    /// `text` cut so that it fits in one message after `preface`.
    fn fit(&self, preface: &str, text: &str) -> String {
        const NOTE: &str = "\n\n[the answer was cut: it is longer than a message may be]";
        let room = self.limits.max_message_bytes.saturating_sub(preface.len());
        if text.len() <= room {
            return text.to_string();
        }
        let mut cut = room.saturating_sub(NOTE.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}{NOTE}", &text[..cut])
    }

    /// A private answer passes the `message-pre-send` chain like a post would (masked,
    /// before the person's own values are put back); a refusal withholds it.
    async fn private_answer(
        &self,
        bot: &User,
        room: RoomId,
        plugin: &str,
        answer: crate::llm::Answer,
        depth: u32,
    ) -> String {
        let mut metadata = Metadata::new();
        metadata.insert(super::bots::BOT_PLUGIN_KEY.to_string(), plugin.to_string());
        let checked = self
            .pre_send(
                bot,
                room,
                &format!("llm-{}", random_token(16)),
                None,
                None,
                self.fit("", &answer.text),
                metadata,
                depth,
            )
            .await;
        match checked {
            // Unchanged by the chain: the person may have their own values back.
            Ok((_, _, false, _)) => self.fit("", &answer.private_text),
            Ok((body, _, true, _)) => body,
            Err(err) => format!(
                "The assistant's answer was withheld: {}",
                err.body().message
            ),
        }
    }

    /// Edit the bot's answer message; `streaming` keeps the mark that it is being written.
    async fn edit_bot_answer(
        &self,
        bot: &User,
        room: RoomId,
        message: EventId,
        body: String,
        streaming: bool,
    ) -> crate::error::Result<crate::protocol::Ack> {
        // Partial edits share the bot's rate limit (skipped when over it); the final one
        // must land, or the message would stay half-written.
        self.edit_message_with(bot, room, message, body, streaming, |metadata| {
            if streaming {
                metadata.insert(STREAMING_KEY.to_string(), "1".to_string());
            } else {
                metadata.remove(STREAMING_KEY);
            }
        })
        .await
    }
}

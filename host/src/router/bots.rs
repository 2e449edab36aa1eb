//! Sending plugins' bot posts. The plugin layer queues them (see `plugins::capabilities::bot`) while a
//! hook runs; this task sends them afterwards, one at a time and in order, through the same
//! path as any user's message: the bot must be an active member of the room, the per-user
//! rate limit applies, and the `message-pre-send` chain sees the post. A post that fails
//! (refused by a plugin, bot not a member, rate limited) is logged with the plugin's name.

use std::sync::Weak;

use tokio::sync::mpsc::Receiver;

use super::RouterCore;
use super::hooks::{BotPost, BotWrite};
use crate::error::{ApiError, Result};
use crate::ids::random_token;
use crate::protocol::Ack;
use crate::store::{Metadata, ThreadReply};

/// Metadata key naming the plugin whose bot posted a message.
pub const BOT_PLUGIN_KEY: &str = "bot.plugin";

/// Start the task draining `outbox`; it ends when the plugin layer or the router is gone.
pub(super) fn spawn(router: Weak<RouterCore>, mut outbox: Receiver<BotPost>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::error!("no tokio runtime: plugins' bot posts will not be sent");
        return;
    };
    runtime.spawn(async move {
        while let Some(post) = outbox.recv().await {
            let Some(router) = router.upgrade() else {
                break;
            };
            // A model's answer takes seconds: it runs on its own, not in this queue.
            if let BotWrite::Assistant(job) = post.write {
                let bot = post.bot.clone();
                let (room, depth) = (post.room_id, post.depth);
                tokio::spawn(async move {
                    router.run_assistant(&bot, room, *job, depth).await;
                });
                continue;
            }
            if let Err(err) = router.send_bot_post(&post).await {
                tracing::warn!(
                    plugin = %post.plugin,
                    bot = %post.bot.name,
                    room = post.room_id,
                    code = err.code(),
                    error = %err,
                    "bot post not sent"
                );
            }
        }
    });
}

impl RouterCore {
    /// Send one bot post as its bot user.
    pub(super) async fn send_bot_post(&self, post: &BotPost) -> Result<Ack> {
        // The bot may have been deactivated since its plugin loaded.
        let bot = match self.store.user_by_id(post.bot.id).await? {
            Some(user) if user.active && user.is_bot => user,
            _ => {
                return Err(ApiError::forbidden(
                    "bot_inactive",
                    "the plugin's bot user is deactivated",
                ));
            }
        };
        let (thread_root, body) = match &post.write {
            BotWrite::Message { thread_root, body } => (*thread_root, body),
            BotWrite::Reaction { message, emoji } => {
                return self
                    .react(&bot, post.room_id, *message, emoji.clone())
                    .await;
            }
            BotWrite::Assistant(_) => {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "an assistant job is not a post"
                )));
            }
        };
        let mut metadata = Metadata::new();
        metadata.insert(BOT_PLUGIN_KEY.to_string(), post.plugin.clone());
        let thread = thread_root.map(|root| ThreadReply {
            root,
            also_to_room: false,
        });
        self.send_message_with_files(
            &bot,
            post.room_id,
            format!("bot-{}", random_token(16)),
            body.clone(),
            metadata,
            Vec::new(),
            thread,
            post.depth,
        )
        .await
    }
}

//! The `bot` capability: each plugin granted it acts as its own bot user.
//!
//! The user is created when the plugin loads (if missing), marked `is_bot`, without a
//! password (nobody can log in as it). The operator adds it to rooms like any member.
//!
//! Posts use an outbox: `bot.post` / `bot.reply` only queue text in the running call's
//! scope; when the hook returns, the queued posts go to one channel that the router drains
//! and sends through its ordinary send path (membership, rate limit, `message-pre-send`
//! chain, commit, fan-out). So a hook never re-enters the router while it runs, and a DLP
//! plugin sees what bots say exactly as it sees what people say.
//!
//! Loops: a plugin is never called for its own bot's messages (the chain skips it), and
//! every post carries a depth, one more than the event whose hook produced it (a person's
//! message has depth 0). Posts deeper than the plugin's `[bot] max_depth` are dropped and
//! counted, so two bots answering each other stop after a few rounds. The router's per-user
//! rate limit applies to bots too.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc::{Receiver, Sender, error::TrySendError};

use super::CapError;
use crate::plugins::manifest::BotSettings;
use crate::plugins::{PluginError, lock};
use crate::router::hooks::BotPost;
use crate::store::{NewUser, RoomId, Store, User};

/// Bot posts waiting for the router; beyond this they are dropped and counted.
const OUTBOX_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PostLabels {
    plugin: String,
    /// `queued`, `too_deep` (past `max_depth`) or `queue_full`.
    outcome: &'static str,
}

/// The channel from every plugin's bot to the router.
pub(crate) struct Outbox {
    tx: Sender<BotPost>,
    rx: Mutex<Option<Receiver<BotPost>>>,
    posts: Family<PostLabels, Counter>,
}

impl Outbox {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOX_CAPACITY);
        let posts = Family::<PostLabels, Counter>::default();
        registry.register(
            "switchboard_plugin_bot_posts",
            "Bot posts queued by plugins, by outcome (queued, too_deep, queue_full)",
            posts.clone(),
        );
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            posts,
        }
    }

    /// The receiving end, for the router; `None` after the first call.
    pub(crate) fn take_receiver(&self) -> Option<Receiver<BotPost>> {
        lock(&self.rx).take()
    }

    fn count(&self, plugin: &str, outcome: &'static str) {
        self.posts
            .get_or_create(&PostLabels {
                plugin: plugin.to_string(),
                outcome,
            })
            .inc();
    }
}

/// One plugin's bot: its user and its depth cap.
pub(crate) struct BotCtx {
    plugin: String,
    pub(crate) user: User,
    max_depth: u32,
    outbox: std::sync::Arc<Outbox>,
    store: std::sync::Arc<dyn Store>,
}

impl BotCtx {
    /// Find the plugin's bot user or create it. A person's account of that name is never
    /// taken over: that is a load error.
    pub(crate) async fn provision(
        plugin: &str,
        settings: &BotSettings,
        store: std::sync::Arc<dyn Store>,
        outbox: &std::sync::Arc<Outbox>,
    ) -> Result<Self, PluginError> {
        let err = |message: String| PluginError::Capability {
            name: plugin.to_string(),
            message,
        };
        let existing = store
            .user_by_name(&settings.name)
            .await
            .map_err(|e| err(e.to_string()))?;
        let user = match existing {
            Some((user, _)) if user.is_bot => user,
            Some(_) => {
                return Err(err(format!(
                    "the user name {:?} belongs to a person's account; set [bot] name",
                    settings.name
                )));
            }
            None => {
                let user = store
                    .create_user(NewUser {
                        name: settings.name.clone(),
                        display_name: settings.display_name.clone(),
                        password_hash: None,
                        is_admin: false,
                        is_bot: true,
                    })
                    .await
                    .map_err(|e| err(e.to_string()))?;
                tracing::info!(plugin, bot = %user.name, id = user.id, "created the plugin's bot user");
                user
            }
        };
        if !user.active {
            tracing::warn!(plugin, bot = %user.name, "the plugin's bot user is deactivated; its posts will fail");
        }
        Ok(Self {
            plugin: plugin.to_string(),
            user,
            max_depth: settings.max_depth,
            outbox: outbox.clone(),
            store,
        })
    }

    /// Whether the bot is a member of `room` (a room that does not exist: no).
    pub(crate) async fn is_member(&self, room: RoomId) -> Result<bool, CapError> {
        match self.store.member(room, self.user.id).await {
            Ok(member) => Ok(member.is_some()),
            Err(e) => {
                tracing::warn!(plugin = %self.plugin, error = %e, "bot membership lookup failed");
                Err(CapError::Unavailable("membership lookup failed".into()))
            }
        }
    }

    /// Hand the posts a finished hook call queued to the router. `trigger_depth` is the bot
    /// depth of the event the hook was called for.
    pub(crate) fn dispatch(&self, posts: Vec<super::QueuedPost>, trigger_depth: u32) {
        let depth = trigger_depth.saturating_add(1);
        for super::QueuedPost { room_id, write } in posts {
            if depth > self.max_depth {
                self.outbox.count(&self.plugin, "too_deep");
                tracing::warn!(
                    plugin = %self.plugin,
                    room = room_id,
                    depth,
                    max_depth = self.max_depth,
                    "bot post dropped: it would continue a chain of bot posts past max_depth"
                );
                continue;
            }
            let post = BotPost {
                plugin: self.plugin.clone(),
                bot: self.user.clone(),
                room_id,
                write,
                depth,
            };
            match self.outbox.tx.try_send(post) {
                Ok(()) => self.outbox.count(&self.plugin, "queued"),
                Err(TrySendError::Full(_)) => {
                    self.outbox.count(&self.plugin, "queue_full");
                    tracing::warn!(plugin = %self.plugin, "bot outbox full: post dropped");
                }
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }
}

//! Incoming webhooks: a secret URL that posts into one room, accepting what tools already
//! send to Slack (see [`slack`]).
//!
//! A room's owner (or a server admin) makes a hook; it gets its own bot account, a member of
//! the room, named after the hook, and a random key that is shown once (only its SHA-256 is
//! stored). A post through the hook is an ordinary message of that bot: it passes the same
//! path as anyone's (membership, the per-user rate limit, the `message-pre-send` plugin
//! chain, so DLP sees it) and a plugin's rejection is answered with its reason. Each hook is
//! further limited to `[webhooks] messages_per_minute` with a burst, so one noisy tool cannot
//! use the bot's whole budget. Making and revoking a hook are audited; a revoked hook's bot
//! leaves the room and its key answers `hook_revoked`.

pub mod slack;

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::audit::{self, Action, Actor, Subject};
use crate::config::WebhooksConfig;
use crate::error::{ApiError, Result};
use crate::ids::{random_token, sha256_hex};
use crate::router::Router;
use crate::store::{
    IncomingWebhook, Metadata, NewUser, Role, RoomId, RoomKind, Store, User, now_millis,
};

/// Metadata key naming the hook (its id) whose bot posted a message.
pub const HOOK_METADATA_KEY: &str = "bot.hook";
/// Metadata keys of a post's own `username`, `icon_url` and `icon_emoji`.
pub const USERNAME_METADATA_KEY: &str = "hook.username";
pub const ICON_URL_METADATA_KEY: &str = "hook.icon_url";
pub const ICON_EMOJI_METADATA_KEY: &str = "hook.icon_emoji";

/// Longest hook name (it is the bot's display name).
pub const MAX_NAME_CHARS: usize = 80;
/// Longest `username` and `icon_emoji` of a post.
const MAX_LABEL_CHARS: usize = 80;
/// Longest `icon_url` of a post.
const MAX_ICON_URL_BYTES: usize = 2048;
/// Random bytes in a key (256 bits).
const KEY_BYTES: usize = 32;

/// A hook just made, with the key of its URL (never shown again).
#[derive(Debug, Clone)]
pub struct CreatedHook {
    pub hook: IncomingWebhook,
    pub bot: User,
    pub key: String,
}

pub struct Webhooks {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    config: WebhooksConfig,
    /// Posts per hook id.
    rate: DefaultKeyedRateLimiter<i64>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    pub fn new(store: Arc<dyn Store>, router: Arc<Router>, config: WebhooksConfig) -> Self {
        let per_minute =
            NonZeroU32::new(config.messages_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            store,
            router,
            rate: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            config,
        }
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.config
    }

    /// Make a hook for `room` that posts as a new bot account named `name`.
    pub async fn create(&self, caller: &User, room_id: RoomId, name: &str) -> Result<CreatedHook> {
        self.require_manager(caller, room_id).await?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid_name",
                format!("a hook's name is 1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        let live = self
            .store
            .incoming_webhooks(Some(room_id))
            .await?
            .iter()
            .filter(|h| h.revoked_at.is_none())
            .count();
        if live >= self.config.max_per_room {
            return Err(ApiError::conflict(
                "too_many_webhooks",
                format!(
                    "the room has {} live webhooks, as many as it may: revoke one first",
                    self.config.max_per_room
                ),
            ));
        }
        // The bot's user name is random (hooks' names need not be unique or name-shaped);
        // people see the display name.
        let bot = self
            .store
            .create_user(NewUser {
                name: format!("hook-{}", &sha256_hex(&random_token(16))[..12]),
                display_name: name.to_string(),
                password_hash: None,
                is_admin: false,
                is_bot: true,
            })
            .await?;
        let key = random_token(KEY_BYTES);
        let hook = self
            .store
            .create_incoming_webhook(room_id, bot.id, name, &sha256_hex(&key), caller.id)
            .await?;
        if let Err(err) = self.router.directory_join(room_id, bot.id).await {
            // A hook whose bot is not in the room would only ever fail: take it back.
            self.store
                .revoke_incoming_webhook(hook.id, now_millis())
                .await?;
            return Err(err);
        }
        audit::record(
            self.store.as_ref(),
            Actor::User(caller.id),
            Action::WebhookCreate,
            Subject::Room(room_id),
            serde_json::json!({ "webhook": hook.id, "name": name, "bot": bot.id }),
        )
        .await;
        Ok(CreatedHook { hook, bot, key })
    }

    /// The hooks of a room, revoked ones too (newest first).
    pub async fn list(&self, caller: &User, room_id: RoomId) -> Result<Vec<IncomingWebhook>> {
        self.require_manager(caller, room_id).await?;
        Ok(self.store.incoming_webhooks(Some(room_id)).await?)
    }

    /// Revoke a hook: its key stops working at once, and its bot leaves the room.
    pub async fn revoke(&self, caller: &User, room_id: RoomId, id: i64) -> Result<()> {
        self.require_manager(caller, room_id).await?;
        let hook = self
            .store
            .incoming_webhook(id)
            .await?
            .filter(|h| h.room_id == room_id)
            .ok_or_else(|| {
                ApiError::not_found("webhook_not_found", "no such webhook in this room")
            })?;
        if !self
            .store
            .revoke_incoming_webhook(hook.id, now_millis())
            .await?
        {
            return Err(ApiError::conflict(
                "webhook_revoked",
                "the webhook is revoked already",
            ));
        }
        self.router
            .directory_leave(room_id, hook.bot_user_id)
            .await?;
        audit::record(
            self.store.as_ref(),
            Actor::User(caller.id),
            Action::WebhookRevoke,
            Subject::Room(room_id),
            serde_json::json!({ "webhook": hook.id, "name": hook.name }),
        )
        .await;
        Ok(())
    }

    /// Post `payload` through the hook with key `key`.
    pub async fn post(&self, key: &str, payload: slack::Payload) -> Result<()> {
        let hook = self.hook_by_key(key).await?;
        if self.rate.check_key(&hook.id).is_err() {
            return Err(ApiError::TooManyRequests {
                code: "rate_limited",
                message: format!(
                    "this webhook may post {} messages a minute (burst {}): try again shortly",
                    self.config.messages_per_minute, self.config.burst
                ),
                retry_after_ms: 60_000 / u64::from(self.config.messages_per_minute.max(1)),
            });
        }
        let body = payload.render();
        if body.is_empty() {
            return Err(ApiError::bad_request(
                "no_text",
                "the payload has no text: give `text`, `attachments` or `blocks`",
            ));
        }
        let metadata = post_metadata(&hook, &payload)?;
        let bot = match self.store.user_by_id(hook.bot_user_id).await? {
            Some(bot) if bot.active => bot,
            _ => {
                return Err(ApiError::forbidden(
                    "bot_inactive",
                    "the webhook's bot account is deactivated",
                ));
            }
        };
        self.router
            .send_message(
                &bot,
                hook.room_id,
                format!("hook-{}", random_token(16)),
                body,
                metadata,
                0,
            )
            .await?;
        Ok(())
    }

    /// The live hook with key `key`.
    async fn hook_by_key(&self, key: &str) -> Result<IncomingWebhook> {
        let unknown = || {
            ApiError::not_found(
                "no_service",
                "no webhook has this URL: it may have been mistyped",
            )
        };
        // A key is URL-safe base64 of a fixed length; anything else cannot be one.
        if key.is_empty() || key.len() > 64 {
            return Err(unknown());
        }
        let hook = self
            .store
            .incoming_webhook_by_key(&sha256_hex(key))
            .await?
            .ok_or_else(unknown)?;
        if hook.revoked_at.is_some() {
            return Err(ApiError::Gone {
                code: "hook_revoked",
                message: "this webhook was revoked: ask the room's owner for a new one".into(),
            });
        }
        Ok(hook)
    }

    /// That `caller` manages the room's hooks: its owner, or a server admin (who need not be
    /// a member), and only in a group room. A member learns first that a direct room takes
    /// no hooks (it has no owner), then whether they may manage the room's.
    async fn require_manager(&self, caller: &User, room_id: RoomId) -> Result<()> {
        let role = if caller.is_admin {
            None
        } else {
            Some(self.router.require_member(caller.id, room_id).await?.role)
        };
        let room = self
            .store
            .room(room_id)
            .await?
            .ok_or_else(ApiError::room_not_found)?;
        if room.kind == RoomKind::Direct {
            return Err(ApiError::bad_request(
                "direct_room",
                "a webhook posts into a group room, not a direct one",
            ));
        }
        if role.is_some_and(|role| role < Role::Owner) {
            return Err(ApiError::forbidden(
                "not_allowed",
                "only the room's owner or a server admin manages its webhooks",
            ));
        }
        Ok(())
    }
}

/// The metadata of a post: the hook's id and the post's own name and icon, checked as any
/// input is.
fn post_metadata(hook: &IncomingWebhook, payload: &slack::Payload) -> Result<Metadata> {
    let mut metadata = Metadata::new();
    metadata.insert(HOOK_METADATA_KEY.to_string(), hook.id.to_string());
    let invalid = |message: String| ApiError::bad_request("invalid_payload", message);
    let label = |value: &Option<String>, field: &str| -> Result<Option<String>> {
        match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) if v.chars().count() > MAX_LABEL_CHARS || v.contains('\0') => Err(invalid(
                format!("`{field}` is at most {MAX_LABEL_CHARS} characters"),
            )),
            Some(v) => Ok(Some(v.to_string())),
        }
    };
    if let Some(username) = label(&payload.username, "username")? {
        metadata.insert(USERNAME_METADATA_KEY.to_string(), username);
    }
    if let Some(emoji) = label(&payload.icon_emoji, "icon_emoji")? {
        metadata.insert(ICON_EMOJI_METADATA_KEY.to_string(), emoji);
    }
    if let Some(url) = payload
        .icon_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        let web = url.starts_with("https://") || url.starts_with("http://");
        if !web || url.len() > MAX_ICON_URL_BYTES || url.chars().any(char::is_control) {
            return Err(invalid(format!(
                "`icon_url` is an http(s) URL of at most {MAX_ICON_URL_BYTES} bytes"
            )));
        }
        metadata.insert(ICON_URL_METADATA_KEY.to_string(), url.to_string());
    }
    Ok(metadata)
}

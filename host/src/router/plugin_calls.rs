//! The router's calls into the plugin layer around a write: the `message-pre-send` chain
//! (with the audit record of a refusal, and of the flags and redactions plugins mark) and the
//! hand-off to `message-delivered` observers.

use std::collections::BTreeMap;

use super::RouterCore;
use super::hooks::{HookKind, PreSend, PreSendOutcome};
use crate::audit::{self, Action, Actor, Subject};
use crate::error::{ApiError, Result};
use crate::store::{Event, EventId, Metadata, RoomId, User};

impl RouterCore {
    #[allow(clippy::too_many_arguments)] // one call site per kind of write; a struct adds nothing
    pub(super) async fn pre_send(
        &self,
        sender: &User,
        room_id: RoomId,
        client_msg_id: &str,
        editing: Option<EventId>,
        thread_root: Option<EventId>,
        body: String,
        metadata: Metadata,
        depth: u32,
    ) -> Result<(String, Metadata, bool, BTreeMap<String, String>)> {
        if !self.hooks.implements(HookKind::MessagePreSend) {
            return Ok((body, metadata, false, BTreeMap::new()));
        }
        let outcome = self
            .hooks
            .message_pre_send(PreSend {
                room_id,
                sender_id: sender.id,
                sender_name: sender.name.clone(),
                client_msg_id: client_msg_id.to_string(),
                editing,
                thread_root,
                body,
                metadata,
                max_body_bytes: self.limits.max_message_bytes,
                depth,
            })
            .await;
        match outcome {
            // The plugin layer checked what each plugin returned against `rules` (and
            // charged a broken rule to that plugin), so this is storable.
            PreSendOutcome::Continue {
                body,
                metadata,
                modified,
                authors,
            } => Ok((body, metadata, modified, authors)),
            PreSendOutcome::Reject {
                plugin,
                code,
                reason,
            } => {
                // Compliance wants every refusal on record: who, where, which rule — never
                // the message itself (the reason is the plugin's, and DLP keeps values out).
                let detail = serde_json::json!({
                    "code": code,
                    "sender": sender.id,
                    "edit_of": editing,
                });
                audit::record(
                    self.store.as_ref(),
                    Actor::Plugin(&plugin),
                    Action::PluginReject,
                    Subject::Room(room_id),
                    detail,
                )
                .await;
                Err(ApiError::Rejected {
                    plugin,
                    code,
                    reason,
                })
            }
        }
    }

    /// Compliance wants flags and redactions on record, like rejections. A plugin marks them
    /// with a metadata entry whose key ends in `.flagged` or `.redacted` (the DLP plugin's
    /// `dlp.flagged = "email"`); each mark a plugin added or changed becomes a
    /// `plugin.flag` / `plugin.redact` audit record naming **the plugin that wrote it**
    /// (from `authors`, never from the key, so one plugin cannot make records in another's
    /// name), the room, sender and message. The value is the plugin's detector list, never
    /// message content.
    pub(super) async fn audit_marks(
        &self,
        sender: &User,
        event: &Event,
        authors: &BTreeMap<String, String>,
    ) {
        for (key, plugin) in authors {
            let action = if key.ends_with(".flagged") {
                Action::PluginFlag
            } else if key.ends_with(".redacted") {
                Action::PluginRedact
            } else {
                continue;
            };
            let Some(value) = event.metadata.get(key) else {
                continue;
            };
            let detail = serde_json::json!({
                "message": event.target.unwrap_or(event.id),
                "event": event.id,
                "sender": sender.id,
                "key": key,
                "detectors": value,
            });
            audit::record(
                self.store.as_ref(),
                Actor::Plugin(plugin),
                action,
                Subject::Room(event.room_id),
                detail,
            )
            .await;
        }
    }

    /// Hand a stored event to the `message-delivered` observers (queued; never waits).
    pub(super) fn delivered(&self, event: &Event, depth: u32) {
        if self.hooks.implements(HookKind::MessageDelivered) {
            self.hooks.message_delivered(event, depth);
        }
    }
}

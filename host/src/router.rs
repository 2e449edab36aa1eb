//! The message path: every room write passes through here, whether it came over HTTP or
//! the WebSocket.
//!
//! For a message: authorize (member of the room) → rate-limit → idempotency → plugin
//! `message-pre-send` chain → group commit (per-room `seq` assigned in the transaction) →
//! fan-out (done by the writer, in commit order) → ack → `message-delivered` observers.
//! A `/name args` message whose name a plugin registered goes to that plugin instead
//! (`commands`); plugins' bots post through this same path (`bots`). Reactions and pins are
//! smaller writes about a message (`reactions`).
//! No HTTP or wasmtime type appears here.

mod assistant;
mod bots;
mod commands;
pub mod commit;
pub mod hooks;
mod plugin_calls;
mod reactions;
mod retries;
pub mod rules;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use self::commit::Committer;
use self::hooks::{HookKind, Hooks};
use crate::config::Limits;
use crate::error::{ApiError, Result};
use crate::hub::Hub;
use crate::membership::Membership;
use crate::mentions;
use crate::protocol::{Ack, ServerFrame};
use crate::store::{
    Event, EventId, EventKind, Member, Metadata, NewEvent, NewRoom, Page, ReactionCount, Role,
    Room, RoomId, RoomKind, Store, ThreadReply, ThreadSummary, User, UserId,
};

/// Which top-level messages [`RouterCore::annotate`] counts the replies of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Roots {
    /// Live ones (history: a deleted message shows no thread link).
    Live,
    /// Deleted ones too (a thread view: its replies outlive the root).
    EvenDeleted,
}

/// The thread fields of a send (HTTP or WebSocket) as the message path takes them:
/// `also_to_room` only means something for a reply.
pub fn thread_reply(root: Option<EventId>, also_to_room: bool) -> Result<Option<ThreadReply>> {
    match (root, also_to_room) {
        (Some(root), also_to_room) => Ok(Some(ThreadReply { root, also_to_room })),
        (None, false) => Ok(None),
        (None, true) => Err(ApiError::bad_request(
            "invalid_request",
            "`also_to_room` is for a reply: give `thread_root` too",
        )),
    }
}

/// Of up to `limit + 1` events read for a page (oldest first), keep the `limit` the page
/// shows — the oldest after the bound, or the newest before it — and say whether there was
/// one more.
fn trim_page(events: &mut Vec<Event>, page: Page, limit: u32) -> bool {
    let more = events.len() > limit as usize;
    if more {
        match page {
            Page::After(_) => events.truncate(limit as usize),
            Page::Before(_) => {
                events.drain(..events.len() - limit as usize);
            }
        }
    }
    more
}

/// `message` if it is a top-level message (a thread's root), `409 nested_thread` if it is
/// itself a reply — the same answer the store gives when it checks in the transaction.
fn top_level(message: Event) -> Result<Event> {
    match message.thread_root {
        Some(_) => Err(crate::store::StoreError::Conflict("nested_thread").into()),
        None => Ok(message),
    }
}

/// One page of a thread, as `GET /api/v1/rooms/{id}/threads/{root}` answers.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ThreadView {
    /// The top-level message, with its reply count.
    pub root: Event,
    /// Replies, oldest first.
    pub replies: Vec<Event>,
    /// More replies beyond this page in the direction asked.
    pub has_more: bool,
    /// Replies from others after the caller's thread read cursor.
    pub unread: u64,
    /// The caller's thread read cursor (`0` before the first read).
    pub read_seq: i64,
}

/// The message path. A cheap handle on [`RouterCore`] (where the methods are), so that the
/// task sending plugins' bot posts can hold a weak reference to the same router.
pub struct Router {
    core: Arc<RouterCore>,
}

impl Deref for Router {
    type Target = RouterCore;
    fn deref(&self) -> &RouterCore {
        &self.core
    }
}

pub struct RouterCore {
    store: Arc<dyn Store>,
    /// Room members, for authorization.
    membership: Arc<Membership>,
    hub: Arc<Hub>,
    hooks: Arc<dyn Hooks>,
    committer: Committer,
    /// Retry lookups batched across senders, started on first use (it needs a runtime).
    retries: std::sync::OnceLock<retries::RetryLookups>,
    limits: Limits,
    rate: DefaultKeyedRateLimiter<UserId>,
    /// The governed language model, once attached (`llm.answer` jobs need it).
    llm: std::sync::OnceLock<Arc<crate::llm::Llm>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RouterCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterCore").finish_non_exhaustive()
    }
}

impl Router {
    /// The router; when the hook layer has bots, also the task that sends their posts
    /// (which needs a tokio runtime).
    pub fn new(
        store: Arc<dyn Store>,
        membership: Arc<Membership>,
        hub: Arc<Hub>,
        hooks: Arc<dyn Hooks>,
        committer: Committer,
        limits: Limits,
    ) -> Self {
        let core = Arc::new(RouterCore::new(
            store, membership, hub, hooks, committer, limits,
        ));
        if let Some(outbox) = core.hooks.take_bot_outbox() {
            bots::spawn(Arc::downgrade(&core), outbox);
        }
        Self { core }
    }
}

impl RouterCore {
    fn new(
        store: Arc<dyn Store>,
        membership: Arc<Membership>,
        hub: Arc<Hub>,
        hooks: Arc<dyn Hooks>,
        committer: Committer,
        limits: Limits,
    ) -> Self {
        let per_second =
            NonZeroU32::new(limits.messages_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.message_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            store,
            membership,
            hub,
            hooks,
            committer,
            retries: std::sync::OnceLock::new(),
            rate: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            limits,
            llm: std::sync::OnceLock::new(),
        }
    }

    /// Forget rate-limit state of users idle long enough to be back at full burst; called
    /// periodically so the limiter's memory tracks active users, not all users ever seen.
    pub fn housekeeping(&self) {
        self.rate.retain_recent();
        self.rate.shrink_to_fit();
    }

    pub fn hooks(&self) -> &Arc<dyn Hooks> {
        &self.hooks
    }

    // ---------------------------------------------------------------- messages

    /// Post a message: a person's (`depth` 0), or a plugin bot's that `depth` bot posts led
    /// to. A retry with the same `client_msg_id` returns the original ack. A person's
    /// `/name args` message is a command when a plugin registered `name` (see `commands`);
    /// it is then answered by that plugin and not stored.
    pub async fn send_message(
        &self,
        sender: &User,
        room_id: RoomId,
        client_msg_id: String,
        body: String,
        metadata: Metadata,
        depth: u32,
    ) -> Result<Ack> {
        self.send_message_with_files(
            sender,
            room_id,
            client_msg_id,
            body,
            metadata,
            Vec::new(),
            None,
            depth,
        )
        .await
    }

    /// [`send_message`](Self::send_message) with files the sender uploaded to the room
    /// attached: they are claimed in the message's own transaction, and listed in its
    /// metadata under the server's `files` key (ids, comma-separated) for clients and
    /// plugins. With `thread`, the message is a reply in the thread of a top-level message
    /// of the same room; it passes the plugin chain like any message.
    #[allow(clippy::too_many_arguments)]
    pub async fn send_message_with_files(
        &self,
        sender: &User,
        room_id: RoomId,
        client_msg_id: String,
        body: String,
        mut metadata: Metadata,
        files: Vec<i64>,
        thread: Option<ThreadReply>,
        depth: u32,
    ) -> Result<Ack> {
        self.check_client_msg_id(&client_msg_id)?;
        self.check_body(&body)?;
        check_metadata(&metadata)?;
        // People may not write the keys plugins and the server own; a bot post carries the
        // server's own `bot.plugin` key.
        if !sender.is_bot {
            refuse_reserved_metadata(&metadata)?;
        }
        self.ensure_member(sender.id, room_id).await?;
        if let Some(thread) = thread {
            // Before the plugins run, for a clear answer; the store checks again in the
            // transaction (the root may be deleted meanwhile).
            self.thread_root(room_id, thread.root).await?;
        }
        if !files.is_empty() {
            // A retry's files are already attached (to its original): answer with that.
            if let Some(original) = self.original_of(sender.id, &client_msg_id).await? {
                return duplicate_ack(original, room_id);
            }
            self.check_attachable(sender, room_id, &files).await?;
            metadata.insert(
                rules::FILES_METADATA_KEY.to_string(),
                files
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        // Bots' posts are never commands: a bot cannot drive another plugin that way.
        if !sender.is_bot
            && self.hooks.implements(HookKind::Command)
            && let Some(ack) = self
                .try_command(sender, room_id, &client_msg_id, &body)
                .await?
        {
            return Ok(ack);
        }
        // With plugins in the path, a retry is answered from the store before they run, so
        // a DLP flag is recorded once. Without plugins that lookup would only repeat what the
        // commit itself does (it returns the original for a known `client_msg_id`), so the
        // hot path skips it.
        if self.hooks.implements(HookKind::MessagePreSend)
            && let Some(original) = self.original_of(sender.id, &client_msg_id).await?
        {
            return duplicate_ack(original, room_id);
        }
        self.rate_limit(sender.id)?;
        let (body, metadata, modified, authors) = self
            .pre_send(
                sender,
                room_id,
                &client_msg_id,
                None,
                thread.map(|t| t.root),
                body,
                metadata,
                depth,
            )
            .await?;
        // Read from what is stored: a plugin's rewrite is held to the same rules.
        let mentioned = self.mentions(sender.id, room_id, &body).await?;
        let appended = self
            .committer
            .commit(NewEvent::Message {
                room_id,
                sender_id: sender.id,
                client_msg_id: client_msg_id.clone(),
                body,
                metadata,
                files,
                thread,
                mentions: mentioned.mentions(),
            })
            .await?;
        if appended.duplicate {
            // Lost a race with a concurrent retry: the first one won, report it.
            return duplicate_ack(appended.event, room_id);
        }
        if modified {
            self.audit_marks(sender, &appended.event, &authors).await;
        }
        self.delivered(&appended.event, depth);
        Ok(Ack {
            room: room_id,
            id: appended.event.id,
            seq: appended.event.seq,
            client_msg_id: Some(client_msg_id),
            body: modified.then(|| appended.event.body.clone()).flatten(),
            modified,
            duplicate: false,
            command: None,
            mentions_not_in_room: mentioned.not_in_room,
        })
    }

    /// The stored event of an earlier send with this `client_msg_id`, if any: looked up
    /// together with other senders' (see `retries`).
    async fn original_of(&self, sender: UserId, client_msg_id: &str) -> Result<Option<Event>> {
        let retries = self
            .retries
            .get_or_init(|| retries::RetryLookups::start(Arc::clone(&self.store)));
        Ok(retries.original(sender, client_msg_id).await?)
    }

    /// Whom `body` mentions in the room (see [`mentions`]).
    async fn mentions(
        &self,
        sender: UserId,
        room_id: RoomId,
        body: &str,
    ) -> Result<mentions::Resolved> {
        if !body.contains('@') {
            return Ok(mentions::Resolved::default());
        }
        let members = self.membership.members(room_id).await?;
        mentions::resolve(
            self.store.as_ref(),
            room_id,
            sender,
            &members,
            body,
            mentions::MentionLimits {
                names_max: self.limits.mentions_per_message_max,
                room_mention_members_max: self.limits.room_mention_members_max,
            },
        )
        .await
    }

    /// Replace the body of one's own message. Edits pass through the same plugin chain as
    /// new messages, so a filter cannot be bypassed by editing.
    pub async fn edit_message(
        &self,
        sender: &User,
        room_id: RoomId,
        message: EventId,
        body: String,
    ) -> Result<Ack> {
        self.edit_message_with(sender, room_id, message, body, true, |_| {})
            .await
    }

    /// [`edit_message`](Self::edit_message), changing the message's metadata with `adjust`
    /// before the plugin chain sees it (a streamed answer drops its "streaming" mark);
    /// `rate_limited` false only for the server's own final edit of a bot's answer.
    pub(crate) async fn edit_message_with(
        &self,
        sender: &User,
        room_id: RoomId,
        message: EventId,
        body: String,
        rate_limited: bool,
        adjust: impl FnOnce(&mut Metadata),
    ) -> Result<Ack> {
        self.check_body(&body)?;
        self.require_member(sender.id, room_id).await?;
        let original = self.live_message_in_room(room_id, message).await?;
        if original.sender_id != sender.id {
            return Err(ApiError::forbidden(
                "not_author",
                "only the author may edit a message",
            ));
        }
        if rate_limited {
            self.rate_limit(sender.id)?;
        }
        let client_msg_id = original.client_msg_id.clone().unwrap_or_default();
        let mut metadata = original.metadata.clone();
        adjust(&mut metadata);
        let (body, metadata, modified, authors) = self
            .pre_send(
                sender,
                room_id,
                &client_msg_id,
                Some(message),
                original.thread_root,
                body,
                metadata,
                0,
            )
            .await?;
        let mentioned = self.mentions(sender.id, room_id, &body).await?;
        let appended = self
            .committer
            .commit(NewEvent::Edit {
                room_id,
                sender_id: sender.id,
                target: message,
                body,
                metadata,
                mentions: mentioned.mentions(),
            })
            .await?;
        if modified {
            self.audit_marks(sender, &appended.event, &authors).await;
        }
        Ok(Ack {
            body: modified.then(|| appended.event.body.clone()).flatten(),
            modified,
            mentions_not_in_room: mentioned.not_in_room,
            ..Ack::about(room_id, message, appended.event.seq)
        })
    }

    /// Erase a message: its author, or a room owner/admin, may.
    pub async fn delete_message(
        &self,
        actor: &User,
        room_id: RoomId,
        message: EventId,
    ) -> Result<Ack> {
        let member = self.require_member(actor.id, room_id).await?;
        let original = self.live_message_in_room(room_id, message).await?;
        if original.sender_id != actor.id && member.role < Role::Admin {
            return Err(ApiError::forbidden(
                "not_allowed",
                "only the author or a room admin may delete a message",
            ));
        }
        self.rate_limit(actor.id)?;
        let appended = self
            .committer
            .commit(NewEvent::Delete {
                room_id,
                sender_id: actor.id,
                target: message,
            })
            .await?;
        Ok(Ack::about(room_id, message, appended.event.seq))
    }

    /// A page of a room's log, oldest first, and whether more exist beyond it.
    pub async fn history(
        &self,
        caller: &User,
        room_id: RoomId,
        page: Page,
        limit: Option<u32>,
    ) -> Result<(Vec<Event>, bool)> {
        self.require_member(caller.id, room_id).await?;
        let limit = self.page_limit(limit);
        // Ask for one more than the page to learn whether there is more.
        let mut events = self.store.events(room_id, page, limit + 1).await?;
        let more = trim_page(&mut events, page, limit);
        self.annotate(caller, room_id, &mut events, Roots::Live)
            .await?;
        Ok((events, more))
    }

    /// One page of a thread: its root, replies oldest first, whether there are more in the
    /// direction asked, and the caller's place in it. Members only.
    pub async fn thread(
        &self,
        caller: &User,
        room_id: RoomId,
        root: EventId,
        page: Page,
        limit: Option<u32>,
    ) -> Result<ThreadView> {
        self.require_member(caller.id, room_id).await?;
        // A deleted root still has its thread: the replies outlive it.
        let root_event = top_level(self.message_in_room(room_id, root).await?)?;
        let limit = self.page_limit(limit);
        let mut replies = self
            .store
            .thread_replies(room_id, root, page, limit + 1)
            .await?;
        let has_more = trim_page(&mut replies, page, limit);
        // The root with its replies, annotated in one read; a deleted root keeps its count.
        replies.insert(0, root_event);
        self.annotate(caller, room_id, &mut replies, Roots::EvenDeleted)
            .await?;
        let root_event = replies.remove(0);
        let (read_seq, unread) = self.store.thread_unread(caller.id, root).await?;
        Ok(ThreadView {
            root: root_event,
            replies,
            has_more,
            unread,
            read_seq,
        })
    }

    /// Move the caller's read cursor in a thread forward; returns it.
    pub async fn mark_thread_read(
        &self,
        caller: &User,
        room_id: RoomId,
        root: EventId,
        seq: i64,
    ) -> Result<i64> {
        self.require_member(caller.id, room_id).await?;
        self.message_in_room(room_id, root).await?;
        Ok(self
            .store
            .set_thread_read(caller.id, room_id, root, seq)
            .await?)
    }

    /// One page of the messages that mention the caller, newest first, and whether there
    /// are older ones.
    pub async fn mentions_of(
        &self,
        caller: &User,
        before: Option<EventId>,
        limit: Option<u32>,
    ) -> Result<(Vec<Event>, bool)> {
        let limit = self.page_limit(limit);
        let mut found = self.store.mentions_of(caller.id, before, limit + 1).await?;
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok((found, more))
    }

    /// A page size a client asked for: 50 by default, at most `limits.history_page_max`.
    fn page_limit(&self, asked: Option<u32>) -> u32 {
        asked
            .unwrap_or(50)
            .clamp(1, self.limits.history_page_max.max(1))
    }

    /// Under each message of a page, what history shows with it: a top-level message's
    /// reply count (`roots` says whether a deleted one's too), and every live message's
    /// reactions as `viewer` sees them (`me`). One store read for both.
    pub(super) async fn annotate(
        &self,
        viewer: &User,
        room_id: RoomId,
        events: &mut [Event],
        roots: Roots,
    ) -> Result<()> {
        let message = |e: &&Event| e.kind == EventKind::Message;
        let roots: Vec<EventId> = events
            .iter()
            .filter(message)
            .filter(|e| e.thread_root.is_none() && (roots == Roots::EvenDeleted || !e.deleted))
            .map(|e| e.id)
            .collect();
        let messages: Vec<EventId> = events
            .iter()
            .filter(message)
            .filter(|e| !e.deleted)
            .map(|e| e.id)
            .collect();
        let found = self
            .store
            .annotations(viewer.id, room_id, &roots, &messages)
            .await?;
        let threads: HashMap<EventId, ThreadSummary> = found.threads.into_iter().collect();
        let mut reactions: HashMap<EventId, Vec<ReactionCount>> = HashMap::new();
        for (message, count) in found.reactions {
            reactions.entry(message).or_default().push(count);
        }
        for event in events.iter_mut() {
            event.thread = threads.get(&event.id).copied();
            if let Some(counts) = reactions.remove(&event.id) {
                event.reactions = counts;
            }
        }
        Ok(())
    }

    /// A reply's root: a live top-level message of the room.
    async fn thread_root(&self, room_id: RoomId, root: EventId) -> Result<Event> {
        top_level(self.live_message_in_room(room_id, root).await?)
    }

    /// Events after `after` for a resuming session, at most `limit`.
    pub async fn events_after(
        &self,
        room_id: RoomId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Event>> {
        Ok(self
            .store
            .events(room_id, Page::After(after), limit)
            .await?)
    }

    // ---------------------------------------------------------------- rooms

    pub async fn create_group_room(
        &self,
        creator: &User,
        name: String,
        topic: Option<String>,
        members: Vec<UserId>,
    ) -> Result<Room> {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_room_name",
                "a group room needs a name",
            ));
        }
        self.check_text_len("name", &name, self.limits.max_room_name_len)?;
        if let Some(topic) = &topic {
            self.check_text_len("topic", topic, self.limits.max_room_name_len * 5)?;
        }
        let mut initial = vec![(creator.id, Role::Owner)];
        for user in members {
            if initial.iter().any(|(id, _)| *id == user) {
                continue;
            }
            self.require_active_user(user).await?;
            initial.push((user, Role::Member));
        }
        if initial.len() > self.limits.max_room_members {
            return Err(ApiError::bad_request(
                "too_many_members",
                "too many members for one room",
            ));
        }
        let room = self
            .store
            .create_room(
                NewRoom {
                    kind: RoomKind::Group,
                    name: Some(name),
                    topic,
                    created_by: creator.id,
                },
                &initial,
            )
            .await?;
        Ok(room)
    }

    /// The direct room between the caller and `peer`, created if needed.
    pub async fn direct_room(&self, caller: &User, peer: UserId) -> Result<(Room, bool)> {
        if peer == caller.id {
            return Err(ApiError::bad_request(
                "invalid_peer",
                "a direct room needs another user",
            ));
        }
        self.require_active_user(peer).await?;
        let (room, created) = self.store.direct_room(caller.id, peer).await?;
        if created {
            self.membership.invalidate(room.id);
        }
        Ok((room, created))
    }

    pub async fn room_detail(&self, caller: &User, room_id: RoomId) -> Result<(Room, Vec<Member>)> {
        self.require_member(caller.id, room_id).await?;
        let room = self.room(room_id).await?;
        let members = self.store.room_members(room_id).await?;
        Ok((room, members))
    }

    /// Add `user` to a group room; room owners and admins may.
    pub async fn add_member(
        &self,
        actor: &User,
        room_id: RoomId,
        user: UserId,
        role: Role,
    ) -> Result<Event> {
        let member = self.group_member(actor.id, room_id).await?;
        if member.role < Role::Admin {
            return Err(ApiError::forbidden(
                "not_allowed",
                "only room owners and admins may add members",
            ));
        }
        if role > member.role || role == Role::Owner {
            return Err(ApiError::forbidden(
                "not_allowed",
                "you cannot grant a role above your own",
            ));
        }
        self.require_active_user(user).await?;
        if self.membership.members(room_id).await?.len() >= self.limits.max_room_members {
            return Err(ApiError::bad_request(
                "too_many_members",
                "the room is full",
            ));
        }
        let appended = self
            .committer
            .commit(NewEvent::Join {
                room_id,
                actor_id: actor.id,
                user_id: user,
                role,
            })
            .await?;
        Ok(appended.event)
    }

    /// Leave a room (`user == actor`) or remove someone (owners/admins, over lower roles).
    pub async fn remove_member(
        &self,
        actor: &User,
        room_id: RoomId,
        user: UserId,
    ) -> Result<Event> {
        let member = self.group_member(actor.id, room_id).await?;
        if user != actor.id {
            let target =
                self.store.member(room_id, user).await?.ok_or_else(|| {
                    ApiError::not_found("not_a_member", "that user is not a member")
                })?;
            if member.role < Role::Admin || target.role >= member.role {
                return Err(ApiError::forbidden(
                    "not_allowed",
                    "only an owner or admin may remove members of a lower role",
                ));
            }
        }
        let appended = self
            .committer
            .commit(NewEvent::Leave {
                room_id,
                actor_id: actor.id,
                user_id: user,
            })
            .await?;
        Ok(appended.event)
    }

    /// Put `user` in a group room because one of their directory groups maps to it: the
    /// operator's mapping decides, so no member's rights are checked (the event names the
    /// user as its actor; the audit record names the directory). `Ok(false)`: already in.
    pub async fn directory_join(&self, room_id: RoomId, user: UserId) -> Result<bool> {
        let room = self.room(room_id).await?;
        if room.kind == RoomKind::Direct {
            return Err(ApiError::bad_request(
                "direct_room",
                "a direct room cannot be mapped to a group",
            ));
        }
        let members = self.membership.members(room_id).await?;
        if members.contains(&user) {
            return Ok(false);
        }
        if members.len() >= self.limits.max_room_members {
            return Err(ApiError::bad_request(
                "too_many_members",
                "the room is full",
            ));
        }
        self.committer
            .commit(NewEvent::Join {
                room_id,
                actor_id: user,
                user_id: user,
                role: Role::Member,
            })
            .await?;
        Ok(true)
    }

    /// Take `user` out of a room their directory groups no longer map to. `Ok(false)`: not
    /// in it.
    pub async fn directory_leave(&self, room_id: RoomId, user: UserId) -> Result<bool> {
        if !self.membership.members(room_id).await?.contains(&user) {
            return Ok(false);
        }
        self.committer
            .commit(NewEvent::Leave {
                room_id,
                actor_id: user,
                user_id: user,
            })
            .await?;
        Ok(true)
    }

    // ---------------------------------------------------------------- ephemeral

    /// Move the caller's read cursor and tell the room's members.
    pub async fn mark_read(&self, caller: &User, room_id: RoomId, seq: i64) -> Result<i64> {
        self.require_member(caller.id, room_id).await?;
        if seq < 0 {
            return Err(ApiError::bad_request(
                "invalid_seq",
                "seq must not be negative",
            ));
        }
        let room = self.room(room_id).await?;
        let seq = seq.min(room.last_seq);
        let held = self.store.set_read_cursor(caller.id, room_id, seq).await?;
        let frame = ServerFrame::Read {
            room: room_id,
            user: caller.id,
            seq: held,
        }
        .to_json();
        self.hub
            .publish_ephemeral(room_id, frame.into(), None)
            .await?;
        Ok(held)
    }

    /// Relay a typing indicator to the room's other sessions (not stored).
    pub async fn typing(
        &self,
        caller: &User,
        room_id: RoomId,
        active: bool,
        conn: u64,
    ) -> Result<()> {
        self.ensure_member(caller.id, room_id).await?;
        let frame = ServerFrame::Typing {
            room: room_id,
            user: caller.id,
            active,
        }
        .to_json();
        self.hub
            .publish_ephemeral(room_id, frame.into(), Some(conn))
            .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- checks

    /// That the user is a member (no role needed): answered from the hub's member cache,
    /// so the hot path of sending does not query the store.
    pub async fn ensure_member(&self, user: UserId, room_id: RoomId) -> Result<()> {
        if self.membership.members(room_id).await?.contains(&user) {
            Ok(())
        } else {
            Err(ApiError::room_not_found())
        }
    }

    /// The caller's membership of a group room: membership changes are refused in direct
    /// rooms, which always hold exactly their two users.
    async fn group_member(&self, user: UserId, room_id: RoomId) -> Result<Member> {
        let room = self.room(room_id).await?;
        let member = self.require_member(user, room_id).await?;
        if room.kind == RoomKind::Direct {
            return Err(ApiError::forbidden(
                "direct_room",
                "a direct room's members cannot change",
            ));
        }
        Ok(member)
    }

    /// The caller's membership, or `room_not_found` — non-members can't tell a room they may
    /// not see from one that does not exist.
    pub async fn require_member(&self, user: UserId, room_id: RoomId) -> Result<Member> {
        // Fast path through the hub's member cache; the role needs the store.
        if !self.membership.members(room_id).await?.contains(&user) {
            return Err(ApiError::room_not_found());
        }
        self.store
            .member(room_id, user)
            .await?
            .ok_or_else(ApiError::room_not_found)
    }

    /// The `seq` of a room's newest event (0 for none yet).
    pub async fn last_seq(&self, room_id: RoomId) -> Result<i64> {
        Ok(self.room(room_id).await?.last_seq)
    }

    async fn room(&self, room_id: RoomId) -> Result<Room> {
        self.store
            .room(room_id)
            .await?
            .ok_or_else(ApiError::room_not_found)
    }

    /// A message of this room that is not deleted.
    async fn live_message_in_room(&self, room_id: RoomId, message: EventId) -> Result<Event> {
        let event = self.message_in_room(room_id, message).await?;
        if event.deleted {
            return Err(ApiError::conflict(
                "message_deleted",
                "the message has been deleted",
            ));
        }
        Ok(event)
    }

    /// A message of `room_id`, deleted or not.
    async fn message_in_room(&self, room_id: RoomId, message: EventId) -> Result<Event> {
        match self.store.event(message).await? {
            Some(event) if event.room_id == room_id && event.kind == EventKind::Message => {
                Ok(event)
            }
            _ => Err(ApiError::not_found(
                "message_not_found",
                "no such message in this room",
            )),
        }
    }

    async fn require_active_user(&self, user: UserId) -> Result<User> {
        match self.store.user_by_id(user).await? {
            Some(u) if u.active => Ok(u),
            _ => Err(ApiError::not_found(
                "user_not_found",
                format!("no active user with id {user}"),
            )),
        }
    }

    fn rate_limit(&self, user: UserId) -> Result<()> {
        self.rate.check_key(&user).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::TooManyRequests {
                code: "rate_limited",
                message: format!(
                    "more than {} messages per second; slow down",
                    self.limits.messages_per_second
                ),
                retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(1000).max(1),
            }
        })
    }

    fn check_body(&self, body: &str) -> Result<()> {
        rules::check_body(body, self.limits.max_message_bytes).map_err(|broken| {
            if broken.code == "message_too_large" {
                ApiError::too_large(broken.code, broken.message)
            } else {
                ApiError::bad_request(broken.code, broken.message)
            }
        })
    }

    fn check_client_msg_id(&self, id: &str) -> Result<()> {
        let ok = !id.is_empty()
            && id.len() <= self.limits.max_client_msg_id_len
            && id.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(())
        } else {
            Err(ApiError::bad_request(
                "invalid_client_msg_id",
                format!(
                    "client_msg_id must be 1 to {} printable ASCII characters",
                    self.limits.max_client_msg_id_len
                ),
            ))
        }
    }

    fn check_text_len(&self, what: &'static str, text: &str, max: usize) -> Result<()> {
        if text.chars().count() > max || text.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid_room_name",
                format!("the room {what} may have at most {max} characters and no NUL"),
            ));
        }
        Ok(())
    }
}

fn duplicate_ack(original: Event, room_id: RoomId) -> Result<Ack> {
    if original.room_id != room_id {
        return Err(ApiError::conflict(
            "client_msg_id_reused",
            "this client_msg_id was already used for a message in another room",
        ));
    }
    Ok(Ack {
        room: original.room_id,
        id: original.id,
        seq: original.seq,
        client_msg_id: original.client_msg_id,
        body: None,
        modified: false,
        duplicate: true,
        command: None,
        mentions_not_in_room: Vec::new(),
    })
}

impl RouterCore {
    /// Files a message may carry: at most [`rules::MAX_FILES_PER_MESSAGE`], no repeats, each a
    /// finished upload of the sender's in this room that no message carries yet. (The store
    /// claims them again inside the message's transaction, which settles any race.)
    async fn check_attachable(&self, sender: &User, room_id: RoomId, files: &[i64]) -> Result<()> {
        if files.len() > rules::MAX_FILES_PER_MESSAGE {
            return Err(ApiError::bad_request(
                "too_many_files",
                format!(
                    "a message may carry at most {} files",
                    rules::MAX_FILES_PER_MESSAGE
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for &id in files {
            if !seen.insert(id) {
                return Err(ApiError::bad_request(
                    "invalid_files",
                    format!("file {id} is listed twice"),
                ));
            }
            let file = self
                .store
                .file(id)
                .await?
                .filter(|f| {
                    f.room_id == room_id
                        && f.uploader_id == sender.id
                        && (f.state == "ready" || f.state == "quarantined")
                })
                .ok_or_else(|| {
                    ApiError::not_found(
                        "file_not_found",
                        format!("no file {id} of yours in this room; upload it here first"),
                    )
                })?;
            if file.state == "quarantined" {
                return Err(ApiError::conflict(
                    "file_quarantined",
                    format!(
                        "file {id} is held for review; it can be attached once an administrator \
                         releases it"
                    ),
                ));
            }
            if file.message_id.is_some() {
                return Err(ApiError::conflict(
                    "file_unavailable",
                    format!("file {id} is already attached to a message"),
                ));
            }
        }
        Ok(())
    }
}

fn check_metadata(metadata: &Metadata) -> Result<()> {
    rules::check_metadata(metadata)
        .map_err(|broken| ApiError::bad_request(broken.code, broken.message))
}

/// None of the keys reserved for plugins and the server in what a person sends (clients
/// trust those to say that a plugin changed the message).
fn refuse_reserved_metadata(metadata: &Metadata) -> Result<()> {
    if let Some(key) = metadata.keys().find(|k| rules::is_reserved_metadata_key(k)) {
        return Err(ApiError::bad_request(
            "reserved_metadata",
            format!(
                "metadata key `{key}` is reserved for plugins and the server (keys with a \
                 `.`, `modified`, `redacted` and `dlp…`)"
            ),
        ));
    }
    Ok(())
}

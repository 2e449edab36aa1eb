//! A subset of the Matrix client–server API (v3) over Switchboard's own rooms, so that bots
//! written for Matrix (matrix-nio and the like) run unmodified: log in, sync by long poll,
//! join, read history, send (idempotent by transaction id), edit and redact.
//!
//! Nothing here is a second message path: every write goes through the router like any
//! client's (membership, rate limits, the plugin chain, so DLP applies), and every read
//! through the room log. This module only translates:
//! - **identifiers**: user `@<name>:<server_name>`, room `!<id>:<server_name>`, event
//!   `$<id>` (the store's event id);
//! - **positions**: a sync token (`next_batch`) is the caller's place in each of their
//!   rooms, `s<room>.<seq>_<room>.<seq>…` — the per-room `seq` a WebSocket resumes from,
//!   so nothing committed between two syncs is missed, and a bogus token is refused, not
//!   guessed at; a history token is `t<seq>` (a place between `seq` and `seq + 1`);
//! - **events**: a message is `m.room.message` (`m.text`; a thread reply carries
//!   `m.relates_to` `m.thread`), an edit is an `m.room.message` with `m.new_content` and
//!   `m.relates_to` `m.replace`, a deletion is `m.room.redaction` (and the message it erased
//!   is served redacted), a reaction is `m.reaction`, joins and leaves are `m.room.member`.
//!   Pins and taking back a reaction have no Matrix event here and are left out.
//!
//! No federation, no end-to-end encryption: server-side DLP, legal hold and the compliance
//! export need the plaintext (docs/integrations.md says so).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::MatrixConfig;
use crate::error::{ApiError, Result};
use crate::hub::{Hub, ListenerKind, SessionHandle};
use crate::ids::sha256_hex;
use crate::router::Router;
use crate::store::{Event, EventId, EventKind, Page, RoomId, Store, User, UserId};

/// Longest sync token accepted (a token names each of the caller's rooms once).
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Transaction ids remembered for edits, reactions and redactions (messages are idempotent
/// in the store itself).
const TXN_MEMORY: usize = 10_000;
/// Longest transaction id.
pub const MAX_TXN_ID_BYTES: usize = 255;

/// A place in the caller's rooms: per room, the last `seq` they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncToken(pub BTreeMap<RoomId, i64>);

impl SyncToken {
    pub fn encode(&self) -> String {
        let rooms: Vec<String> = self
            .0
            .iter()
            .map(|(room, seq)| format!("{room}.{seq}"))
            .collect();
        format!("s{}", rooms.join("_"))
    }

    /// `None` for anything this server did not make.
    pub fn parse(token: &str) -> Option<Self> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let body = token.strip_prefix('s')?;
        let mut rooms = BTreeMap::new();
        if body.is_empty() {
            return Some(Self(rooms));
        }
        for entry in body.split('_') {
            let (room, seq) = entry.split_once('.')?;
            let room: RoomId = room.parse().ok().filter(|r| *r > 0)?;
            let seq: i64 = seq.parse().ok().filter(|s| *s >= 0)?;
            if rooms.insert(room, seq).is_some() {
                return None;
            }
        }
        Some(Self(rooms))
    }
}

/// Which way `/messages` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Back,
    Forward,
}

/// A page of `/messages`.
#[derive(Debug, Clone)]
pub struct MessagesPage {
    pub chunk: Vec<Value>,
    pub start: String,
    /// Absent when there is nothing further.
    pub end: Option<String>,
}

/// A history position: `t<seq>`, or the room's place in a sync token.
fn parse_position(token: &str, room: RoomId) -> Option<i64> {
    if let Some(seq) = token.strip_prefix('t') {
        return seq.parse().ok().filter(|s| *s >= 0);
    }
    let sync = SyncToken::parse(token)?;
    Some(sync.0.get(&room).copied().unwrap_or(0))
}

fn position(seq: i64) -> String {
    format!("t{}", seq.max(0))
}

/// `M_INVALID_PARAM`-shaped refusal of a token.
fn bad_token(what: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_token_param",
        format!("`{what}` is not a token this server gave out"),
    )
}

/// The translation between Switchboard and Matrix identifiers and events, and the Matrix
/// operations on top of the router.
pub struct Matrix {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    /// A long poll listens here for its user's events.
    hub: Arc<Hub>,
    config: MatrixConfig,
    /// `(session, room, txn)` digests of edits, reactions and redactions already done, with
    /// the event id they made: a retried request answers the same id and does nothing.
    txns: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix").finish_non_exhaustive()
    }
}

impl Matrix {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        hub: Arc<Hub>,
        config: MatrixConfig,
    ) -> Self {
        Self {
            store,
            router,
            hub,
            config,
            txns: Mutex::default(),
        }
    }

    pub fn config(&self) -> &MatrixConfig {
        &self.config
    }

    // ---------------------------------------------------------------- identifiers

    pub fn user_id(&self, name: &str) -> String {
        format!("@{name}:{}", self.config.server_name)
    }

    pub fn room_id(&self, room: RoomId) -> String {
        format!("!{room}:{}", self.config.server_name)
    }

    pub fn event_id(event: EventId) -> String {
        format!("${event}")
    }

    /// A user name from a login identifier: a bare name or `@name:<our server>`.
    pub fn local_name(&self, user: &str) -> Result<String> {
        let Some(full) = user.strip_prefix('@') else {
            return Ok(user.to_string());
        };
        match full.split_once(':') {
            Some((name, server)) if server == self.config.server_name => Ok(name.to_string()),
            _ => Err(ApiError::forbidden(
                "unknown_server",
                format!("this server is `{}`", self.config.server_name),
            )),
        }
    }

    /// Our room id from `!<id>:<server>`; aliases (`#…`) are not kept here.
    pub fn parse_room(&self, id: &str) -> Result<RoomId> {
        if id.starts_with('#') {
            return Err(ApiError::not_found(
                "room_not_found",
                "room aliases are not supported: use the room id (`!<id>:<server>`)",
            ));
        }
        id.strip_prefix('!')
            .and_then(|rest| rest.split_once(':'))
            .filter(|(_, server)| *server == self.config.server_name)
            .and_then(|(room, _)| room.parse().ok())
            .ok_or_else(ApiError::room_not_found)
    }

    pub fn parse_event(id: &str) -> Result<EventId> {
        id.strip_prefix('$')
            .and_then(|rest| rest.parse().ok())
            .ok_or_else(|| ApiError::not_found("message_not_found", "no such event"))
    }

    // ---------------------------------------------------------------- joining

    /// Join: the room's owner adds members (Switchboard has no open rooms), so joining a
    /// room one was added to succeeds, and any other is refused.
    pub async fn join(&self, user: &User, room: &str) -> Result<String> {
        let room_id = self.parse_room(room)?;
        match self.router.require_member(user.id, room_id).await {
            Ok(_) => Ok(self.room_id(room_id)),
            Err(ApiError::NotFound { .. }) => Err(ApiError::forbidden(
                "not_invited",
                "you are not a member of this room: ask its owner to add you",
            )),
            Err(other) => Err(other),
        }
    }

    // ---------------------------------------------------------------- sync

    /// `GET /sync`: what is new since `since`; with a `timeout`, wait up to that long
    /// (capped by `[matrix] sync_timeout_max_ms`) for something to arrive. Without a token
    /// (a first sync) or a timeout it answers at once, as the spec and matrix-nio expect.
    pub async fn sync(
        &self,
        user: &User,
        session_id: &str,
        since: Option<&str>,
        timeout_ms: u64,
    ) -> Result<Value> {
        let since = since
            .map(|t| SyncToken::parse(t).ok_or_else(|| bad_token("since")))
            .transpose()?;
        let timeout = Duration::from_millis(timeout_ms.min(self.config.sync_timeout_max_ms));
        if since.is_none() || timeout.is_zero() {
            return Ok(self.sync_once(user, since.as_ref()).await?.0);
        }
        // Listen before looking, so an event committed in between still wakes the wait.
        // The listener is a session of the hub like a WebSocket's: it gets the user's
        // rooms' events from this node and, through the bus, from the others, and ending
        // the session (a logout elsewhere, deactivation) ends the wait.
        let (handle, mut wake) =
            self.hub
                .register(ListenerKind::LongPoll, user.id, session_id.to_string(), 64);
        let _listening = Listening {
            hub: &self.hub,
            handle,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (body, any) = self.sync_once(user, since.as_ref()).await?;
            if any {
                return Ok(body);
            }
            match tokio::time::timeout_at(deadline, wake.recv()).await {
                Ok(Some(_)) => while wake.try_recv().is_ok() {},
                Ok(None) | Err(_) => return Ok(body),
            }
        }
    }

    /// What is new for `user` since `since` (everything recent without one), as a sync
    /// response, and whether it carried any events (a long poll waits when it did not).
    pub async fn sync_once(&self, user: &User, since: Option<&SyncToken>) -> Result<(Value, bool)> {
        let rooms = self.store.rooms_for_user(user.id).await?;
        let mut next = SyncToken::default();
        let mut joined = serde_json::Map::new();
        let mut names = NameCache::default();
        let mut any = false;
        for summary in rooms {
            let room = summary.room.id;
            let last = summary.room.last_seq;
            let known = since.and_then(|t| t.0.get(&room).copied());
            let (events, limited) = match known {
                // A room the token knows: what came after (the rest next time).
                Some(seq) => {
                    if seq > last {
                        return Err(bad_token("since"));
                    }
                    let events = self
                        .store
                        .events(room, Page::After(seq), self.config.sync_events_max)
                        .await?;
                    (events, false)
                }
                // New to this client (first sync, or joined since): the recent timeline.
                None => {
                    let limit = self.config.timeline_limit;
                    let mut events = self
                        .store
                        .events(room, Page::Before(i64::MAX), limit + 1)
                        .await?;
                    let limited = events.len() > limit as usize;
                    if limited {
                        events.drain(..events.len() - limit as usize);
                    }
                    (events, limited)
                }
            };
            let reached = events.last().map_or(known.unwrap_or(last), |e| e.seq);
            next.0.insert(room, reached);
            if events.is_empty() && known.is_some() {
                continue;
            }
            any |= !events.is_empty();
            let prev = events.first().map_or(reached, |e| e.seq - 1);
            let timeline = self.events_json(&events, &mut names).await?;
            joined.insert(
                self.room_id(room),
                json!({
                    "timeline": { "events": timeline, "limited": limited,
                                  "prev_batch": position(prev) },
                    "state": { "events": [] },
                    "ephemeral": { "events": [] },
                    "account_data": { "events": [] },
                }),
            );
        }
        let mut body = json!({ "next_batch": next.encode() });
        if !joined.is_empty() {
            body["rooms"] = json!({ "join": joined });
        }
        Ok((body, any))
    }

    // ---------------------------------------------------------------- history

    /// A page of a room's events for `/messages`.
    pub async fn messages(
        &self,
        user: &User,
        room: &str,
        from: Option<&str>,
        dir: Direction,
        limit: Option<u32>,
    ) -> Result<MessagesPage> {
        let room_id = self.parse_room(room)?;
        let limit = limit
            .unwrap_or(10)
            .clamp(1, self.config.messages_limit_max.max(1));
        let from = match from {
            Some(token) => Some(parse_position(token, room_id).ok_or_else(|| bad_token("from"))?),
            None => None,
        };
        let (page, start) = match (dir, from) {
            (Direction::Back, Some(seq)) => (Page::Before(seq.saturating_add(1)), seq),
            (Direction::Back, None) => {
                (Page::Before(i64::MAX), self.router.last_seq(room_id).await?)
            }
            (Direction::Forward, Some(seq)) => (Page::After(seq), seq),
            (Direction::Forward, None) => (Page::After(0), 0),
        };
        let (mut events, more) = self
            .router
            .history(user, room_id, page, Some(limit))
            .await?;
        let end = match dir {
            Direction::Back => {
                events.reverse();
                events.last().map(|e| e.seq - 1)
            }
            Direction::Forward => events.last().map(|e| e.seq),
        };
        let mut names = NameCache::default();
        Ok(MessagesPage {
            chunk: self.events_json(&events, &mut names).await?,
            start: position(start),
            end: end.filter(|_| more).map(position),
        })
    }

    // ---------------------------------------------------------------- writes

    /// `PUT /rooms/{room}/send/{type}/{txn}`: a message, an edit (`m.replace`), a thread
    /// reply (`m.thread`) or a reaction (`m.reaction`). Returns the event id.
    pub async fn send(
        &self,
        user: &User,
        session: &str,
        room: &str,
        event_type: &str,
        txn: &str,
        content: &Value,
    ) -> Result<String> {
        let room_id = self.parse_room(room)?;
        check_txn(txn)?;
        let key = sha256_hex(&format!("{session}\n{room_id}\n{txn}"));
        let relation = content.get("m.relates_to");
        let rel_type = relation
            .and_then(|r| r.get("rel_type"))
            .and_then(Value::as_str);
        let target = || -> Result<EventId> {
            let id = relation
                .and_then(|r| r.get("event_id"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad_json("`m.relates_to` needs an `event_id`"))?;
            Self::parse_event(id)
        };
        match event_type {
            "m.room.message" => {
                let text = |content: &Value| -> Result<String> {
                    let msgtype = content.get("msgtype").and_then(Value::as_str);
                    if !matches!(msgtype, Some("m.text" | "m.notice" | "m.emote")) {
                        return Err(ApiError::bad_request(
                            "unsupported_msgtype",
                            "only text messages (`m.text`, `m.notice`, `m.emote`) are kept here",
                        ));
                    }
                    content
                        .get("body")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| bad_json("a message needs a string `body`"))
                };
                if rel_type == Some("m.replace") {
                    let new = content
                        .get("m.new_content")
                        .ok_or_else(|| bad_json("an edit needs `m.new_content`"))?;
                    let body = text(new)?;
                    let target = target()?;
                    return self
                        .once(&key, async {
                            let ack = self
                                .router
                                .edit_message(user, room_id, target, body)
                                .await?;
                            self.event_at(room_id, ack.seq).await
                        })
                        .await;
                }
                let body = text(content)?;
                let thread = match rel_type {
                    Some("m.thread") => crate::router::thread_reply(Some(target()?), false)?,
                    _ => None,
                };
                // The store makes messages idempotent per sender and client id: a retry
                // (even after a restart, on any node) answers the original.
                let client_msg_id = format!("mx-{}", &key[..40]);
                let ack = self
                    .router
                    .send_message_with_files(
                        user,
                        room_id,
                        client_msg_id,
                        body,
                        Default::default(),
                        Vec::new(),
                        thread,
                        0,
                    )
                    .await?;
                if ack.command.is_some() {
                    // A `/name` command a plugin answered: nothing was stored.
                    return Ok(format!("$command-{}", &key[..16]));
                }
                Ok(Self::event_id(ack.id))
            }
            "m.reaction" => {
                if rel_type != Some("m.annotation") {
                    return Err(bad_json("a reaction is an `m.annotation` relation"));
                }
                let emoji = relation
                    .and_then(|r| r.get("key"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad_json("a reaction needs its emoji as `key`"))?
                    .to_string();
                let target = target()?;
                self.once(&key, async {
                    let ack = self.router.react(user, room_id, target, emoji).await?;
                    self.event_at(room_id, ack.seq).await
                })
                .await
            }
            _ => Err(ApiError::bad_request(
                "unsupported_event_type",
                "this server keeps `m.room.message` and `m.reaction` events only",
            )),
        }
    }

    /// `PUT /rooms/{room}/redact/{event}/{txn}`: delete a message.
    pub async fn redact(
        &self,
        user: &User,
        session: &str,
        room: &str,
        event: &str,
        txn: &str,
    ) -> Result<String> {
        let room_id = self.parse_room(room)?;
        let target = Self::parse_event(event)?;
        check_txn(txn)?;
        let key = sha256_hex(&format!("{session}\n{room_id}\nredact\n{txn}"));
        self.once(&key, async {
            let ack = self.router.delete_message(user, room_id, target).await?;
            self.event_at(room_id, ack.seq).await
        })
        .await
    }

    /// Run `write` once per transaction key; a repeat answers the first event id.
    async fn once(
        &self,
        key: &str,
        write: impl std::future::Future<Output = Result<String>>,
    ) -> Result<String> {
        if let Some(id) = self.remembered(key) {
            return Ok(id);
        }
        let id = write.await?;
        let mut guard = self
            .txns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (ids, order) = &mut *guard;
        if ids.insert(key.to_string(), id.clone()).is_none() {
            order.push_back(key.to_string());
            while order.len() > TXN_MEMORY {
                if let Some(old) = order.pop_front() {
                    ids.remove(&old);
                }
            }
        }
        Ok(id)
    }

    fn remembered(&self, key: &str) -> Option<String> {
        let guard = self
            .txns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.0.get(key).cloned()
    }

    /// The id of the event at `seq` of a room (an edit's or a deletion's own event).
    async fn event_at(&self, room: RoomId, seq: i64) -> Result<String> {
        let events = self.store.events(room, Page::After(seq - 1), 1).await?;
        events
            .first()
            .filter(|e| e.seq == seq)
            .map(|e| Self::event_id(e.id))
            .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("event {seq} of room {room} not found"))
            })
    }

    // ---------------------------------------------------------------- events

    /// Events as Matrix client events, in the order given; kinds with no Matrix event are
    /// left out.
    async fn events_json(&self, events: &[Event], names: &mut NameCache) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            if let Some(json) = self.event_json(event, events, names).await? {
                out.push(json);
            }
        }
        Ok(out)
    }

    async fn event_json(
        &self,
        event: &Event,
        page: &[Event],
        names: &mut NameCache,
    ) -> Result<Option<Value>> {
        let sender = self.user_id(&names.name(self.store.as_ref(), event.sender_id).await?);
        let mut json = json!({
            "event_id": Self::event_id(event.id),
            "sender": sender,
            "origin_server_ts": event.created_at,
            "room_id": self.room_id(event.room_id),
            "unsigned": {},
        });
        let target = event.target.map(Self::event_id);
        match event.kind {
            EventKind::Message | EventKind::Edit => {
                json["type"] = json!("m.room.message");
                let Some(body) = &event.body else {
                    // Deleted: served redacted, as Matrix clients expect.
                    json["content"] = json!({});
                    let redaction = page.iter().find(|e| {
                        e.kind == EventKind::Delete
                            && (e.target == Some(event.id) || e.target == event.target)
                    });
                    let (by, at) = match redaction {
                        Some(r) => (r.sender_id, r.created_at),
                        None => (event.sender_id, event.edited_at.unwrap_or(event.created_at)),
                    };
                    let by = self.user_id(&names.name(self.store.as_ref(), by).await?);
                    let redacts = if event.kind == EventKind::Edit {
                        target.clone()
                    } else {
                        None
                    }
                    .unwrap_or_else(|| Self::event_id(event.id));
                    json["unsigned"] = json!({ "redacted_because": {
                        "type": "m.room.redaction", "sender": by, "origin_server_ts": at,
                        "event_id": redaction.map_or_else(|| format!("{}-redaction", Self::event_id(event.id)), |r| Self::event_id(r.id)),
                        "redacts": redacts, "content": {},
                    }});
                    return Ok(Some(json));
                };
                let mut content = json!({ "msgtype": "m.text", "body": body });
                if event.kind == EventKind::Edit {
                    content = json!({
                        "msgtype": "m.text",
                        "body": format!("* {body}"),
                        "m.new_content": { "msgtype": "m.text", "body": body },
                        "m.relates_to": { "rel_type": "m.replace", "event_id": target },
                    });
                } else if let Some(root) = event.thread_root {
                    content["m.relates_to"] = json!({
                        "rel_type": "m.thread", "event_id": Self::event_id(root),
                        "is_falling_back": true,
                    });
                }
                json["content"] = content;
            }
            EventKind::Delete => {
                json["type"] = json!("m.room.redaction");
                json["redacts"] = json!(target);
                json["content"] = json!({ "redacts": target });
            }
            EventKind::Reaction => {
                json["type"] = json!("m.reaction");
                json["content"] = json!({ "m.relates_to": {
                    "rel_type": "m.annotation", "event_id": target,
                    "key": event.body.clone().unwrap_or_default(),
                }});
            }
            EventKind::MemberJoined | EventKind::MemberLeft => {
                let member = event.target.unwrap_or(event.sender_id);
                let member = self.user_id(&names.name(self.store.as_ref(), member).await?);
                json["type"] = json!("m.room.member");
                json["state_key"] = json!(member);
                let membership = if event.kind == EventKind::MemberJoined {
                    "join"
                } else {
                    "leave"
                };
                json["content"] = json!({ "membership": membership });
            }
            EventKind::ReactionRemoved | EventKind::Pinned | EventKind::Unpinned => {
                return Ok(None);
            }
        }
        Ok(Some(json))
    }
}

/// Drops a long poll's hub session however the poll ends.
struct Listening<'a> {
    hub: &'a Hub,
    handle: Arc<SessionHandle>,
}

impl Drop for Listening<'_> {
    fn drop(&mut self) {
        self.hub.unregister(&self.handle);
    }
}

fn bad_json(message: &str) -> ApiError {
    ApiError::bad_request("invalid_body", message.to_string())
}

fn check_txn(txn: &str) -> Result<()> {
    if txn.is_empty() || txn.len() > MAX_TXN_ID_BYTES {
        return Err(ApiError::bad_request(
            "invalid_txn_id",
            format!("a transaction id is 1 to {MAX_TXN_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// User names by id, looked up once per request.
#[derive(Default)]
struct NameCache(HashMap<UserId, String>);

impl NameCache {
    async fn name(&mut self, store: &dyn Store, id: UserId) -> Result<String> {
        if let Some(name) = self.0.get(&id) {
            return Ok(name.clone());
        }
        let name = store
            .user_by_id(id)
            .await?
            .map_or_else(|| format!("unknown-{id}"), |u| u.name);
        self.0.insert(id, name.clone());
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_tokens_round_trip_and_refuse_what_we_did_not_make() {
        let token = SyncToken(BTreeMap::from([(3, 17), (12, 0)]));
        assert_eq!(token.encode(), "s3.17_12.0");
        assert_eq!(SyncToken::parse("s3.17_12.0"), Some(token));
        assert_eq!(SyncToken::parse("s"), Some(SyncToken::default()));
        for bogus in [
            "",
            "x",
            "s3",
            "s3.",
            "s.4",
            "s3.-1",
            "s0.1",
            "s3.1_3.2",
            "s3.1__4.2",
            "t5",
            "s3.1 ",
            "s99999999999999999999.1",
        ] {
            assert_eq!(SyncToken::parse(bogus), None, "{bogus:?}");
        }
        assert_eq!(parse_position("t5", 3), Some(5));
        assert_eq!(parse_position("s3.17_12.0", 3), Some(17));
        assert_eq!(parse_position("s3.17", 4), Some(0));
        assert_eq!(parse_position("t-1", 3), None);
    }
}

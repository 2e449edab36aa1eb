//! Message search: what a user may find, and what a result shows.
//!
//! A query ([`query`]) becomes a [`SearchQuery`] for the store, with names resolved (`from:`
//! users, `in:` rooms) and dates turned into a time range. Who may read what is decided in
//! the store's query itself ([`SearchQuery::reader`]), never by filtering results: a member
//! searches the rooms they are in now; the compliance role searches every room, and each such
//! search is an audit record with its query.
//!
//! Only the stored text is searchable: what a DLP plugin redacted was never stored, an edit
//! replaces the searchable text in the transaction that stores it, and a deleted message
//! leaves the index with its text.

pub mod query;
mod snippet;

use serde::Serialize;

use crate::audit::{self, Action, Actor, Subject};
use crate::config::Limits;
use crate::error::{ApiError, Result};
use crate::store::{
    Event, EventId, Millis, RoomId, RoomKind, SearchQuery, Store, StoreResult, User, UserId,
    search_text,
};

pub use snippet::{Snippet, SnippetPart};

/// Who searches.
#[derive(Debug, Clone, Copy)]
pub enum Searcher<'a> {
    /// A user, over the rooms they are a member of.
    Member(&'a User),
    /// A compliance user, over every room (audited).
    Compliance(&'a User),
}

/// A search as asked over the API: the typed query plus the filters a client may also set
/// as parameters (both apply).
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub q: String,
    pub room: Option<RoomId>,
    pub sender: Option<UserId>,
    /// Created at or after (milliseconds since the epoch).
    pub after: Option<Millis>,
    /// Created before.
    pub before: Option<Millis>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<EventId>,
    pub limit: Option<u32>,
}

/// The room a result is in.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResultRoom {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: Option<String>,
}

/// One found message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub room: ResultRoom,
    pub message: Event,
    /// The part of the text around the first match, with the matches marked.
    pub snippet: Snippet,
    /// Where the web client opens the room at this message.
    pub link: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    pub results: Vec<SearchHit>,
    /// No word had three characters or more (only short words, or only filters other than
    /// `has:file`), so only recent messages were searched
    /// (`limits.search_short_scan_events`); a longer word searches everything.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recent_only: bool,
    /// Give as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<EventId>,
}

impl SearchPage {
    /// No results, because the filters contradict each other.
    fn empty() -> Self {
        Self {
            results: Vec::new(),
            recent_only: false,
            next_cursor: None,
        }
    }
}

const DAY_MS: i64 = 86_400_000;

/// Run a search for `searcher`.
pub async fn search(
    store: &dyn Store,
    limits: &Limits,
    searcher: Searcher<'_>,
    request: SearchRequest,
) -> Result<SearchPage> {
    let parsed = query::parse(
        &request.q,
        query::QueryLimits {
            max_chars: limits.search_query_max_chars,
            max_terms: limits.search_terms_max,
        },
    )
    .map_err(|err| ApiError::bad_request("invalid_query", err.to_string()))?;
    let (user, reader) = match searcher {
        Searcher::Member(user) => (user, Some(user.id)),
        Searcher::Compliance(user) => (user, None),
    };

    let mut senders = Vec::new();
    for name in &parsed.from {
        // User names are lower-case; people type them as they like.
        match store.user_by_name(&name.to_ascii_lowercase()).await? {
            Some((found, _)) => senders.push(found.id),
            None => {
                return Err(ApiError::bad_request(
                    "unknown_user",
                    format!("from:{name} — there is no user named `{name}`"),
                ));
            }
        }
    }
    if let Some(sender) = request.sender {
        if !senders.is_empty() && !senders.contains(&sender) {
            // `from:` and `sender=` name different people: nothing can match both.
            return Ok(SearchPage::empty());
        }
        senders = vec![sender];
    }
    let mut rooms = Vec::new();
    if !parsed.rooms.is_empty() {
        // Names are looked up among the rooms the searcher can search, so `in:` never
        // reveals that a room of that name exists elsewhere.
        let candidates: Vec<(RoomId, Option<String>)> = match reader {
            Some(reader) => store
                .rooms_for_user(reader)
                .await?
                .into_iter()
                .map(|r| (r.room.id, r.room.name))
                .collect(),
            None => store
                .list_rooms()
                .await?
                .into_iter()
                .map(|r| (r.id, r.name))
                .collect(),
        };
        for name in &parsed.rooms {
            let matching: Vec<RoomId> = candidates
                .iter()
                .filter(|(_, n)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                .map(|(id, _)| *id)
                .collect();
            if matching.is_empty() {
                return Err(ApiError::bad_request(
                    "unknown_room",
                    format!("in:{name} — you are in no room named `{name}`"),
                ));
            }
            rooms.extend(matching);
        }
    }
    if let Some(room) = request.room {
        if let Some(reader) = reader
            && store.member(room, reader).await?.is_none()
        {
            return Err(ApiError::room_not_found());
        }
        if !rooms.is_empty() && !rooms.contains(&room) {
            // `in:` and `room=` name different rooms: nothing can match both.
            return Ok(SearchPage::empty());
        }
        rooms = vec![room];
    }

    // The tightest of the typed dates and the parameters.
    let mut since = request.after;
    let mut until = request.before;
    let mut narrow = |from: Option<Millis>, to: Option<Millis>| {
        if let Some(from) = from {
            since = Some(since.map_or(from, |s| s.max(from)));
        }
        if let Some(to) = to {
            until = Some(until.map_or(to, |u| u.min(to)));
        }
    };
    narrow(parsed.after.map(|day| (day + 1) * DAY_MS), None);
    narrow(None, parsed.before.map(|day| day * DAY_MS));
    narrow(
        parsed.on.map(|day| day * DAY_MS),
        parsed.on.map(|day| (day + 1) * DAY_MS),
    );

    let limit = request
        .limit
        .unwrap_or(20)
        .clamp(1, limits.search_page_max.max(1));
    // Nothing an index serves — no word of three characters or more, and no `has:file`
    // (the files table is small and indexed by message) — would be a scan of every message:
    // look at the newest events only, and say so in the answer.
    let unindexed = !parsed.has_file && !parsed.required.iter().any(|t| search_text::is_indexed(t));
    let store_query = SearchQuery {
        reader,
        required: parsed.required.clone(),
        excluded: parsed.excluded.clone(),
        senders,
        rooms,
        since,
        until,
        has_file: parsed.has_file,
        before_id: request.cursor,
        recent_events: unindexed.then_some(limits.search_short_scan_events),
        sender_scan_max: limits.search_sender_scan_max,
        limit: limit + 1,
    };
    let mut found = store.search_messages(&store_query).await?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);

    if let Searcher::Compliance(_) = searcher {
        audit::record(
            store,
            Actor::User(user.id),
            Action::ComplianceSearch,
            Subject::Messages,
            serde_json::json!({
                "q": request.q,
                "room": request.room,
                "sender": request.sender,
                "after": request.after,
                "before": request.before,
                "cursor": request.cursor,
                "returned": found.len(),
            }),
        )
        .await;
    }

    let mut room_cache: std::collections::HashMap<RoomId, ResultRoom> =
        std::collections::HashMap::new();
    let mut results = Vec::with_capacity(found.len());
    for message in found {
        let room = match room_cache.get(&message.room_id) {
            Some(room) => room.clone(),
            None => {
                let Some(room) = store.room(message.room_id).await? else {
                    continue; // deleted between the search and now
                };
                let room = ResultRoom {
                    id: room.id,
                    kind: room.kind,
                    name: room.name,
                };
                room_cache.insert(room.id, room.clone());
                room
            }
        };
        let snippet = snippet::build(message.body.as_deref().unwrap_or(""), &parsed.required);
        results.push(SearchHit {
            link: format!("/#room-{}-seq-{}", message.room_id, message.seq),
            room,
            message,
            snippet,
        });
    }
    let next_cursor = if more {
        results.last().map(|hit| hit.message.id)
    } else {
        None
    };
    Ok(SearchPage {
        results,
        recent_only: unindexed,
        next_cursor,
    })
}

/// Messages per reindex step (one write transaction each).
const REINDEX_BATCH: u32 = 500;

/// Pages of SQLite's search index merged after each reindex step. A step of 500 messages
/// writes a segment of a few dozen pages; with FTS5's merging inside commits off
/// (`store::sqlite_index_merge`), this keeps the index merged about as fast as the reindex
/// writes it, as the group commit's steps do for new messages.
const REINDEX_MERGE_PAGES: u32 = 256;

/// What a reindex did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reindexed {
    pub visited: u64,
    pub written: u64,
}

/// Bring the searchable text up to date, in steps of [`REINDEX_BATCH`] messages, calling
/// `progress(visited so far, total)` after each. With `missing_only`, only messages stored
/// before search existed (what the server does at start); otherwise every message (after
/// an upgrade that changes how text is folded; `switchboard search reindex`). Messages
/// sent meanwhile are indexed as they are stored, so this may run while the server serves.
pub async fn reindex(
    store: &dyn Store,
    missing_only: bool,
    mut progress: impl FnMut(u64, u64),
) -> StoreResult<Reindexed> {
    let total = store.messages_to_index(missing_only).await?;
    let mut done = Reindexed::default();
    let mut after = 0;
    loop {
        let step = store
            .reindex_messages(after, REINDEX_BATCH, missing_only)
            .await?;
        done.visited += step.visited;
        done.written += step.written;
        // Only the index's tidiness is at stake if a step fails: FTS5 still merges a level
        // inside a commit once it holds 16 segments.
        if step.written > 0
            && let Err(err) = store.merge_search_index(REINDEX_MERGE_PAGES).await
        {
            tracing::warn!(error = %err, "merging the search index during a reindex failed");
        }
        progress(done.visited, total.max(done.visited));
        match step.last {
            Some(last) if step.visited == u64::from(REINDEX_BATCH) => after = last,
            _ => return Ok(done),
        }
    }
}

/// At start: index, in the background, messages stored before search existed.
pub fn spawn_backfill(store: std::sync::Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match store.messages_to_index(true).await {
            Ok(0) => return,
            Ok(missing) => tracing::info!(missing, "indexing earlier messages for search"),
            Err(err) => {
                tracing::warn!(error = %err, "could not count messages to index for search");
                return;
            }
        }
        match reindex(store.as_ref(), true, |_, _| {}).await {
            Ok(done) => tracing::info!(
                messages = done.written,
                "earlier messages indexed for search"
            ),
            Err(err) => tracing::warn!(
                error = %err,
                "indexing earlier messages for search stopped; `switchboard search reindex` finishes it"
            ),
        }
    })
}

//! Pieces both backends share: column decoding into domain types, constraint-error
//! classification, and the small pure helpers (direct-room key, key-prefix ranges).
//!
//! Kept SQL-dialect free so that `sqlite.rs` and `postgres.rs` differ only where the
//! databases really differ.

use std::collections::HashSet;

use super::{
    Event, EventId, EventKind, Metadata, Millis, NewEvent, Role, RoomId, StoreError, StoreResult,
    UserId,
};

/// Which constraint a database error broke, if any. Per-item failures in a batch are
/// recognised through this, everything else aborts the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    Unique,
    ForeignKey,
}

pub(crate) fn violation(err: &sqlx::Error) -> Option<Violation> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(Violation::Unique),
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => Some(Violation::ForeignKey),
        _ => None,
    }
}

/// The error name of a unique violation (PostgreSQL: the index or constraint name), so that a
/// violation of one index is not mistaken for another.
pub(crate) fn constraint_name(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// Map a write error: a foreign key pointing nowhere means "the thing you named does not
/// exist"; a unique violation becomes the given conflict code.
pub(crate) fn map_write(err: sqlx::Error, on_unique: &'static str) -> StoreError {
    match violation(&err) {
        Some(Violation::ForeignKey) => StoreError::NotFound,
        Some(Violation::Unique) => StoreError::Conflict(on_unique),
        None => refuse_row_errors(StoreError::Backend(err)),
    }
}

/// Whether the database refused a statement for the values of the row it wrote, leaving the
/// transaction usable: PostgreSQL's data exceptions (class 22: a NUL in text or JSON, a bad
/// encoding, a value out of range), integrity violations (class 23: an operator's CHECK)
/// and errors raised by a trigger (class P0); SQLite's constraint (including a trigger's
/// `RAISE(ABORT)`), too-big, mismatch and range errors, which undo only the statement.
/// Connection, I/O, locking, deadlock and serialization errors are not row errors: they
/// concern the whole transaction.
pub(crate) fn is_row_error(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    let Some(code) = db.code() else {
        return false;
    };
    if let Ok(sqlite_code) = code.parse::<u32>() {
        // SQLite reports its extended result code; the primary code is the low byte.
        return matches!(sqlite_code & 0xff, 18 | 19 | 20 | 25);
    }
    code.starts_with("22") || code.starts_with("23") || code.starts_with("P0")
}

/// A foreign key pointing nowhere on an event insert is an unknown sender or room.
pub(crate) fn not_found_on_foreign_key(err: sqlx::Error) -> StoreError {
    match violation(&err) {
        Some(Violation::ForeignKey) => StoreError::NotFound,
        _ => StoreError::Backend(err),
    }
}

/// Turn a row error into [`StoreError::Refused`]; everything else passes through.
pub(crate) fn refuse_row_errors(err: StoreError) -> StoreError {
    match err {
        StoreError::Backend(e) if is_row_error(&e) => StoreError::Refused(e.to_string()),
        other => other,
    }
}

/// True for errors that concern one batch item (and so roll back only that item).
pub(crate) fn is_item_failure(err: &StoreError) -> bool {
    matches!(
        err,
        StoreError::NotFound | StoreError::Conflict(_) | StoreError::Refused(_)
    )
}

/// The `direct_key` of a pair: order-independent, so `(a, b)` and `(b, a)` collide.
pub(crate) fn direct_key(a: UserId, b: UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}

/// The other user of a direct room, seen from `me` (`me` itself for a room with oneself).
pub(crate) fn direct_peer(key: &str, me: UserId) -> StoreResult<UserId> {
    let bad = || StoreError::Corrupt(format!("direct_key {key:?}"));
    let (lo, hi) = key.split_once(':').ok_or_else(bad)?;
    let lo: UserId = lo.parse().map_err(|_| bad())?;
    let hi: UserId = hi.parse().map_err(|_| bad())?;
    Ok(if lo == me { hi } else { lo })
}

/// The smallest string greater than every string starting with `prefix`, or `None` if there
/// is none (empty prefix, or only `char::MAX`s). Lets `kv_keys` use the primary-key index with
/// `key >= prefix AND key < upper` instead of a LIKE that needs escaping. Correct because both
/// backends compare these keys bytewise and UTF-8 byte order is code-point order.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

pub(crate) fn parse_role(s: &str) -> StoreResult<Role> {
    Role::parse(s).ok_or_else(|| StoreError::Corrupt(format!("role {s:?}")))
}

pub(crate) fn parse_event_kind(s: &str) -> StoreResult<EventKind> {
    EventKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("event kind {s:?}")))
}

pub(crate) fn encode_metadata(metadata: &Metadata) -> String {
    // A map of strings always serialises; the fallback only keeps this infallible.
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".to_string())
}

pub(crate) fn decode_metadata(text: &str) -> StoreResult<Metadata> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))
}

pub(crate) fn decode_json(text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("json: {e}")))
}

/// Read one column, turning a decode failure into `Corrupt` (a row that does not match the
/// schema we migrated is a corrupt database, not a transient backend error).
/// A column list with each column qualified by a table alias (`id, name` → `u.id, u.name`),
/// for a join that selects one table's columns.
pub(crate) fn qualified(cols: &str, alias: &str) -> String {
    cols.split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn col<'r, R, T>(row: &'r R, name: &'static str) -> StoreResult<T>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

/// A `u32` limit as the `i64` both backends bind.
pub(crate) fn limit(n: u32) -> i64 {
    i64::from(n)
}

/// The creator as owner, then the other requested members once each (first role wins).
pub(crate) fn initial_members(creator: UserId, members: &[(UserId, Role)]) -> Vec<(UserId, Role)> {
    let mut seen = HashSet::from([creator]);
    let mut all = vec![(creator, Role::Owner)];
    all.extend(
        members
            .iter()
            .copied()
            .filter(|(user, _)| seen.insert(*user)),
    );
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_upper_bound_covers_exactly_the_prefix() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
    }

    #[test]
    fn direct_key_is_symmetric_and_names_the_peer() {
        assert_eq!(direct_key(7, 3), "3:7");
        assert_eq!(direct_key(3, 7), "3:7");
        assert_eq!(direct_peer("3:7", 3).ok(), Some(7));
        assert_eq!(direct_peer("3:7", 7).ok(), Some(3));
        assert_eq!(direct_peer("5:5", 5).ok(), Some(5));
        assert!(direct_peer("x", 5).is_err());
    }
}

/// The fields of a new message, as both backends' batch fast paths store it.
#[derive(Debug)]
pub(crate) struct NewMessage<'a> {
    pub room_id: RoomId,
    pub sender_id: UserId,
    pub client_msg_id: &'a str,
    pub body: &'a str,
    pub metadata: &'a Metadata,
}

impl<'a> NewMessage<'a> {
    /// A new message without files, outside threads and mentioning nobody (a file claim
    /// must roll back with the message, a reply's root is checked first, mentions are
    /// indexed with it: the savepoint path).
    pub fn plain(item: &'a NewEvent) -> Option<Self> {
        match item {
            NewEvent::Message {
                room_id,
                sender_id,
                client_msg_id,
                body,
                metadata,
                files,
                thread: None,
                mentions,
            } if files.is_empty() && mentions.is_empty() => Some(Self {
                room_id: *room_id,
                sender_id: *sender_id,
                client_msg_id,
                body,
                metadata,
            }),
            _ => None,
        }
    }

    /// The event this message became, once the database gave it `id` and `seq` (a plain
    /// new message's row holds nothing else the database chose) and it was stored at `now`.
    pub fn stored(&self, id: EventId, seq: i64, now: Millis) -> Event {
        Event {
            id,
            room_id: self.room_id,
            seq,
            kind: EventKind::Message,
            sender_id: self.sender_id,
            target: None,
            body: Some(self.body.to_string()),
            metadata: self.metadata.clone(),
            client_msg_id: Some(self.client_msg_id.to_string()),
            created_at: now,
            edited_at: None,
            deleted: false,
            thread_root: None,
            also_to_room: false,
            mentions: Vec::new(),
            mentions_room: false,
            thread: None,
            reactions: Vec::new(),
        }
    }
}

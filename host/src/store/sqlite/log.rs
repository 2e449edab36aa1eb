//! The room log on SQLite: group-committed appends with per-item savepoints, history pages,
//! and read cursors.
//!
//! A batch is one `BEGIN IMMEDIATE` transaction on the single writer connection. Each item
//! runs inside `SAVEPOINT item`: a domain failure (`NotFound`, `Conflict`) or a refused row
//! (`Refused`: a constraint or trigger) rolls back to it, undoing that item's `last_seq` bump
//! and any row it wrote, and the batch goes on. Any other error (I/O, a full disk) fails the
//! whole batch, because SQLite may already have rolled the transaction back and nothing in
//! it can be trusted to commit; the group-commit writer then retries the items one by one.

use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};

use super::super::common::{
    Violation, col, decode_metadata, encode_metadata, is_item_failure, limit, parse_event_kind,
    refuse_row_errors, violation,
};
use super::super::{
    Appended, Event, EventId, EventKind, Metadata, NewEvent, Page, RoomId, StoreError, StoreResult,
    UserId, now_millis,
};

const EVENT_COLS: &str = "id, room_id, seq, kind, sender_id, target, body, metadata, \
                          client_msg_id, created_at, edited_at, deleted";

fn event_from_row(row: &SqliteRow) -> StoreResult<Event> {
    Ok(Event {
        id: col(row, "id")?,
        room_id: col(row, "room_id")?,
        seq: col(row, "seq")?,
        kind: parse_event_kind(&col::<_, String>(row, "kind")?)?,
        sender_id: col(row, "sender_id")?,
        target: col(row, "target")?,
        body: col(row, "body")?,
        metadata: decode_metadata(&col::<_, String>(row, "metadata")?)?,
        client_msg_id: col(row, "client_msg_id")?,
        created_at: col(row, "created_at")?,
        edited_at: col(row, "edited_at")?,
        deleted: col(row, "deleted")?,
    })
}

pub(super) async fn append_events(
    writer: &SqlitePool,
    batch: &[NewEvent],
) -> StoreResult<Vec<StoreResult<Appended>>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_millis();
    // IMMEDIATE takes the write lock up front, so the transaction cannot fail half-way with
    // SQLITE_BUSY when it first writes.
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(batch.len());
    for item in batch {
        if let NewEvent::Message {
            room_id,
            sender_id,
            client_msg_id,
            body,
            metadata,
        } = item
        {
            // The hot path needs no savepoint: its one INSERT either stores the message (and
            // the trigger advances the room) or changes nothing.
            let done = append_message(
                &mut tx,
                *room_id,
                *sender_id,
                client_msg_id,
                body,
                metadata,
                now,
            )
            .await
            .map_err(refuse_row_errors);
            match done {
                Err(err) if !is_item_failure(&err) => return Err(err),
                done => results.push(done),
            }
            continue;
        }
        sqlx::query("SAVEPOINT item").execute(&mut *tx).await?;
        match apply(&mut tx, item, now).await.map_err(refuse_row_errors) {
            Ok(done) => {
                sqlx::query("RELEASE item").execute(&mut *tx).await?;
                results.push(Ok(done));
            }
            Err(err) if is_item_failure(&err) => {
                sqlx::query("ROLLBACK TO item").execute(&mut *tx).await?;
                sqlx::query("RELEASE item").execute(&mut *tx).await?;
                results.push(Err(err));
            }
            Err(err) => return Err(err),
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Store a new message in one statement: the seq comes from `rooms.last_seq + 1` in the same
/// INSERT, the `events_advance_room_seq` trigger moves `last_seq`, and a known
/// `(sender, client_msg_id)` inserts nothing. Only when nothing was inserted does a second
/// query tell a retry (the original, `duplicate`) from an unknown room.
async fn append_message(
    conn: &mut SqliteConnection,
    room_id: RoomId,
    sender_id: UserId,
    client_msg_id: &str,
    body: &str,
    metadata: &Metadata,
    now: i64,
) -> StoreResult<Appended> {
    let stored = sqlx::query(&format!(
        "INSERT INTO events
            (room_id, seq, kind, sender_id, target, body, metadata, client_msg_id, created_at)
         SELECT id, last_seq + 1, 'message', $2, NULL, $3, $4, $5, $6 FROM rooms WHERE id = $1
         ON CONFLICT (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING
         RETURNING {EVENT_COLS}"
    ))
    .bind(room_id)
    .bind(sender_id)
    .bind(body)
    .bind(encode_metadata(metadata))
    .bind(client_msg_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| match violation(&e) {
        // An unknown sender.
        Some(Violation::ForeignKey) => StoreError::NotFound,
        _ => StoreError::Backend(e),
    })?;
    if let Some(row) = stored {
        return Ok(Appended {
            event: event_from_row(&row)?,
            duplicate: false,
        });
    }
    match event_by_client_msg_id(conn, sender_id, client_msg_id).await? {
        Some(original) => Ok(Appended {
            event: original,
            duplicate: true,
        }),
        None => Err(StoreError::NotFound),
    }
}

/// Apply one item inside its savepoint.
async fn apply(conn: &mut SqliteConnection, item: &NewEvent, now: i64) -> StoreResult<Appended> {
    match item {
        NewEvent::Message {
            room_id,
            sender_id,
            client_msg_id,
            body,
            metadata,
        } => {
            // A retry (in an earlier batch, or earlier in this one: same transaction) returns
            // the stored original before any seq is taken.
            if let Some(original) = event_by_client_msg_id(conn, *sender_id, client_msg_id).await? {
                return Ok(Appended {
                    event: original,
                    duplicate: true,
                });
            }
            let row = Row {
                room_id: *room_id,
                kind: EventKind::Message,
                sender_id: *sender_id,
                target: None,
                body: Some(body),
                metadata,
                client_msg_id: Some(client_msg_id),
            };
            Ok(Appended {
                event: insert(conn, row, now).await?,
                duplicate: false,
            })
        }
        NewEvent::Edit {
            room_id,
            sender_id,
            target,
            body,
            metadata,
        } => {
            let seq = next_seq(conn, *room_id).await?;
            let author = live_message_author(conn, *room_id, *target).await?;
            if author != *sender_id {
                return Err(StoreError::Conflict("not_author"));
            }
            sqlx::query("UPDATE events SET body = $2, metadata = $3, edited_at = $4 WHERE id = $1")
                .bind(target)
                .bind(body)
                .bind(encode_metadata(metadata))
                .bind(now)
                .execute(&mut *conn)
                .await?;
            let row = Row {
                room_id: *room_id,
                kind: EventKind::Edit,
                sender_id: *sender_id,
                target: Some(*target),
                body: Some(body),
                metadata,
                client_msg_id: None,
            };
            Ok(Appended {
                event: insert_at(conn, seq, row, now).await?,
                duplicate: false,
            })
        }
        NewEvent::Delete {
            room_id,
            sender_id,
            target,
        } => {
            let seq = next_seq(conn, *room_id).await?;
            live_message_author(conn, *room_id, *target).await?;
            // Erase, not hide: the text (and metadata, which plugins may derive from the
            // text) of the message and of every edit of it leaves the database.
            sqlx::query(
                "UPDATE events SET body = NULL, metadata = '{}', deleted = TRUE
                 WHERE id = $1 OR (kind = 'edit' AND target = $1)",
            )
            .bind(target)
            .execute(&mut *conn)
            .await?;
            let row = Row {
                room_id: *room_id,
                kind: EventKind::Delete,
                sender_id: *sender_id,
                target: Some(*target),
                body: None,
                metadata: &Metadata::new(),
                client_msg_id: None,
            };
            Ok(Appended {
                event: insert_at(conn, seq, row, now).await?,
                duplicate: false,
            })
        }
        NewEvent::Join {
            room_id,
            actor_id,
            user_id,
            role,
        } => {
            let seq = next_seq(conn, *room_id).await?;
            sqlx::query(
                "INSERT INTO members (room_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(room_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(|e| match violation(&e) {
                Some(Violation::Unique) => StoreError::Conflict("already_member"),
                Some(Violation::ForeignKey) => StoreError::NotFound,
                None => StoreError::Backend(e),
            })?;
            let metadata = Metadata::from([("role".to_string(), role.as_str().to_string())]);
            let row = Row {
                room_id: *room_id,
                kind: EventKind::MemberJoined,
                sender_id: *actor_id,
                target: Some(*user_id),
                body: None,
                metadata: &metadata,
                client_msg_id: None,
            };
            Ok(Appended {
                event: insert_at(conn, seq, row, now).await?,
                duplicate: false,
            })
        }
        NewEvent::Leave {
            room_id,
            actor_id,
            user_id,
        } => {
            let seq = next_seq(conn, *room_id).await?;
            let done = sqlx::query("DELETE FROM members WHERE room_id = $1 AND user_id = $2")
                .bind(room_id)
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            let row = Row {
                room_id: *room_id,
                kind: EventKind::MemberLeft,
                sender_id: *actor_id,
                target: Some(*user_id),
                body: None,
                metadata: &Metadata::new(),
                client_msg_id: None,
            };
            Ok(Appended {
                event: insert_at(conn, seq, row, now).await?,
                duplicate: false,
            })
        }
    }
}

/// The columns of a new event that vary by kind.
struct Row<'a> {
    room_id: RoomId,
    kind: EventKind,
    sender_id: UserId,
    target: Option<i64>,
    body: Option<&'a String>,
    metadata: &'a Metadata,
    client_msg_id: Option<&'a String>,
}

/// Take the room's next seq; `NotFound` if there is no such room.
async fn next_seq(conn: &mut SqliteConnection, room: RoomId) -> StoreResult<i64> {
    let row =
        sqlx::query("UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq")
            .bind(room)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)?;
    col(&row, "last_seq")
}

/// Check that `target` is a live message in `room`; return its author.
async fn live_message_author(
    conn: &mut SqliteConnection,
    room: RoomId,
    target: EventId,
) -> StoreResult<UserId> {
    let row =
        sqlx::query("SELECT kind, sender_id, deleted FROM events WHERE id = $1 AND room_id = $2")
            .bind(target)
            .bind(room)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)?;
    if parse_event_kind(&col::<_, String>(&row, "kind")?)? != EventKind::Message {
        return Err(StoreError::Conflict("not_a_message"));
    }
    if col::<_, bool>(&row, "deleted")? {
        return Err(StoreError::Conflict("message_deleted"));
    }
    col(&row, "sender_id")
}

async fn insert(conn: &mut SqliteConnection, row: Row<'_>, now: i64) -> StoreResult<Event> {
    let seq = next_seq(conn, row.room_id).await?;
    insert_at(conn, seq, row, now).await
}

async fn insert_at(
    conn: &mut SqliteConnection,
    seq: i64,
    row: Row<'_>,
    now: i64,
) -> StoreResult<Event> {
    let stored = sqlx::query(&format!(
        "INSERT INTO events
            (room_id, seq, kind, sender_id, target, body, metadata, client_msg_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {EVENT_COLS}"
    ))
    .bind(row.room_id)
    .bind(seq)
    .bind(row.kind.as_str())
    .bind(row.sender_id)
    .bind(row.target)
    .bind(row.body)
    .bind(encode_metadata(row.metadata))
    .bind(row.client_msg_id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match violation(&e) {
        // An unknown sender.
        Some(Violation::ForeignKey) => StoreError::NotFound,
        _ => StoreError::Backend(e),
    })?;
    event_from_row(&stored)
}

pub(super) async fn event(reader: &SqlitePool, id: EventId) -> StoreResult<Option<Event>> {
    sqlx::query(&format!("SELECT {EVENT_COLS} FROM events WHERE id = $1"))
        .bind(id)
        .fetch_optional(reader)
        .await?
        .as_ref()
        .map(event_from_row)
        .transpose()
}

pub(super) async fn event_by_client_msg_id(
    conn: &mut SqliteConnection,
    sender: UserId,
    client_msg_id: &str,
) -> StoreResult<Option<Event>> {
    sqlx::query(&format!(
        "SELECT {EVENT_COLS} FROM events WHERE sender_id = $1 AND client_msg_id = $2"
    ))
    .bind(sender)
    .bind(client_msg_id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(event_from_row)
    .transpose()
}

pub(super) async fn events(
    reader: &SqlitePool,
    room: RoomId,
    page: Page,
    max: u32,
) -> StoreResult<Vec<Event>> {
    let (sql, bound) = match page {
        Page::After(after) => (
            format!(
                "SELECT {EVENT_COLS} FROM events WHERE room_id = $1 AND seq > $2
                 ORDER BY seq ASC LIMIT $3"
            ),
            after,
        ),
        // The newest `max` before the bound, fetched newest first and turned around below.
        Page::Before(before) => (
            format!(
                "SELECT {EVENT_COLS} FROM events WHERE room_id = $1 AND seq < $2
                 ORDER BY seq DESC LIMIT $3"
            ),
            before,
        ),
    };
    let mut events = sqlx::query(&sql)
        .bind(room)
        .bind(bound)
        .bind(limit(max))
        .fetch_all(reader)
        .await?
        .iter()
        .map(event_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    if matches!(page, Page::Before(_)) {
        events.reverse();
    }
    Ok(events)
}

pub(super) async fn set_read_cursor(
    writer: &SqlitePool,
    user: UserId,
    room: RoomId,
    seq: i64,
) -> StoreResult<i64> {
    // Clamped to [0, last_seq] so a bogus client value cannot hide all future messages, and
    // merged with MAX so a late or replayed update never moves the cursor back.
    let row = sqlx::query(
        "INSERT INTO read_cursors (user_id, room_id, seq)
         SELECT $1, id, MAX(0, MIN($3, last_seq)) FROM rooms WHERE id = $2
         ON CONFLICT (user_id, room_id) DO UPDATE SET seq = MAX(seq, excluded.seq)
         RETURNING seq",
    )
    .bind(user)
    .bind(room)
    .bind(seq)
    .fetch_optional(writer)
    .await
    .map_err(|e| match violation(&e) {
        Some(Violation::ForeignKey) => StoreError::NotFound,
        _ => StoreError::Backend(e),
    })?
    .ok_or(StoreError::NotFound)?;
    col(&row, "seq")
}

//! The room log on PostgreSQL: group-committed appends that stay correct with several nodes
//! writing at once, history pages, and read cursors.
//!
//! A batch is one transaction. It first locks every room it touches, in id order, with
//! `FOR NO KEY UPDATE` (the same lock the `last_seq` bump takes, and one that does not block
//! foreign-key checks from other writers): batches from different nodes then queue per room
//! instead of deadlocking, and every check made after the lock sees what the previous holder
//! committed. Each item runs inside `SAVEPOINT item`, so a domain failure, a refused row (a
//! value PostgreSQL cannot hold, a constraint or trigger) or losing an idempotency race undoes
//! that item's `seq` bump and rows while the rest of the batch commits.

use sqlx::postgres::{PgConnection, PgPool, PgRow};

use super::super::common::{
    Violation, col, constraint_name, decode_metadata, encode_metadata, is_item_failure, limit,
    parse_event_kind, refuse_row_errors, violation,
};
use super::super::{
    Appended, Event, EventId, EventKind, Metadata, NewEvent, Page, RoomId, StoreError, StoreResult,
    UserId, now_millis,
};

const EVENT_COLS: &str = "id, room_id, seq, kind, sender_id, target, body, \
                          metadata::text AS metadata, client_msg_id, created_at, edited_at, deleted";

/// The unique index that makes `(sender, client_msg_id)` idempotent (see the migration).
const CLIENT_MSG_INDEX: &str = "events_client_msg";

/// Whole-batch attempts when PostgreSQL aborts the transaction to break a deadlock or a
/// serialization conflict; nothing was committed, so running it again is safe.
const ATTEMPTS: usize = 3;

fn event_from_row(row: &PgRow) -> StoreResult<Event> {
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

fn is_retryable(err: &StoreError) -> bool {
    match err {
        StoreError::Backend(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

pub(super) async fn append_events(
    pool: &PgPool,
    batch: &[NewEvent],
) -> StoreResult<Vec<StoreResult<Appended>>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut attempt = 1;
    loop {
        match append_once(pool, batch).await {
            Err(err) if attempt < ATTEMPTS && is_retryable(&err) => {
                tracing::warn!(attempt, error = %err, "append batch aborted; retrying");
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn append_once(pool: &PgPool, batch: &[NewEvent]) -> StoreResult<Vec<StoreResult<Appended>>> {
    let now = now_millis();
    let mut rooms: Vec<RoomId> = batch.iter().map(NewEvent::room_id).collect();
    rooms.sort_unstable();
    rooms.dedup();

    let mut tx = pool.begin().await?;
    sqlx::query("SELECT id FROM rooms WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(&rooms)
        .execute(&mut *tx)
        .await?;
    let mut results = Vec::with_capacity(batch.len());
    for item in batch {
        sqlx::query("SAVEPOINT item").execute(&mut *tx).await?;
        match apply(&mut tx, item, now).await.map_err(refuse_row_errors) {
            Ok(done) => {
                sqlx::query("RELEASE SAVEPOINT item")
                    .execute(&mut *tx)
                    .await?;
                results.push(Ok(done));
            }
            Err(err) if is_item_failure(&err) => {
                sqlx::query("ROLLBACK TO SAVEPOINT item")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("RELEASE SAVEPOINT item")
                    .execute(&mut *tx)
                    .await?;
                results.push(Err(err));
            }
            Err(err) => return Err(err),
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Apply one item inside `SAVEPOINT item`.
async fn apply(conn: &mut PgConnection, item: &NewEvent, now: i64) -> StoreResult<Appended> {
    match item {
        NewEvent::Message {
            room_id,
            sender_id,
            client_msg_id,
            body,
            metadata,
        } => {
            // The common retry: already stored (by any node, or earlier in this batch).
            if let Some(original) = event_by_client_msg_id(conn, *sender_id, client_msg_id).await? {
                return Ok(Appended {
                    event: original,
                    duplicate: true,
                });
            }
            let seq = next_seq(conn, *room_id).await?;
            let row = Row {
                room_id: *room_id,
                kind: EventKind::Message,
                sender_id: *sender_id,
                target: None,
                body: Some(body),
                metadata,
                client_msg_id: Some(client_msg_id),
            };
            match insert_at(conn, seq, row, now).await {
                Ok(event) => Ok(Appended {
                    event,
                    duplicate: false,
                }),
                // Lost a race with another node storing the same send (to another room, as
                // the room lock serialises same-room sends): give the seq back, answer with
                // theirs.
                Err(StoreError::Backend(e))
                    if violation(&e) == Some(Violation::Unique)
                        && constraint_name(&e) == Some(CLIENT_MSG_INDEX) =>
                {
                    sqlx::query("ROLLBACK TO SAVEPOINT item")
                        .execute(&mut *conn)
                        .await?;
                    let original = event_by_client_msg_id(conn, *sender_id, client_msg_id)
                        .await?
                        .ok_or_else(|| StoreError::Corrupt("lost idempotency race".into()))?;
                    Ok(Appended {
                        event: original,
                        duplicate: true,
                    })
                }
                Err(e) => Err(e),
            }
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
            sqlx::query(
                "UPDATE events SET body = $2, metadata = $3::jsonb, edited_at = $4 WHERE id = $1",
            )
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

/// Take the room's next seq; `NotFound` if there is no such room. The row lock this UPDATE
/// holds until commit is what keeps seqs gap-free across nodes.
async fn next_seq(conn: &mut PgConnection, room: RoomId) -> StoreResult<i64> {
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
    conn: &mut PgConnection,
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

async fn insert_at(
    conn: &mut PgConnection,
    seq: i64,
    row: Row<'_>,
    now: i64,
) -> StoreResult<Event> {
    let stored = sqlx::query(&format!(
        "INSERT INTO events
            (room_id, seq, kind, sender_id, target, body, metadata, client_msg_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9) RETURNING {EVENT_COLS}"
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

pub(super) async fn event(pool: &PgPool, id: EventId) -> StoreResult<Option<Event>> {
    sqlx::query(&format!("SELECT {EVENT_COLS} FROM events WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(event_from_row)
        .transpose()
}

pub(super) async fn event_by_client_msg_id(
    conn: &mut PgConnection,
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
    pool: &PgPool,
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
        .fetch_all(pool)
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
    pool: &PgPool,
    user: UserId,
    room: RoomId,
    seq: i64,
) -> StoreResult<i64> {
    // Clamped to [0, last_seq] so a bogus client value cannot hide all future messages, and
    // merged with GREATEST so a late update (from any node) never moves the cursor back.
    let row = sqlx::query(
        "INSERT INTO read_cursors (user_id, room_id, seq)
         SELECT $1, id, GREATEST(0, LEAST($3, last_seq)) FROM rooms WHERE id = $2
         ON CONFLICT (user_id, room_id)
         DO UPDATE SET seq = GREATEST(read_cursors.seq, EXCLUDED.seq)
         RETURNING seq",
    )
    .bind(user)
    .bind(room)
    .bind(seq)
    .fetch_optional(pool)
    .await
    .map_err(|e| match violation(&e) {
        Some(Violation::ForeignKey) => StoreError::NotFound,
        _ => StoreError::Backend(e),
    })?
    .ok_or(StoreError::NotFound)?;
    col(&row, "seq")
}

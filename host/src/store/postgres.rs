//! PostgreSQL implementation of [`Store`]: for several nodes sharing one database.
//!
//! Everything that must hold across nodes is made a database fact rather than an in-process
//! lock: a room's `seq` comes from `UPDATE rooms … RETURNING last_seq` (the row lock orders
//! writers cluster-wide), idempotency and "one direct room per pair" from unique indexes.
//! The SQL itself is shared with SQLite ([`super::sql`]); what is PostgreSQL's own is here:
//! JSON as `jsonb`, and how a group-commit batch stays correct with several nodes writing.

use sqlx::postgres::{PgPool, PgPoolOptions};

use std::collections::HashMap;

use super::StoreOptions;
use super::common::NewMessage;
use super::sql::{Dialect, sql_store};

/// Whole-batch attempts when PostgreSQL aborts the transaction to break a deadlock or a
/// serialization conflict; nothing was committed, so running it again is safe.
const ATTEMPTS: usize = 3;

/// At start: warn when the room log and its indexes have outgrown PostgreSQL's
/// `shared_buffers`. Searches then read their candidate rows through the operating system's
/// cache, which measured twice as slow at a million messages (`docs/benchmarks.md`, "Search,
/// second round"); Debian's default of 128 MB is outgrown at about 300,000 messages. Only a
/// warning: the setting is the database operator's, and the server works either way.
async fn warn_if_buffers_outgrown(pool: &PgPool) {
    let sizes: Result<(i64, i64), sqlx::Error> = sqlx::query_as(
        "SELECT pg_size_bytes(current_setting('shared_buffers')), pg_total_relation_size('events')",
    )
    .fetch_one(pool)
    .await;
    match sizes {
        Ok((buffers, events)) if events > buffers => tracing::warn!(
            shared_buffers_mib = buffers >> 20,
            events_mib = events >> 20,
            "the events table and its indexes have outgrown PostgreSQL's shared_buffers; \
             searches will be slower (docs/operations.md, \"Search and its index\")"
        ),
        Ok(_) => {}
        // Reading a setting is not worth refusing to start over.
        Err(err) => tracing::debug!(error = %err, "could not compare shared_buffers"),
    }
}

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Earlier texts kept, search text written.
    policy: WritePolicy,
}

impl PgStore {
    /// Connect and migrate. Several nodes may do this at once: sqlx serialises migrations
    /// with an advisory lock.
    pub async fn connect(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect(url)
            .await?;
        // A database a newer binary upgraded is refused before any statement of ours runs.
        super::schema::refuse_newer_postgres(&pool).await?;
        super::schema::POSTGRES.run(&pool).await?;
        let store = Self {
            pool,
            policy: WritePolicy::from_options(options),
        };
        store.chain_unsealed().await?;
        warn_if_buffers_outgrown(&store.pool).await;
        Ok(store)
    }

    /// One attempt at a batch. It first locks every room it touches, in id order, with
    /// `FOR NO KEY UPDATE` (the same lock the `last_seq` bump takes, and one that does not
    /// block foreign-key checks from other writers): batches from different nodes then queue
    /// per room instead of deadlocking, and every check made after the lock sees what the
    /// previous holder committed. Then each run of new messages is stored by one statement
    /// ([`append_messages`]), and every other item runs in its own savepoint.
    async fn append_once(&self, batch: &[NewEvent]) -> StoreResult<Vec<StoreResult<Appended>>> {
        let now = now_millis();
        let mut rooms: Vec<RoomId> = batch.iter().map(NewEvent::room_id).collect();
        rooms.sort_unstable();
        rooms.dedup();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT id FROM rooms WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&rooms)
            .execute(&mut *tx)
            .await?;
        let mut results = Vec::with_capacity(batch.len());
        while results.len() < batch.len() {
            let rest = &batch[results.len()..];
            let run: Vec<NewMessage<'_>> = rest.iter().map_while(NewMessage::plain).collect();
            if !run.is_empty()
                && let Some(stored) = append_messages(&mut tx, &run, now, self.policy).await?
            {
                results.extend(stored);
                continue;
            }
            // Not a new message, or the run's statement failed (it changed nothing): item by
            // item, each failure its own.
            for item in &rest[..run.len().max(1)] {
                results.push(apply_in_savepoint(&mut tx, item, now, self.policy).await?);
            }
        }
        tx.commit().await?;
        Ok(results)
    }
}

sql_store!(PgStore, Postgres);

impl Dialect for PgStore {
    type Db = sqlx::Postgres;
    const NAME: &'static str = "postgres";
    const SIZE_SQL: &'static str = "SELECT pg_database_size(current_database()) AS size";
    const JSON_IN: &'static str = "::jsonb";
    const EVENT_COLS: &'static str = "id, room_id, seq, kind, sender_id, target, body, \
                                      metadata::text AS metadata, client_msg_id, created_at, \
                                      edited_at, deleted, thread_root, also_to_room, \
                                      mentions, mentions_room";
    const DETAIL_OUT: &'static str = "detail::text AS detail";
    const LIVE_MESSAGE: &'static str = "e.kind = 'message' AND NOT e.deleted";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const WRITES_ON_CALLING_THREAD: bool = false;
    const METADATA_TEXT: &'static str = "metadata::text";
    const FTS5: bool = false;
    const SENDER_INDEX: &'static str = "";

    // `LIKE`, not `strpos`: the trigram index serves `LIKE '%…%'`.
    fn contains(param: &str) -> String {
        format!("e.search_text LIKE {param}")
    }

    fn contains_value(term: &str) -> String {
        let mut pattern = String::with_capacity(term.len() + 2);
        pattern.push('%');
        for c in term.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }
    const READ_CURSOR_SQL: &'static str = "INSERT INTO read_cursors (user_id, room_id, seq)
         SELECT $1, id, GREATEST(0, LEAST($3, last_seq)) FROM rooms WHERE id = $2
         ON CONFLICT (user_id, room_id)
         DO UPDATE SET seq = GREATEST(read_cursors.seq, EXCLUDED.seq)
         RETURNING seq";

    fn reads(&self) -> &PgPool {
        &self.pool
    }

    fn writes(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.pool.begin().await?)
    }

    async fn after_erase(&self) {
        // PostgreSQL reclaims the old row versions at its next vacuum; the text is
        // unreachable at once.
    }

    /// Another node may have stored any key: every retry check reads the database.
    fn may_hold_sent_key(&self, _sender: UserId, _client_msg_id: &str) -> bool {
        true
    }

    async fn merge_search_index_step(&self, _pages: u32) -> StoreResult<bool> {
        // The `pg_trgm` GIN index merges its own pending list (`gin_pending_list_limit`).
        Ok(false)
    }

    async fn append_batch(&self, batch: &[NewEvent]) -> StoreResult<Vec<StoreResult<Appended>>> {
        let mut attempt = 1;
        loop {
            match self.append_once(batch).await {
                Err(err) if attempt < ATTEMPTS && is_retryable(&err) => {
                    tracing::warn!(attempt, error = %err, "append batch aborted; retrying");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// A deadlock or serialization failure: PostgreSQL aborted the whole transaction.
fn is_retryable(err: &StoreError) -> bool {
    match err {
        StoreError::Backend(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

/// Store a run of new messages in one statement (one round trip instead of five per
/// message): skip those already stored (a retry) or repeated earlier in the run, number the
/// rest per room from `rooms.last_seq` (locked by the batch), advance `last_seq`, insert.
/// `None` if the statement failed: it ran in a savepoint, so nothing of it remains and the
/// caller stores the run item by item, where each failure is that item's own (a concurrent
/// node storing the same send, an operator's trigger refusing a row).
async fn append_messages(
    conn: &mut DbConnection,
    messages: &[NewMessage<'_>],
    now: i64,
    policy: WritePolicy,
) -> StoreResult<Option<Vec<StoreResult<Appended>>>> {
    let rooms: Vec<RoomId> = messages.iter().map(|m| m.room_id).collect();
    let senders: Vec<UserId> = messages.iter().map(|m| m.sender_id).collect();
    let bodies: Vec<&str> = messages.iter().map(|m| m.body).collect();
    let search_texts: Vec<Option<String>> = messages
        .iter()
        .map(|m| policy.search_text(m.body))
        .collect();
    let metadata: Vec<String> = messages
        .iter()
        .map(|m| encode_metadata(m.metadata))
        .collect();
    let client_ids: Vec<&str> = messages.iter().map(|m| m.client_msg_id).collect();
    sqlx::query("SAVEPOINT run").execute(&mut *conn).await?;
    let stored = sqlx::query(&format!(
        "WITH input AS (
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                  $7::text[])
                 WITH ORDINALITY AS i (room_id, sender_id, body, metadata, client_msg_id,
                                       search_text, ord)
         ), fresh AS (
             SELECT DISTINCT ON (i.sender_id, i.client_msg_id) i.*
             FROM input i
             WHERE NOT EXISTS (SELECT 1 FROM events e
                               WHERE e.sender_id = i.sender_id
                                 AND e.client_msg_id = i.client_msg_id)
             ORDER BY i.sender_id, i.client_msg_id, i.ord
         ), numbered AS (
             SELECT f.*, r.last_seq + row_number() OVER (PARTITION BY f.room_id ORDER BY f.ord)
                 AS seq
             FROM fresh f JOIN rooms r ON r.id = f.room_id
         ), bumped AS (
             UPDATE rooms r SET last_seq = r.last_seq + n.added
             FROM (SELECT room_id, count(*) AS added FROM numbered GROUP BY room_id) n
             WHERE r.id = n.room_id
         )
         INSERT INTO events
             (room_id, seq, kind, sender_id, target, body, metadata, client_msg_id, created_at,
              search_text)
         SELECT room_id, seq, 'message', sender_id, NULL, body, metadata::jsonb, client_msg_id, $6,
                search_text
         FROM numbered ORDER BY ord
         RETURNING {}",
        PgStore::EVENT_COLS
    ))
    .bind(&rooms)
    .bind(&senders)
    .bind(&bodies)
    .bind(&metadata)
    .bind(&client_ids)
    .bind(now)
    .bind(&search_texts)
    .fetch_all(&mut *conn)
    .await;
    let rows = match stored {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(err)) => {
            tracing::debug!(error = %err, "a run of messages falls back to one by one");
            sqlx::query("ROLLBACK TO SAVEPOINT run")
                .execute(&mut *conn)
                .await?;
            sqlx::query("RELEASE SAVEPOINT run")
                .execute(&mut *conn)
                .await?;
            return Ok(None);
        }
        Err(err) => return Err(err.into()),
    };
    sqlx::query("RELEASE SAVEPOINT run")
        .execute(&mut *conn)
        .await?;

    // Each stored row answers the first message with its (sender, client_msg_id). A message
    // without one is a retry (of a send stored earlier, or earlier in this run, whose row
    // the transaction already sees) or names an unknown room.
    let mut fresh: HashMap<(UserId, String), Event> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let event = event_from_row(row)?;
        if let Some(id) = event.client_msg_id.clone() {
            fresh.insert((event.sender_id, id), event);
        }
    }
    let mut results = Vec::with_capacity(messages.len());
    for message in messages {
        let key = (message.sender_id, message.client_msg_id.to_string());
        results.push(match fresh.remove(&key) {
            Some(event) => Ok(Appended {
                event,
                duplicate: false,
            }),
            None => retry_or_unknown_room(conn, message.sender_id, message.client_msg_id).await,
        });
    }
    Ok(Some(results))
}

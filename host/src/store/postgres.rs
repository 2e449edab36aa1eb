//! PostgreSQL implementation of [`Store`]: for several nodes sharing one database.
//!
//! Everything that must hold across nodes is made a database fact rather than an in-process
//! lock: a room's `seq` comes from `UPDATE rooms … RETURNING last_seq` (the row lock orders
//! writers cluster-wide), idempotency and "one direct room per pair" from unique indexes.
//! The SQL itself is shared with SQLite ([`super::sql`]); what is PostgreSQL's own is here:
//! JSON as `jsonb`, and how a group-commit batch stays correct with several nodes writing.

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::StoreOptions;
use super::sql::{Dialect, sql_store};

/// Whole-batch attempts when PostgreSQL aborts the transaction to break a deadlock or a
/// serialization conflict; nothing was committed, so running it again is safe.
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Keep earlier texts on every edit and delete (`StoreOptions::preserve_versions`).
    preserve: bool,
}

impl PgStore {
    /// Connect and migrate. Several nodes may do this at once: sqlx serialises migrations
    /// with an advisory lock.
    pub async fn connect(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = Self {
            pool,
            preserve: options.preserve_versions,
        };
        store.chain_unsealed().await?;
        Ok(store)
    }

    /// One attempt at a batch. It first locks every room it touches, in id order, with
    /// `FOR NO KEY UPDATE` (the same lock the `last_seq` bump takes, and one that does not
    /// block foreign-key checks from other writers): batches from different nodes then queue
    /// per room instead of deadlocking, and every check made after the lock sees what the
    /// previous holder committed. Then every item runs in its own savepoint.
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
        for item in batch {
            results.push(apply_in_savepoint(&mut tx, item, now, self.preserve).await?);
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
                                      edited_at, deleted";
    const DETAIL_OUT: &'static str = "detail::text AS detail";
    const LIVE_MESSAGE: &'static str = "e.kind = 'message' AND NOT e.deleted";
    const LOCK_HEAD: &'static str = " FOR UPDATE";
    const METADATA_TEXT: &'static str = "metadata::text";
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

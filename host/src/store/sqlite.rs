//! SQLite implementation of [`Store`]: the embedded default, one file in WAL mode.
//!
//! SQLite allows one writer at a time. Rather than let connections fight over the lock (and
//! spin on `SQLITE_BUSY`), every write goes through a pool of exactly one connection, so
//! writes queue in-process; reads use a separate pool and, thanks to WAL, never wait for the
//! writer. The SQL itself is shared with PostgreSQL ([`super::sql`]); what is SQLite's own
//! is here: opening the file privately, the one-writer transaction, a one-statement insert
//! for new messages, the search index's merge steps, erasing deleted text from the WAL, and
//! knowing a new message's key is new without a read (`sqlite_sent_keys`).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::checkpoint::{BACKSTOP_PAGES, Checkpointer};
use super::common::NewMessage;
use super::sql::{Dialect, sql_store};
use super::sqlite_index_merge;
use super::sqlite_messages::{Inserted, Transaction, insert_run};
use super::sqlite_raw::KeptStatements;
use super::sqlite_sent_keys::SentKeys;
use super::{SqliteSync, StoreOptions};

/// How long a connection waits for the file lock (another process, a checkpoint) before
/// giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: all writes, each in its own transaction.
    writer: SqlitePool,
    /// Reads only (`max_connections` of them); WAL lets them run beside the writer.
    reader: SqlitePool,
    /// Earlier texts kept, search text written.
    policy: WritePolicy,
    /// The writer's `synchronous`, restored after a search index merge step.
    synchronous: SqliteSync,
    /// The group commit's statements for runs of new messages, kept prepared on the writer
    /// connection (`sqlite_raw::with_kept_statements`).
    kept: KeptStatements,
    /// The keys of the stored messages, to answer "not a retry" without a read.
    sent_keys: Arc<SentKeys>,
    /// The background WAL checkpoint (`store.sqlite_checkpoint_ms`), stopped with the last
    /// clone of the store; `None` when SQLite checkpoints inside commits.
    _checkpointer: Option<Arc<Checkpointer>>,
}

impl SqliteStore {
    /// Open (creating the file and its directory if missing) and migrate `sqlite://path`.
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let base = SqliteConnectOptions::from_str(url)?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let dir = base
            .get_filename()
            .parent()
            .filter(|d| !d.as_os_str().is_empty());
        if let (false, Some(dir)) = (memory, dir) {
            create_dir(dir).await?;
        }
        if !memory {
            make_private(base.get_filename())
                .map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))?;
        }
        let synchronous_pragma = match options.sqlite_synchronous {
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Normal => SqliteSynchronous::Normal,
        };
        let writer_opts = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous_pragma)
            // Deleted message text must leave the file, not linger in freed pages (the
            // contract test for erasure fails without this).
            .pragma("secure_delete", "ON");
        // With the background checkpoint, the writer's own is only a backstop (see
        // `checkpoint`); without it, SQLite's default of 1,000 pages stands.
        let background_checkpoint = options.sqlite_checkpoint_interval.filter(|_| !memory);
        let writer_opts = if background_checkpoint.is_some() {
            writer_opts.pragma("wal_autocheckpoint", BACKSTOP_PAGES.to_string())
        } else {
            writer_opts
        };
        let writer = SqlitePoolOptions::new()
            // A connection to a file in this process has nothing to test: sqlx's check is a
            // round trip to the connection's thread, and for the group commit one more in
            // each batch's path (sqlx tests each connection again as it comes back anyway).
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            // A writer held for a while by a big batch is normal: queue, don't time out early.
            .acquire_timeout(Duration::from_secs(60))
            // Never recycle it: an in-memory database would vanish with its connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_opts)
            .await?;
        // A database a newer binary upgraded is refused before any statement of ours runs.
        super::schema::refuse_newer_sqlite(&writer).await?;
        super::schema::SQLITE.run(&writer).await?;
        sqlite_index_merge::configure(&writer, options.search_merge_pages).await?;

        let checkpointer = match background_checkpoint {
            Some(every) => Some(Checkpointer::start(base.clone(), every).await?),
            None => None,
        };
        // An in-memory database exists only on its one connection: read through the writer.
        let reader = if memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(options.max_connections.max(1))
                .connect_with(base.read_only(true))
                .await?
        };
        let store = Self {
            writer,
            policy: WritePolicy::from_options(options),
            synchronous: options.sqlite_synchronous,
            kept: KeptStatements::default(),
            sent_keys: Arc::new(SentKeys::new(
                reader.clone(),
                options.sqlite_retry_filter_keys,
            )),
            reader,
            _checkpointer: checkpointer,
        };
        store.chain_unsealed().await?;
        Ok(store)
    }
}

/// The database holds password hashes and every message: only the server's own user may
/// read it. Creates the file `0600` if missing (SQLite gives its `-wal` and `-shm` files
/// the database file's mode), and tightens an existing file, WAL and shared-memory file
/// that others could read, saying so in the log.
fn make_private(db: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        if !db.exists() {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(db)
            {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_os_string();
        path.push(suffix);
        crate::private_files::tighten(Path::new(&path), "the database file")?;
    }
    Ok(())
}

async fn create_dir(dir: &Path) -> StoreResult<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))
}

sql_store!(SqliteStore, Sqlite);

impl Dialect for SqliteStore {
    type Db = sqlx::Sqlite;
    const NAME: &'static str = "sqlite";
    const SIZE_SQL: &'static str =
        "SELECT page_count * page_size AS size FROM pragma_page_count(), pragma_page_size()";
    const JSON_IN: &'static str = "";
    const EVENT_COLS: &'static str = "id, room_id, seq, kind, sender_id, target, body, metadata, \
                                      client_msg_id, created_at, edited_at, deleted, \
                                      thread_root, also_to_room, mentions, mentions_room";
    const DETAIL_OUT: &'static str = "detail";
    // `deleted = 0` (not `= FALSE`) so SQLite matches the partial index word for word.
    const LIVE_MESSAGE: &'static str = "e.kind = 'message' AND e.deleted = 0";
    // The single writer connection and `BEGIN IMMEDIATE` already serialise appends.
    const FOR_UPDATE: &'static str = "";
    const WRITES_ON_CALLING_THREAD: bool = true;
    const METADATA_TEXT: &'static str = "metadata";
    const FTS5: bool = true;
    const SENDER_INDEX: &'static str = " INDEXED BY events_sender_live";

    fn contains(param: &str) -> String {
        format!("instr(e.search_text, {param}) > 0")
    }

    fn contains_value(term: &str) -> String {
        term.to_string()
    }
    const READ_CURSOR_SQL: &'static str = "INSERT INTO read_cursors (user_id, room_id, seq)
         SELECT $1, id, MAX(0, MIN($3, last_seq)) FROM rooms WHERE id = $2
         ON CONFLICT (user_id, room_id) DO UPDATE SET seq = MAX(seq, excluded.seq)
         RETURNING seq";

    fn reads(&self) -> &SqlitePool {
        &self.reader
    }

    fn writes(&self) -> &SqlitePool {
        &self.writer
    }

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        // IMMEDIATE takes the write lock up front, so the transaction cannot fail half-way
        // with SQLITE_BUSY when it first writes. The single writer connection serialises
        // concurrent callers.
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn after_erase(&self) {
        // `secure_delete` zeroes the freed text in the database file, but the WAL still
        // holds old page images until a checkpoint: copy back and truncate it now, so
        // erased content is gone from disk, not merely unreachable. Erasures are rare, so
        // the extra fsync is cheap overall.
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
        {
            tracing::warn!(error = %err, "checkpoint after an erasure failed; the WAL may hold erased text until the next checkpoint");
        }
    }

    async fn merge_search_index_step(&self, pages: u32) -> StoreResult<bool> {
        let mut writer = self.writer.acquire().await?;
        sqlite_index_merge::merge_step(&mut writer, pages, self.synchronous).await
    }

    /// One transaction on the single writer. Runs of new messages take the one-statement
    /// path, a whole run per hand-off to the writer connection; the rest go through the
    /// shared savepoint loop. Any error other than an item's own fails the batch: SQLite may
    /// already have rolled the transaction back (I/O, a full disk).
    async fn append_batch(&self, batch: &[NewEvent]) -> StoreResult<Vec<StoreResult<Appended>>> {
        let keys = batch.iter().filter_map(|event| match event {
            NewEvent::Message {
                sender_id,
                client_msg_id,
                ..
            } => Some((*sender_id, client_msg_id.as_str())),
            _ => None,
        });
        // The keys go into the retry filter twice (`sqlite_sent_keys`). Before: should this
        // future be dropped, its commit may still complete on sqlx's thread. After, whatever
        // the outcome: a scan that started during the commit may have read before it. A key
        // added for nothing costs only a lookup; one missing would hide a retry.
        self.sent_keys.add(keys.clone());
        let outcome = match self.append_once(batch).await {
            // Another connection changed the schema (an operator's trigger, say) and a
            // statement prepared before it failed to prepare again; the transaction rolled
            // back whole, so running the batch again stores it exactly once.
            Err(err) if schema_changed(&err) => {
                tracing::warn!(error = %err, "the database schema changed under a batch; retrying it");
                self.append_once(batch).await
            }
            result => result,
        };
        self.sent_keys.add(keys);
        outcome
    }

    /// False only when no message with this key is stored (`sqlite_sent_keys`).
    fn may_hold_sent_key(&self, sender: UserId, client_msg_id: &str) -> bool {
        self.sent_keys.may_hold(sender, client_msg_id)
    }
}

/// The error SQLite gives a statement prepared before another connection changed the
/// schema, when preparing it again fails (`SQLITE_SCHEMA`, or the `no such table` such a
/// re-preparation has been seen to report).
fn schema_changed(err: &StoreError) -> bool {
    match err {
        StoreError::Backend(sqlx::Error::Database(db)) => {
            db.code().as_deref() == Some("17") || db.message().starts_with("no such table")
        }
        _ => false,
    }
}

impl SqliteStore {
    async fn append_once(&self, batch: &[NewEvent]) -> StoreResult<Vec<StoreResult<Appended>>> {
        let now = now_millis();
        let plain: Vec<NewMessage<'_>> = batch.iter().map_while(NewMessage::plain).collect();
        if plain.len() == batch.len() {
            // New messages only: begun, written and committed in one hand-off.
            let mut conn = self.writer.acquire().await?;
            return append_messages(
                &mut conn,
                &self.kept,
                &plain,
                now,
                self.policy,
                Transaction::Own,
            )
            .await;
        }
        let mut tx = self.begin_write().await?;
        let mut results = Vec::with_capacity(batch.len());
        while results.len() < batch.len() {
            let rest = &batch[results.len()..];
            let run: Vec<NewMessage<'_>> = rest.iter().map_while(NewMessage::plain).collect();
            if run.is_empty() {
                results.push(apply_in_savepoint(&mut tx, &rest[0], now, self.policy).await?);
            } else {
                let written = append_messages(
                    &mut tx,
                    &self.kept,
                    &run,
                    now,
                    self.policy,
                    Transaction::Caller,
                )
                .await?;
                results.extend(written);
            }
        }
        tx.commit().await?;
        if batch.iter().any(|e| matches!(e, NewEvent::Delete { .. })) {
            self.after_erase().await;
        }
        Ok(results)
    }
}

/// Store a run of new messages, one statement each without a savepoint, all in one
/// hand-off (`sqlite_messages`), in `transaction`: a statement that fails changes nothing,
/// and its item gets the error if it concerns that row alone while the run goes on; any
/// other error fails the batch. A message that inserted nothing is a retry (answered with
/// its original, looked up after the run: it may be earlier in the same run) or names no
/// room.
async fn append_messages(
    conn: &mut DbConnection,
    kept: &KeptStatements,
    messages: &[NewMessage<'_>],
    now: i64,
    policy: WritePolicy,
    transaction: Transaction,
) -> StoreResult<Vec<StoreResult<Appended>>> {
    let inserted = insert_run(conn, kept, messages, now, policy, transaction).await?;
    let mut results = Vec::with_capacity(messages.len());
    for (message, outcome) in messages.iter().zip(inserted) {
        results.push(match outcome {
            Ok(Inserted::Row { id, seq }) => Ok(Appended {
                event: message.stored(id, seq, now),
                duplicate: false,
            }),
            Ok(Inserted::Nothing) => {
                retry_or_unknown_room(conn, message.sender_id, message.client_msg_id).await
            }
            Err(err) => Err(err),
        });
    }
    Ok(results)
}

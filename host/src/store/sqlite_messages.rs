//! Runs of new messages written on SQLite's writer connection through SQLite's own API, in
//! one hand-off for the whole run.
//!
//! sqlx runs each SQLite connection on a thread of its own and sends every statement's rows
//! and results back over a channel, waking the caller's task for each. For the group commit's
//! runs of new messages that traffic was a third of the SQLite thread's time (futex
//! wake-ups and context switches in the profile, `docs/benchmarks.md`). Here the caller
//! takes sqlx's own connection from its thread for the length of the run and steps one
//! prepared statement per message itself, through rusqlite on that same handle
//! ([`with_rusqlite`]): the rows stay on one thread. A batch of new messages only
//! is also begun and committed there; a mixed batch stays in the caller's sqlx
//! transaction (see [`Transaction`]). Such a batch of new messages only also turns the
//! search index's `secure-delete` off when a transaction that removed text left it on
//! ([`secure_delete_off`], migration 0020). The run's statements stay prepared from batch
//! to batch ([`with_kept_statements`]), and the run's text is indexed for search in one
//! statement after its inserts ([`insert_indexing_once`], migration 0022).

use sqlx::SqliteConnection;

use super::common::{
    NewMessage, encode_metadata, is_item_failure, not_found_on_foreign_key, refuse_row_errors,
};
use super::sqlite_raw::{KeptStatements, backend_error, sqlx_error, with_kept_statements};
use super::{StoreError, StoreResult, WritePolicy};

/// One message's statement: its `seq` is `rooms.last_seq + 1` in the same INSERT (the
/// `events_advance_room_seq` trigger moves `last_seq`, the search trigger indexes the text),
/// and a known `(sender, client_msg_id)` inserts nothing. The statement is atomic, so it
/// needs no savepoint: a failure rolls back this statement only.
const INSERT_MESSAGE: &str = "INSERT INTO events
        (room_id, seq, kind, sender_id, target, body, metadata, client_msg_id, created_at,
         search_text)
     SELECT id, last_seq + 1, 'message', ?2, NULL, ?3, ?4, ?5, ?6, ?7 FROM rooms WHERE id = ?1
     ON CONFLICT (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING
     RETURNING id, seq";

/// What became of one message of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inserted {
    /// Stored, with the `id` and `seq` the database gave it.
    Row { id: i64, seq: i64 },
    /// Nothing was inserted: a retry of a stored `(sender, client_msg_id)`, or no such room
    /// (the caller looks which).
    Nothing,
}

/// Whose transaction a run is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transaction {
    /// The caller's, already begun on the connection (a batch that mixes new messages with
    /// other writes).
    Caller,
    /// One of its own, begun (`IMMEDIATE`) and committed in the same hand-off: a batch of
    /// new messages only, the common case, then costs one hand-off in all.
    Own,
}

/// Insert `messages` in order on `conn`. Each item gets its own outcome, or its own error
/// where the database refused that row alone (a constraint, an operator's trigger, a value
/// too big); any other error (I/O, a full disk, a busy database) ends the run and is returned
/// for the whole batch. With [`Transaction::Own`] the run is committed when this returns
/// `Ok`, and rolled back otherwise; with [`Transaction::Caller`] the caller's transaction
/// may be gone after an error, as after any of sqlx's.
pub(super) async fn insert_run(
    conn: &mut SqliteConnection,
    kept: &KeptStatements,
    messages: &[NewMessage<'_>],
    now: i64,
    policy: WritePolicy,
    transaction: Transaction,
) -> StoreResult<Vec<StoreResult<Inserted>>> {
    with_kept_statements(conn, kept, |db| match transaction {
        Transaction::Caller => insert_indexing_once(db, messages, now, policy),
        Transaction::Own => {
            // Dropped without `commit` (an error), it rolls back: the connection goes back
            // to sqlx outside any transaction either way.
            let tx =
                rusqlite::Transaction::new_unchecked(db, rusqlite::TransactionBehavior::Immediate)
                    .map_err(backend_error)?;
            secure_delete_off(&tx)?;
            let outcomes = insert_indexing_once(&tx, messages, now, policy)?;
            tx.commit().map_err(backend_error)?;
            Ok(outcomes)
        }
    })
    .await
}

/// Whether the search index's `secure-delete` is on: a transaction that removed text from
/// the index turned it on (migration 0020).
const SECURE_DELETE_IS_ON: &str =
    "SELECT 1 FROM events_fts_config WHERE k = 'secure-delete' AND v = 1";

/// In a transaction of new messages only, turn the search index's `secure-delete` off if it
/// is on: it costs inserts about three times the CPU and only matters for deletes, which
/// turn it on again themselves before they remove anything (migration 0020 says how).
fn secure_delete_off(db: &rusqlite::Connection) -> StoreResult<()> {
    let on = db
        .prepare_cached(SECURE_DELETE_IS_ON)
        .and_then(|mut statement| statement.exists([]))
        .map_err(backend_error)?;
    if on {
        execute_kept(
            db,
            "INSERT INTO events_fts (events_fts, rank) VALUES ('secure-delete', 0)",
            [],
        )?;
    }
    Ok(())
}

/// Insert `messages` one statement each, and index the text of those stored for search in
/// one statement after them: FTS5 writes what it holds into a segment of its own at each
/// statement's start, so indexing row by row through the insert trigger wrote a segment per
/// message (migration 0022 says more). The trigger is off for the run, in the run's
/// transaction only, and on again before this returns, error or not.
fn insert_indexing_once(
    db: &rusqlite::Connection,
    messages: &[NewMessage<'_>],
    now: i64,
    policy: WritePolicy,
) -> StoreResult<Vec<StoreResult<Inserted>>> {
    execute_kept(db, DEFER_INDEXING, [])?;
    let mut searchable = Vec::with_capacity(messages.len());
    let run = insert_each(db, messages, now, policy, &mut searchable);
    // Rows stored before an error are indexed too: the transaction is the caller's to end.
    let indexed = index_rows(db, &searchable);
    let resumed = execute_kept(db, RESUME_INDEXING, []);
    let outcomes = run?;
    indexed?;
    resumed?;
    Ok(outcomes)
}

/// Turns the insert trigger's indexing off (migration 0022).
const DEFER_INDEXING: &str = "INSERT OR IGNORE INTO search_index_deferred (only) VALUES (1)";
/// Turns it on again.
const RESUME_INDEXING: &str = "DELETE FROM search_index_deferred";
/// Indexes the rows whose ids `?1` lists (a JSON array), as the insert trigger would have.
const INDEX_ROWS: &str = "INSERT INTO events_fts (rowid, search_text)
     SELECT id, search_text FROM events
      WHERE id IN (SELECT value FROM json_each(?1)) AND search_text IS NOT NULL";

/// Index the rows `ids` for search, in one statement.
fn index_rows(db: &rusqlite::Connection, ids: &[i64]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    execute_kept(db, INDEX_ROWS, [format!("[{}]", list.join(","))])?;
    Ok(())
}

/// Run `sql` with `params` as a statement kept prepared (`with_kept_statements`).
fn execute_kept(
    db: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<usize> {
    db.prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map_err(backend_error)
}

/// Insert `messages` one statement each; the ids of the rows stored with search text are
/// pushed to `searchable` as they are stored.
fn insert_each(
    db: &rusqlite::Connection,
    messages: &[NewMessage<'_>],
    now: i64,
    policy: WritePolicy,
    searchable: &mut Vec<i64>,
) -> StoreResult<Vec<StoreResult<Inserted>>> {
    let mut insert = db.prepare_cached(INSERT_MESSAGE).map_err(backend_error)?;
    let mut outcomes = Vec::with_capacity(messages.len());
    for message in messages {
        let search_text = policy.search_text(message.body);
        let mut rows = insert
            .query(rusqlite::params![
                message.room_id,
                message.sender_id,
                message.body,
                encode_metadata(message.metadata),
                message.client_msg_id,
                now,
                search_text,
            ])
            .map_err(backend_error)?;
        // SQLite makes every change of an INSERT … RETURNING at its first step; dropping
        // `rows` resets the statement for the next message.
        let outcome = match rows.next() {
            Ok(Some(row)) => {
                let id = row.get(0).map_err(backend_error)?;
                if search_text.is_some() {
                    searchable.push(id);
                }
                Inserted::Row {
                    id,
                    seq: row.get(1).map_err(backend_error)?,
                }
            }
            Ok(None) => Inserted::Nothing,
            Err(err) => match item_error(err) {
                Ok(own) => {
                    outcomes.push(Err(own));
                    continue;
                }
                Err(batch) => return Err(batch),
            },
        };
        outcomes.push(Ok(outcome));
    }
    Ok(outcomes)
}

/// A row's own refusal (`Ok`: the item's error, the run goes on) or an error that ends the
/// batch (`Err`): the classification every other insert of an event gets.
fn item_error(err: rusqlite::Error) -> Result<StoreError, StoreError> {
    match refuse_row_errors(not_found_on_foreign_key(sqlx_error(err))) {
        own if is_item_failure(&own) => Ok(own),
        batch => Err(batch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(extended_code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(extended_code),
            Some("refused".into()),
        )
    }

    #[test]
    fn a_rows_own_refusals_stay_its_own_and_the_rest_end_the_batch() {
        assert!(matches!(
            item_error(failure(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)),
            Ok(StoreError::NotFound)
        ));
        for own in [
            rusqlite::ffi::SQLITE_CONSTRAINT_CHECK,
            rusqlite::ffi::SQLITE_CONSTRAINT_TRIGGER,
            rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL,
            rusqlite::ffi::SQLITE_TOOBIG,
            rusqlite::ffi::SQLITE_MISMATCH,
        ] {
            assert!(
                matches!(item_error(failure(own)), Ok(StoreError::Refused(_))),
                "code {own}"
            );
        }
        for batch in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR_WRITE,
            rusqlite::ffi::SQLITE_BUSY,
        ] {
            assert!(
                matches!(
                    item_error(failure(batch)),
                    Err(StoreError::Backend(sqlx::Error::Database(_)))
                ),
                "code {batch}"
            );
        }
    }
}

//! SQLite's own API (rusqlite) on the connection sqlx opened, for work that would otherwise
//! cross sqlx's connection thread once per statement: runs of new messages
//! (`sqlite_messages`) and the search index's merge steps (`sqlite_index_merge`).
//!
//! sqlx runs each SQLite connection on a thread of its own and sends every statement's rows
//! and results back over a channel, waking the caller's task for each. [`with_rusqlite`]
//! takes sqlx's connection from its thread for the length of a closure (`lock_handle`, which
//! sqlx offers for this) and runs the closure on that same handle through rusqlite;
//! [`with_kept_statements`] does the same and keeps the statements it prepares for the next
//! call on that connection, finalized just before sqlx closes it. Errors come back as
//! sqlx's own would, so callers classify them one way.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::SqliteConnection;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::sqlite::LockedSqliteHandle;

use super::{StoreError, StoreResult};

/// Run `work` on `conn`'s SQLite handle through rusqlite, sqlx's thread kept off it
/// meanwhile. The work is CPU and, when it commits, disk: on a multi-threaded runtime tokio
/// is told, so its other tasks move to another worker meanwhile; on a single-threaded one
/// (the group commit's writer has one of its own) it simply runs. Statements it prepares
/// are finalized when it returns; [`with_kept_statements`] keeps them.
pub(super) async fn with_rusqlite<T>(
    conn: &mut SqliteConnection,
    work: impl FnOnce(&rusqlite::Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut handle = conn.lock_handle().await?;
    let db = borrow(&mut handle)?;
    run_here(|| work(&db))
}

/// Like [`with_rusqlite`], but the statements `work` prepares with `prepare_cached` stay
/// prepared for the next call on the same connection, in `kept`: the group commit runs the
/// same few statements for every batch, and preparing them again each time (an INSERT is
/// compiled with its triggers) took a tenth of the writer thread's time at half load, more
/// once a run was indexed in statements of its own (`docs/benchmarks.md`, "Message path,
/// ninth step"). `kept` serves one connection (the writer pool has one); on another, the
/// statements are prepared for the call only.
pub(super) async fn with_kept_statements<T>(
    conn: &mut SqliteConnection,
    kept: &KeptStatements,
    work: impl FnOnce(&rusqlite::Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut handle = conn.lock_handle().await?;
    let address = handle.as_raw_handle().as_ptr() as usize;
    let mut slot = kept.0.lock().unwrap_or_else(PoisonError::into_inner);
    match slot.as_ref().map(|k| k.address) {
        Some(held) if held == address => {}
        Some(_) => {
            drop(slot);
            let db = borrow(&mut handle)?;
            return run_here(|| work(&db));
        }
        None => {
            let db = borrow(&mut handle)?;
            let release = ReleaseOnClose {
                kept: kept.clone(),
                address,
            };
            // sqlx drops a connection's hooks before it closes the connection (as it
            // finalizes its own statements first): the hook's closure owns `release`, so the
            // kept statements are finalized then, and the close finds none left open. The
            // hook itself does nothing; nothing else here sets one. An empty slot means this
            // connection holds no hook of ours (a hook empties the slot only as it goes),
            // so replacing the hook drops no `ReleaseOnClose` while the slot is locked.
            handle.set_rollback_hook(move || {
                let _owned_until_close = &release;
            });
            *slot = Some(Kept { address, db });
        }
    }
    let Some(kept) = slot.as_ref() else {
        unreachable!("the slot holds this connection's statements")
    };
    run_here(|| work(&kept.db))
}

/// The connection `handle` has locked, seen through rusqlite.
///
/// The result must be used only while `handle`, or a later lock of the same connection, is
/// held, and dropped before sqlx closes the connection: [`with_rusqlite`] drops it before its
/// lock, [`with_kept_statements`] through [`ReleaseOnClose`].
fn borrow(handle: &mut LockedSqliteHandle<'_>) -> StoreResult<rusqlite::Connection> {
    let raw = handle.as_raw_handle();
    // SAFETY: `raw` is the live handle of the connection sqlx opened, and the lock keeps
    // sqlx's thread off it while it is held: so the handle is valid and this thread its only
    // user meanwhile (sqlx opens it for use from any thread, one at a time). `from_handle`
    // does not take ownership: dropping the result finalizes only the statements prepared
    // through it and never closes the connection.
    #[allow(unsafe_code)]
    unsafe { rusqlite::Connection::from_handle(raw.as_ptr()) }.map_err(backend_error)
}

/// Statements kept prepared on one connection between calls of [`with_kept_statements`].
#[derive(Debug, Clone, Default)]
pub(super) struct KeptStatements(Arc<Mutex<Option<Kept>>>);

/// The connection the statements were prepared on, seen through rusqlite, whose statement
/// cache holds them.
struct Kept {
    /// The SQLite handle's address: a call on another connection prepares anew.
    address: usize,
    db: rusqlite::Connection,
}

impl fmt::Debug for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kept")
            .field("address", &self.address)
            .finish()
    }
}

/// Finalizes the statements kept for one connection when sqlx drops the connection's hooks,
/// just before it closes it: SQLite refuses to close a connection with statements left
/// open (and sqlx panics then).
struct ReleaseOnClose {
    kept: KeptStatements,
    address: usize,
}

impl Drop for ReleaseOnClose {
    fn drop(&mut self) {
        let mut slot = self.kept.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|k| k.address == self.address) {
            *slot = None;
        }
    }
}

/// Run `work` here, telling a multi-threaded runtime to move its other tasks meanwhile.
fn run_here<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|rt| rt.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

pub(super) fn backend_error(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(sqlx_error(err))
}

/// A rusqlite error as sqlx would report it: the database's own errors keep their extended
/// result code (so the store and the group commit classify them exactly as they classify
/// sqlx's), anything else is a protocol error (a column of an unexpected type).
pub(super) fn sqlx_error(err: rusqlite::Error) -> sqlx::Error {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(SqliteFailure {
                extended_code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// An error SQLite returned, in the form sqlx's own SQLite errors take.
#[derive(Debug)]
struct SqliteFailure {
    extended_code: i32,
    message: String,
}

impl fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for SqliteFailure {}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    /// The extended result code, as sqlx's SQLite driver gives it.
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.extended_code.to_string()))
    }

    fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => ErrorKind::UniqueViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;
    use sqlx::Connection;

    use super::*;

    /// How often the kept statement ran before, seen from inside the next call.
    async fn runs_before(conn: &mut SqliteConnection, kept: &KeptStatements) -> i32 {
        with_kept_statements(conn, kept, |db| {
            let mut statement = db.prepare_cached("SELECT 42").map_err(backend_error)?;
            let runs = statement.get_status(StatementStatus::Run);
            let answer: i64 = statement
                .query_row([], |row| row.get(0))
                .map_err(backend_error)?;
            assert_eq!(answer, 42);
            Ok(runs)
        })
        .await
        .expect("kept statement")
    }

    #[tokio::test]
    async fn kept_statements_are_prepared_once_and_finalized_before_sqlx_closes() {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        let kept = KeptStatements::default();
        for earlier_runs in 0..3 {
            assert_eq!(
                runs_before(&mut conn, &kept).await,
                earlier_runs,
                "the statement was prepared anew"
            );
        }
        // sqlx still runs its own statements on the connection between calls.
        let through_sqlx: i64 = sqlx::query_scalar("SELECT 7")
            .fetch_one(&mut conn)
            .await
            .expect("sqlx");
        assert_eq!(through_sqlx, 7);
        assert_eq!(runs_before(&mut conn, &kept).await, 3);

        // SQLite refuses to close a connection with a statement left open, and sqlx's
        // connection thread panics then: the close would fail as a crashed worker.
        conn.close().await.expect("closed, no statement left open");
        assert!(
            kept.0.lock().expect("lock").is_none(),
            "the closed connection's statements are still held"
        );
    }

    #[tokio::test]
    async fn another_connection_prepares_for_the_call_only() {
        let mut first = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        let mut second = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        let kept = KeptStatements::default();
        assert_eq!(runs_before(&mut first, &kept).await, 0);
        for _ in 0..2 {
            assert_eq!(runs_before(&mut second, &kept).await, 0);
        }
        assert_eq!(runs_before(&mut first, &kept).await, 1);
        second.close().await.expect("close the second");
        assert_eq!(runs_before(&mut first, &kept).await, 2, "still kept");
        first.close().await.expect("close the first");
        assert!(kept.0.lock().expect("lock").is_none());
    }
}

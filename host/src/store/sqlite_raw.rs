//! SQLite's own API (rusqlite) on the connection sqlx opened, for work that would otherwise
//! cross sqlx's connection thread once per statement: runs of new messages
//! (`sqlite_messages`) and the search index's merge steps (`sqlite_index_merge`).
//!
//! sqlx runs each SQLite connection on a thread of its own and sends every statement's rows
//! and results back over a channel, waking the caller's task for each. [`with_rusqlite`]
//! takes sqlx's connection from its thread for the length of a closure (`lock_handle`, which
//! sqlx offers for this) and runs the closure on that same handle through rusqlite. Errors
//! come back as sqlx's own would, so callers classify them one way.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use sqlx::SqliteConnection;
use sqlx::error::{DatabaseError, ErrorKind};

use super::{StoreError, StoreResult};

/// Run `work` on `conn`'s SQLite handle through rusqlite, sqlx's thread kept off it
/// meanwhile. The work is CPU and, when it commits, disk: on a multi-threaded runtime tokio
/// is told, so its other tasks move to another worker meanwhile; on a single-threaded one
/// (the group commit's writer has one of its own) it simply runs.
pub(super) async fn with_rusqlite<T>(
    conn: &mut SqliteConnection,
    work: impl FnOnce(&rusqlite::Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle();
    let run = || {
        // SAFETY: `raw` is the live handle of the connection sqlx opened, and the lock
        // taken above keeps sqlx's thread off it until `handle` drops, after this closure
        // returns: so the handle is valid and this thread its only user meanwhile (sqlx opens
        // it for use from any thread, one at a time). `from_handle` does not take ownership:
        // dropping `db` finalizes only the statements prepared through it and never closes
        // the connection.
        #[allow(unsafe_code)]
        let db =
            unsafe { rusqlite::Connection::from_handle(raw.as_ptr()) }.map_err(backend_error)?;
        work(&db)
    };
    match tokio::runtime::Handle::try_current().map(|rt| rt.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
        _ => run(),
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

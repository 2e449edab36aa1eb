//! The database schema's version: which migrations this binary carries, which a database
//! has applied, and the upgrade rules around them.
//!
//! Migrations are numbered SQL files (`host/migrations/{sqlite,postgres}/NNNN_*.sql`),
//! embedded in the binary and applied in order at start; sqlx records each in the
//! `_sqlx_migrations` table with its checksum. This module adds what an operator upgrading on
//! their own schedule needs around that:
//! - [`status`] reads, without changing anything, what is applied and what would be
//!   (`switchboard migrate --status` and `--dry-run`);
//! - [`refuse_newer`] runs before any migration: a database a newer binary has upgraded
//!   (a version this binary does not know) is refused with a message saying which versions,
//!   instead of sqlx's "migration N was previously applied but is missing", and before a
//!   single statement of this binary's runs against it. Rolling back a binary is therefore
//!   safe to try: it stops, it does not write.

use std::str::FromStr as _;

use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection as _, PgConnection, SqliteConnection};

use super::{StoreError, StoreResult};

/// The SQLite schema's migrations, embedded at build time.
pub static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
/// The PostgreSQL schema's migrations, embedded at build time.
pub static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// The table sqlx keeps its record of applied migrations in.
const APPLIED_TABLE: &str = "_sqlx_migrations";

/// A migration, as this binary carries it or as a database recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
}

/// A migration the database recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
    /// When it was applied, as the database wrote it (UTC).
    pub installed_on: String,
    /// `false`: it failed part-way and was never completed (the database needs attention).
    pub success: bool,
    /// Its text differs from the one this binary carries under the same version.
    pub checksum_differs: bool,
}

/// Where a database's schema stands against this binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaStatus {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The database does not exist yet (SQLite file missing) or has no migration table.
    pub fresh: bool,
    /// The newest version this binary carries.
    pub binary_version: i64,
    /// The newest version the database has applied (0: none).
    pub database_version: i64,
    pub applied: Vec<AppliedMigration>,
    /// What the next start (or `switchboard migrate`) would apply, in order.
    pub pending: Vec<MigrationInfo>,
    /// Versions the database has that this binary does not know: a newer binary upgraded it.
    pub unknown: Vec<i64>,
}

impl SchemaStatus {
    /// The database was upgraded by a newer binary: this one must not run on it.
    pub fn is_newer_than_binary(&self) -> bool {
        !self.unknown.is_empty()
    }

    /// A migration failed part-way, or an applied one was changed since: starting would
    /// fail (sqlx refuses both), and an operator must look before anything else runs.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.is_newer_than_binary() {
            problems.push(newer_message(
                self.backend,
                self.database_version,
                self.binary_version,
                &self.unknown,
            ));
        }
        for m in &self.applied {
            if !m.success {
                problems.push(format!(
                    "migration {} ({}) failed part-way and was never completed: restore the \
                     backup taken before the upgrade",
                    m.version, m.description
                ));
            }
            if m.checksum_differs {
                problems.push(format!(
                    "migration {} ({}) was applied from a different text than this binary \
                     carries: the database was migrated by a modified build",
                    m.version, m.description
                ));
            }
        }
        problems
    }
}

fn newer_message(backend: &str, database: i64, binary: i64, unknown: &[i64]) -> String {
    let versions: Vec<String> = unknown.iter().map(i64::to_string).collect();
    format!(
        "the {backend} database's schema is at version {database}, newer than this binary's \
         {binary} (it has migration(s) {} that this binary does not know): a newer Switchboard \
         has upgraded it. Run that version or a newer one, or restore the backup taken before \
         the upgrade; this binary changed nothing",
        versions.join(", ")
    )
}

/// The migrations for a database URL's backend.
pub fn migrator_for(url: &str) -> StoreResult<(&'static str, &'static Migrator)> {
    if url.starts_with("sqlite:") {
        Ok(("sqlite", &SQLITE))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(("postgres", &POSTGRES))
    } else {
        Err(StoreError::UnsupportedUrl(super::redact_url(url)))
    }
}

/// Read where the database at `url` stands, changing nothing: a missing SQLite file is not
/// created, and the migration table is only read.
pub async fn status(url: &str) -> StoreResult<SchemaStatus> {
    let (backend, migrator) = migrator_for(url)?;
    let rows = if backend == "sqlite" {
        let options = SqliteConnectOptions::from_str(url)?;
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        if !memory && !options.get_filename().exists() {
            None
        } else {
            let mut conn = SqliteConnection::connect_with(&options.read_only(true)).await?;
            let exists: Option<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
            )
            .bind(APPLIED_TABLE)
            .fetch_optional(&mut conn)
            .await?;
            let rows = match exists {
                Some(_) => Some(
                    sqlx::query_as::<_, AppliedRow>(&applied_query("CAST(installed_on AS TEXT)"))
                        .fetch_all(&mut conn)
                        .await?,
                ),
                None => None,
            };
            conn.close().await?;
            rows
        }
    } else {
        let mut conn = PgConnection::connect(url).await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&mut conn)
                .await?;
        let rows = match exists {
            Some(_) => Some(
                sqlx::query_as::<_, AppliedRow>(&applied_query("installed_on::text"))
                    .fetch_all(&mut conn)
                    .await?,
            ),
            None => None,
        };
        conn.close().await?;
        rows
    };
    Ok(compare(backend, migrator, rows))
}

/// Apply the pending migrations to a scratch copy of the SQLite database at `url` (taken by
/// `VACUUM INTO`, consistent even while a server writes) and return how long they took. The
/// database itself is only read.
pub async fn dry_run_sqlite(url: &str) -> StoreResult<std::time::Duration> {
    let options = SqliteConnectOptions::from_str(url)?;
    let scratch = tempfile::tempdir().map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))?;
    let copy = scratch.path().join("dry-run.db");
    let mut source = SqliteConnection::connect_with(&options.read_only(true)).await?;
    sqlx::query("VACUUM INTO ?")
        .bind(copy.to_string_lossy().as_ref())
        .execute(&mut source)
        .await?;
    source.close().await?;
    let mut target = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&copy)
            .foreign_keys(true),
    )
    .await?;
    let started = std::time::Instant::now();
    SQLITE.run(&mut target).await?;
    let took = started.elapsed();
    target.close().await?;
    Ok(took)
}

/// The `_sqlx_migrations` rows, oldest first; `installed_on` is read as text through the
/// backend's own cast.
fn applied_query(installed_on_as_text: &str) -> String {
    format!(
        "SELECT version, description, {installed_on_as_text} AS installed_on, success, checksum \
         FROM _sqlx_migrations ORDER BY version"
    )
}

/// One `_sqlx_migrations` row.
#[derive(sqlx::FromRow)]
struct AppliedRow {
    version: i64,
    description: String,
    installed_on: Option<String>,
    success: bool,
    checksum: Vec<u8>,
}

/// Set what a database recorded (`None`: nothing yet) beside what the binary carries.
fn compare(
    backend: &'static str,
    migrator: &Migrator,
    rows: Option<Vec<AppliedRow>>,
) -> SchemaStatus {
    let carried = || {
        migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
    };
    let binary_version = carried().map(|m| m.version).max().unwrap_or(0);
    let fresh = rows.is_none();
    let rows = rows.unwrap_or_default();
    let applied: Vec<AppliedMigration> = rows
        .iter()
        .map(|row| {
            let ours = carried().find(|m| m.version == row.version);
            AppliedMigration {
                version: row.version,
                description: row.description.clone(),
                installed_on: row.installed_on.clone().unwrap_or_default(),
                success: row.success,
                checksum_differs: ours.is_some_and(|m| *m.checksum != *row.checksum),
            }
        })
        .collect();
    let pending = carried()
        .filter(|m| !rows.iter().any(|row| row.version == m.version))
        .map(|m| MigrationInfo {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect();
    let unknown = rows
        .iter()
        .filter(|row| !carried().any(|m| m.version == row.version))
        .map(|row| row.version)
        .collect();
    SchemaStatus {
        backend,
        fresh,
        binary_version,
        database_version: rows.iter().map(|r| r.version).max().unwrap_or(0),
        applied,
        pending,
        unknown,
    }
}

/// Refuse, before any migration runs, a SQLite database that a newer binary has upgraded.
pub(super) async fn refuse_newer_sqlite<'c>(
    db: impl sqlx::Executor<'c, Database = sqlx::Sqlite>,
) -> StoreResult<()> {
    let versions = sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations")
        .fetch_all(db)
        .await;
    refuse_newer("sqlite", &SQLITE, versions)
}

/// Refuse, before any migration runs, a PostgreSQL database that a newer binary has upgraded.
pub(super) async fn refuse_newer_postgres<'c>(
    db: impl sqlx::Executor<'c, Database = sqlx::Postgres>,
) -> StoreResult<()> {
    let versions = sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations")
        .fetch_all(db)
        .await;
    refuse_newer("postgres", &POSTGRES, versions)
}

/// The versions a database recorded (an error naming a missing table: none yet) against the
/// migrations this binary carries.
fn refuse_newer(
    backend: &'static str,
    migrator: &Migrator,
    versions: Result<Vec<i64>, sqlx::Error>,
) -> StoreResult<()> {
    let versions = match versions {
        Ok(versions) => versions,
        Err(sqlx::Error::Database(e)) if is_missing_table(e.message()) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let known = |v: i64| migrator.iter().any(|m| m.version == v);
    let unknown: Vec<i64> = versions.iter().copied().filter(|v| !known(*v)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let binary = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let database = versions.iter().copied().max().unwrap_or(0);
    Err(StoreError::SchemaNewer(newer_message(
        backend, database, binary, &unknown,
    )))
}

fn is_missing_table(message: &str) -> bool {
    // SQLite: "no such table: _sqlx_migrations"; PostgreSQL: relation "…" does not exist.
    message.contains("no such table") || message.contains("does not exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: i64, checksum: Vec<u8>) -> AppliedRow {
        AppliedRow {
            version,
            description: format!("m{version}"),
            installed_on: None,
            success: true,
            checksum,
        }
    }

    fn checksum_of(version: i64) -> Vec<u8> {
        SQLITE
            .iter()
            .find(|m| m.version == version)
            .map(|m| m.checksum.to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn a_fresh_database_has_every_migration_pending() {
        let status = compare("sqlite", &SQLITE, None);
        assert!(status.fresh);
        assert_eq!(status.database_version, 0);
        assert_eq!(status.pending.len(), SQLITE.iter().count());
        assert_eq!(status.pending.first().map(|m| m.version), Some(1));
        assert!(status.problems().is_empty());
    }

    #[test]
    fn an_older_database_lists_what_is_pending_in_order() {
        let rows = (1..=3).map(|v| row(v, checksum_of(v))).collect();
        let status = compare("sqlite", &SQLITE, Some(rows));
        assert_eq!(status.database_version, 3);
        assert_eq!(status.pending.first().map(|m| m.version), Some(4));
        assert_eq!(status.pending.len(), SQLITE.iter().count() - 3);
        assert!(status.problems().is_empty(), "{:?}", status.problems());
    }

    #[test]
    fn a_newer_database_is_named_with_its_unknown_versions() {
        let newest = SQLITE.iter().map(|m| m.version).max().unwrap_or(0);
        let mut rows: Vec<AppliedRow> = (1..=newest).map(|v| row(v, checksum_of(v))).collect();
        rows.push(row(newest + 1, vec![1, 2, 3]));
        let status = compare("sqlite", &SQLITE, Some(rows));
        assert!(status.is_newer_than_binary());
        assert_eq!(status.unknown, vec![newest + 1]);
        let problems = status.problems().join("\n");
        assert!(problems.contains("newer than this binary's"), "{problems}");
        assert!(problems.contains(&format!("{}", newest + 1)), "{problems}");
    }

    #[test]
    fn a_changed_or_failed_migration_is_a_problem() {
        let mut failed = row(2, checksum_of(2));
        failed.success = false;
        let status = compare("sqlite", &SQLITE, Some(vec![row(1, vec![0; 4]), failed]));
        let problems = status.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("different text"), "{problems:?}");
        assert!(problems[1].contains("failed part-way"), "{problems:?}");
    }
}

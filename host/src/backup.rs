//! Backups an operator can trust: `switchboard backup DEST`, `backup verify SRC` and
//! `restore SRC`.
//!
//! A backup is a directory: the database (SQLite: a consistent copy made by `VACUUM INTO`
//! while the server runs; PostgreSQL: a `pg_dump` custom archive), the files the database
//! names (local storage), the data directory's keys (`audit.key`, which signs the audit
//! chain's checkpoints, and `jwt.secret`), and `manifest.json` listing every one of them with
//! its size and SHA-256. Plugin kv, the audit chain, holds and everything else live in the
//! database and come with it.
//!
//! Rules that make a backup safe to rely on:
//! - **Consistent while messages flow.** The database copy is one snapshot: every message
//!   acknowledged before the backup started is in it (acks follow commits). Files are copied
//!   after the snapshot and are immutable once stored; one deleted in between is listed as
//!   missing, not silently absent. On PostgreSQL the file list is read in the very snapshot
//!   `pg_dump` dumps (`--snapshot`).
//! - **All or nothing.** It is written into a hidden sibling directory and renamed into
//!   place at the end; a failure (a full disk, an unwritable path) removes what was written
//!   and leaves DEST absent.
//! - **Checked before use.** `verify` re-hashes every entry, checks the SQLite file's
//!   integrity and the audit chain against its signed checkpoints on a scratch copy, and that
//!   every stored file the database names is there. `restore` runs the same checks first and
//!   only writes into a data directory (or an empty PostgreSQL database) that holds no
//!   installation, again through temporary names renamed at the end.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection as _, PgConnection, SqliteConnection};

use crate::config::Config;
use crate::store::{self, StoreOptions, schema};

/// The layout version of a backup directory this binary writes and reads.
pub const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const SQLITE_FILE: &str = "switchboard.db";
const PG_DUMP_FILE: &str = "postgres.dump";
const FILES_DIR: &str = "files";
/// The installed plugins (`plugins.dir`): components, signatures and their `plugin.toml`,
/// whose settings the admin API edits in place.
const PLUGINS_DIR: &str = "plugins";
/// The data directory's keys: without `audit.key` a restored server signs new checkpoints
/// with a new key (and old ones no longer verify); without `jwt.secret` everyone signs in
/// again.
const KEY_FILES: [&str; 2] = ["audit.key", "jwt.secret"];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists: a backup never overwrites; choose a new destination")]
    DestinationExists(PathBuf),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the database: {0}")]
    Store(#[from] store::StoreError),
    #[error("the database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("{0}")]
    Tool(String),
    #[error("{path} is not a usable backup: {reason}")]
    NotABackup { path: PathBuf, reason: String },
    #[error("the backup failed verification, nothing was restored:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    TargetInUse(String),
    #[error("the audit key: {0}")]
    AuditKey(#[from] crate::audit::AuditKeyError),
}

type Result<T> = std::result::Result<T, BackupError>;

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

/// What `manifest.json` says about a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    /// The binary that wrote it.
    pub switchboard_version: String,
    /// Milliseconds since the epoch when the database snapshot was taken.
    pub created_at: i64,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The newest migration the database had applied.
    pub schema_version: i64,
    /// `local` (copied), `s3` (not copied: the bucket is backed up by its own means) .
    pub files_storage: String,
    /// Every file of the backup but the manifest, with its size and SHA-256.
    pub entries: Vec<Entry>,
    /// Storage keys of stored files the snapshot names that were deleted before they
    /// could be copied (a deletion racing the backup); their rows are in the database.
    pub files_missing: Vec<String>,
    /// Events and audit records in the snapshot.
    pub events: i64,
    pub audit_records: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Where the installation's state lives, read from its configuration.
#[derive(Debug, Clone)]
struct Installation {
    url: String,
    /// The SQLite file (None on PostgreSQL).
    sqlite_file: Option<PathBuf>,
    data_dir: PathBuf,
    /// `<data_dir>/files` when files are kept locally.
    files_dir: Option<PathBuf>,
    /// `plugins.dir`, when plugins are configured.
    plugins_dir: Option<PathBuf>,
}

impl Installation {
    fn of(config: &Config) -> Result<Self> {
        let url = config.database_url();
        let (backend, _) = schema::migrator_for(&url)?;
        let sqlite_file = if backend == "sqlite" {
            if url.contains(":memory:") || url.contains("mode=memory") {
                return Err(BackupError::Tool(
                    "the database is in memory: there is nothing on disk to back up".into(),
                ));
            }
            Some(
                std::str::FromStr::from_str(&url)
                    .map(|o: SqliteConnectOptions| o.get_filename().to_path_buf())?,
            )
        } else {
            None
        };
        Ok(Self {
            url,
            sqlite_file,
            data_dir: config.data_dir.clone(),
            files_dir: config
                .files
                .s3
                .is_none()
                .then(|| config.data_dir.join(FILES_DIR)),
            plugins_dir: config.plugins.dir.clone(),
        })
    }

    fn backend(&self) -> &'static str {
        if self.sqlite_file.is_some() {
            "sqlite"
        } else {
            "postgres"
        }
    }
}

/// What a finished backup holds.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub bytes: u64,
}

/// Write a backup of the installation `config` describes into `dest` (which must not exist).
pub async fn backup(config: &Config, dest: &Path) -> Result<BackupSummary> {
    let installation = Installation::of(config)?;
    if dest.exists() {
        return Err(BackupError::DestinationExists(dest.to_path_buf()));
    }
    let partial = partial_path(dest)?;
    std::fs::create_dir(&partial).map_err(io("creating", &partial))?;
    set_private(&partial, 0o700);
    let written = write_backup(&installation, &partial).await;
    let manifest = match written {
        Ok(manifest) => manifest,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(err);
        }
    };
    let finish = || -> Result<()> {
        std::fs::rename(&partial, dest).map_err(io("moving the backup into", dest))?;
        if let Some(parent) = dest.parent() {
            sync_dir(parent);
        }
        Ok(())
    };
    if let Err(err) = finish() {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(err);
    }
    let bytes = manifest.entries.iter().map(|e| e.size).sum();
    Ok(BackupSummary {
        path: dest.to_path_buf(),
        manifest,
        bytes,
    })
}

/// `DEST`'s hidden sibling the backup is written into.
fn partial_path(dest: &Path) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| BackupError::Tool(format!("{} names no directory", dest.display())))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

async fn write_backup(installation: &Installation, dir: &Path) -> Result<Manifest> {
    let created_at = crate::store::now_millis();
    let mut entries = Vec::new();
    let snapshot = match &installation.sqlite_file {
        Some(file) => snapshot_sqlite(file, dir).await?,
        None => snapshot_postgres(&installation.url, dir).await?,
    };
    entries.push(hash_entry(dir, &snapshot.database_entry)?);

    let mut files_missing = Vec::new();
    if let Some(files_dir) = &installation.files_dir {
        for key in &snapshot.file_keys {
            for (name, required) in [(key.clone(), true), (format!("{key}.thumb"), false)] {
                match copy_entry(&files_dir.join(&name), dir, format!("{FILES_DIR}/{name}")) {
                    Ok(entry) => entries.push(entry),
                    Err(BackupError::Io { source: e, .. })
                        if e.kind() == std::io::ErrorKind::NotFound =>
                    {
                        if required {
                            files_missing.push(key.clone());
                        }
                    }
                    Err(err) => return Err(err),
                }
            }
        }
    }
    if let Some(plugins) = installation.plugins_dir.as_ref().filter(|d| d.is_dir()) {
        for file in walk(plugins) {
            let Ok(relative) = file.strip_prefix(plugins) else {
                continue;
            };
            let relative = format!("{PLUGINS_DIR}/{}", relative.to_string_lossy());
            entries.push(copy_entry(&file, dir, relative)?);
        }
    }
    for name in KEY_FILES {
        let source = installation.data_dir.join(name);
        if source.exists() {
            entries.push(copy_entry(&source, dir, name.to_string())?);
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        switchboard_version: env!("CARGO_PKG_VERSION").into(),
        created_at,
        backend: installation.backend().into(),
        schema_version: snapshot.schema_version,
        files_storage: if installation.files_dir.is_some() {
            "local"
        } else {
            "s3"
        }
        .into(),
        entries,
        files_missing,
        events: snapshot.events,
        audit_records: snapshot.audit_records,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Tool(format!("writing the manifest: {e}")))?;
    let manifest_path = dir.join(MANIFEST);
    crate::private_files::write_new(&manifest_path, &text)
        .map_err(io("writing", &manifest_path))?;
    sync_dir(dir);
    Ok(manifest)
}

/// The database copy and what was read from the same snapshot.
struct Snapshot {
    database_entry: String,
    schema_version: i64,
    file_keys: Vec<String>,
    events: i64,
    audit_records: i64,
}

/// The snapshot's contents the manifest and the file copy need.
const SNAPSHOT_QUERIES: (&str, &str, &str, &str) = (
    "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
    "SELECT storage_key FROM files ORDER BY id",
    "SELECT COUNT(*) FROM events",
    "SELECT COUNT(*) FROM audit",
);

async fn snapshot_sqlite(file: &Path, dir: &Path) -> Result<Snapshot> {
    if !file.exists() {
        return Err(BackupError::Tool(format!(
            "no database at {}: nothing to back up (check data_dir / database_url)",
            file.display()
        )));
    }
    let url = format!("sqlite://{}", file.display());
    refuse_newer_than_binary(&url).await?;
    let mut source = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(file)
            .read_only(true)
            .busy_timeout(std::time::Duration::from_secs(30)),
    )
    .await?;
    let target = dir.join(SQLITE_FILE);
    // One read transaction copies a consistent image of the whole database, while the
    // server goes on writing through WAL.
    sqlx::query("VACUUM INTO ?")
        .bind(target.to_string_lossy().as_ref())
        .execute(&mut source)
        .await?;
    source.close().await?;
    set_private(&target, 0o600);
    sync_file(&target)?;

    let mut copy = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&target)
            .read_only(true),
    )
    .await?;
    let (version, keys, events, audit) = SNAPSHOT_QUERIES;
    let snapshot = Snapshot {
        database_entry: SQLITE_FILE.into(),
        schema_version: sqlx::query_scalar(version).fetch_one(&mut copy).await?,
        file_keys: sqlx::query_scalar(keys).fetch_all(&mut copy).await?,
        events: sqlx::query_scalar(events).fetch_one(&mut copy).await?,
        audit_records: sqlx::query_scalar(audit).fetch_one(&mut copy).await?,
    };
    copy.close().await?;
    Ok(snapshot)
}

async fn snapshot_postgres(url: &str, dir: &Path) -> Result<Snapshot> {
    refuse_newer_than_binary(url).await?;
    let mut conn = PgConnection::connect(url).await?;
    // Hold a snapshot open, read the file list in it, and have pg_dump dump exactly it.
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut conn)
        .await?;
    let snapshot_id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await?;
    let (version, keys, events, audit) = SNAPSHOT_QUERIES;
    let schema_version: i64 = sqlx::query_scalar(version).fetch_one(&mut conn).await?;
    let file_keys: Vec<String> = sqlx::query_scalar(keys).fetch_all(&mut conn).await?;
    let events: i64 = sqlx::query_scalar(events).fetch_one(&mut conn).await?;
    let audit_records: i64 = sqlx::query_scalar(audit).fetch_one(&mut conn).await?;
    let target = dir.join(PG_DUMP_FILE);
    let output = tokio::process::Command::new("pg_dump")
        .arg("--format=custom")
        .arg("--no-owner")
        .arg(format!("--snapshot={snapshot_id}"))
        .arg("--file")
        .arg(&target)
        .arg(format!("--dbname={url}"))
        .output()
        .await
        .map_err(|e| {
            BackupError::Tool(format!(
                "running pg_dump ({e}): install PostgreSQL's client tools (Debian: \
                 postgresql-client, the server's major version or newer)"
            ))
        })?;
    sqlx::query("COMMIT").execute(&mut conn).await?;
    conn.close().await?;
    if !output.status.success() {
        return Err(BackupError::Tool(format!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    set_private(&target, 0o600);
    sync_file(&target)?;
    Ok(Snapshot {
        database_entry: PG_DUMP_FILE.into(),
        schema_version,
        file_keys,
        events,
        audit_records,
    })
}

/// A backup taken by an older binary of a database a newer one upgraded could not be
/// checked or restored by it: refuse at once, saying why.
async fn refuse_newer_than_binary(url: &str) -> Result<()> {
    let status = schema::status(url).await?;
    if status.is_newer_than_binary() {
        return Err(BackupError::Tool(status.problems().join("; ")));
    }
    Ok(())
}

/// What `verify` found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub manifest: Manifest,
    /// Empty: the backup is sound.
    pub problems: Vec<String>,
    /// The audit chain's check on a scratch copy (SQLite backups).
    pub audit: Option<crate::audit::VerifyReport>,
}

impl VerifyReport {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check a backup without changing it: every entry's size and hash, nothing extra or
/// missing, the database's integrity, its schema against this binary, the audit chain
/// against its checkpoints, and that each stored file the database names was copied.
pub async fn verify(config: &Config, src: &Path) -> Result<VerifyReport> {
    let manifest = read_manifest(src)?;
    let mut problems = Vec::new();
    check_entries(src, &manifest, &mut problems);
    let mut audit = None;
    match manifest.backend.as_str() {
        "sqlite" => {
            if problems.is_empty() {
                audit = check_sqlite_copy(config, src, &manifest, &mut problems).await?;
            }
        }
        "postgres" => {
            if problems.is_empty() {
                check_pg_archive(&src.join(PG_DUMP_FILE), &mut problems).await;
            }
        }
        other => problems.push(format!("unknown database backend {other:?}")),
    }
    if manifest.schema_version > newest_known(&manifest.backend) {
        problems.push(format!(
            "the backup's schema version {} is newer than this binary's {}: restore it with the \
             version that wrote it ({})",
            manifest.schema_version,
            newest_known(&manifest.backend),
            manifest.switchboard_version
        ));
    }
    Ok(VerifyReport {
        manifest,
        problems,
        audit,
    })
}

fn newest_known(backend: &str) -> i64 {
    let migrator = if backend == "postgres" {
        &schema::POSTGRES
    } else {
        &schema::SQLITE
    };
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

fn read_manifest(src: &Path) -> Result<Manifest> {
    let not_a_backup = |reason: String| BackupError::NotABackup {
        path: src.to_path_buf(),
        reason,
    };
    if !src.is_dir() {
        return Err(not_a_backup("not a directory".into()));
    }
    let text = std::fs::read(src.join(MANIFEST)).map_err(|e| {
        not_a_backup(format!(
            "{MANIFEST} cannot be read ({e}): an interrupted or partial copy?"
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| not_a_backup(format!("{MANIFEST} is not valid ({e})")))?;
    if manifest.format != FORMAT {
        return Err(not_a_backup(format!(
            "backup format {} (this binary reads format {FORMAT})",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Every listed entry is there with its size and hash, and nothing else is.
fn check_entries(src: &Path, manifest: &Manifest, problems: &mut Vec<String>) {
    let database = if manifest.backend == "postgres" {
        PG_DUMP_FILE
    } else {
        SQLITE_FILE
    };
    if !manifest.entries.iter().any(|e| e.path == database) {
        problems.push(format!("the manifest lists no {database}"));
    }
    let mut listed = std::collections::HashSet::new();
    for entry in &manifest.entries {
        if !is_safe_relative(&entry.path) {
            problems.push(format!("entry {:?} points outside the backup", entry.path));
            continue;
        }
        listed.insert(PathBuf::from(&entry.path));
        match hash_file(&src.join(&entry.path)) {
            Ok((size, sha256)) if size == entry.size && sha256 == entry.sha256 => {}
            Ok((size, _)) if size != entry.size => problems.push(format!(
                "{}: {size} bytes, the manifest says {} (truncated or replaced)",
                entry.path, entry.size
            )),
            Ok(_) => problems.push(format!(
                "{}: its SHA-256 does not match (corrupt)",
                entry.path
            )),
            Err(e) => problems.push(format!("{}: missing or unreadable ({e})", entry.path)),
        }
    }
    for found in walk(src) {
        let Ok(relative) = found.strip_prefix(src) else {
            continue;
        };
        if relative != Path::new(MANIFEST) && !listed.contains(relative) {
            problems.push(format!(
                "{} is not in the manifest (something was added to the backup)",
                relative.display()
            ));
        }
    }
}

/// A manifest path must stay inside the backup directory.
fn is_safe_relative(path: &str) -> bool {
    let path = Path::new(path);
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(path),
                Ok(_) => found.push(path),
                Err(_) => {}
            }
        }
    }
    found
}

/// On a scratch copy of the SQLite database: integrity, the audit chain, the file rows.
async fn check_sqlite_copy(
    config: &Config,
    src: &Path,
    manifest: &Manifest,
    problems: &mut Vec<String>,
) -> Result<Option<crate::audit::VerifyReport>> {
    let scratch = tempfile::tempdir()
        .map_err(io("creating a scratch directory in", &std::env::temp_dir()))?;
    let copy = scratch.path().join(SQLITE_FILE);
    std::fs::copy(src.join(SQLITE_FILE), &copy).map_err(io("copying to", &copy))?;
    let url = format!("sqlite://{}", copy.display());
    {
        let mut conn =
            SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&copy)).await?;
        let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await?;
        conn.close().await?;
        if integrity != ["ok"] {
            problems.push(format!(
                "the database fails SQLite's integrity check: {}",
                integrity.join("; ")
            ));
            return Ok(None);
        }
    }
    if manifest.schema_version > newest_known("sqlite") {
        return Ok(None);
    }
    // The copy is brought to this binary's schema, as a restore and start would.
    let options = StoreOptions {
        max_connections: 2,
        sqlite_synchronous: config.store.sqlite_synchronous,
        // A short-lived check of a copy: no background checkpoint for it.
        sqlite_checkpoint_interval: None,
        preserve_versions: config.compliance.preserve_deleted,
        index_search: false,
        search_merge_pages: config.store.search_merge_pages,
        // A check of a copy asks no retry questions.
        sqlite_retry_filter_keys: 0,
    };
    let store = store::open(&url, &options).await?;
    // The checkpoints are checked with the key that signed them: the backup's own, or the
    // configured one when the installation keeps it outside the data directory.
    let key = match (
        std::fs::read_to_string(src.join("audit.key")),
        &config.compliance.audit_key,
    ) {
        (Ok(text), _) => {
            crate::signing::SecretKey::parse(&text).map_err(|e| BackupError::AuditKey(e.into()))?
        }
        (Err(_), Some(_)) => crate::audit::load_or_create_key(&config.compliance, scratch.path())?,
        (Err(_), None) => {
            problems.push(
                "the backup holds no audit.key and compliance.audit_key is not configured: the \
                 audit chain's checkpoints cannot be checked"
                    .into(),
            );
            return Ok(None);
        }
    };
    let report = crate::audit::verify(store.as_ref(), &key.public(), Vec::new())
        .await
        .map_err(|e| BackupError::Tool(format!("checking the audit chain: {e}")))?;
    if !report.is_intact() {
        problems.push(format!(
            "the audit chain does not verify (modified {:?}, inserted {:?}, deleted {:?}, \
             forged checkpoints {:?})",
            report.modified, report.inserted, report.deleted, report.bad_signatures
        ));
    }
    drop(store);
    if manifest.files_storage == "local" {
        let mut conn = SqliteConnection::connect_with(
            &SqliteConnectOptions::new().filename(&copy).read_only(true),
        )
        .await?;
        let keys: Vec<String> = sqlx::query_scalar(SNAPSHOT_QUERIES.1)
            .fetch_all(&mut conn)
            .await?;
        conn.close().await?;
        for key in keys {
            let listed = manifest
                .entries
                .iter()
                .any(|e| e.path == format!("{FILES_DIR}/{key}"));
            if !listed && !manifest.files_missing.contains(&key) {
                problems.push(format!(
                    "the database names file {key}, which the backup lacks"
                ));
            }
        }
    }
    Ok(Some(report))
}

/// `pg_restore --list` reads the whole archive's table of contents.
async fn check_pg_archive(dump: &Path, problems: &mut Vec<String>) {
    match tokio::process::Command::new("pg_restore")
        .arg("--list")
        .arg(dump)
        .output()
        .await
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => problems.push(format!(
            "{PG_DUMP_FILE} is not a readable pg_dump archive: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => problems.push(format!(
            "cannot run pg_restore to check {PG_DUMP_FILE} ({e}): install PostgreSQL's client tools"
        )),
    }
}

/// What `restore` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub manifest: Manifest,
    pub database: String,
    pub files: usize,
    /// The plugin files put into `plugins.dir`.
    pub plugins: usize,
    /// Why the backup's plugins were not restored, when they were not.
    pub plugins_skipped: Option<String>,
}

/// Verify `src`, then write it into the installation `config` describes, which must hold
/// none: no database (SQLite file, or a PostgreSQL database with tables), no stored files,
/// no keys.
pub async fn restore(config: &Config, src: &Path) -> Result<RestoreSummary> {
    let installation = Installation::of(config)?;
    let report = verify(config, src).await?;
    if !report.is_sound() {
        return Err(BackupError::Invalid(report.problems));
    }
    let manifest = report.manifest;
    if manifest.backend != installation.backend() {
        return Err(BackupError::Tool(format!(
            "the backup is of a {} database but the configuration points at {} ({}): restore a \
             SQLite backup into SQLite, a PostgreSQL one into PostgreSQL (`switchboard \
             migrate-store` moves SQLite to PostgreSQL afterwards)",
            manifest.backend,
            installation.backend(),
            store::redact_url(&installation.url)
        )));
    }
    refuse_occupied(&installation).await?;
    std::fs::create_dir_all(&installation.data_dir)
        .map_err(io("creating", &installation.data_dir))?;
    set_private(&installation.data_dir, 0o700);

    // Everything goes under temporary names first and is renamed once all is written.
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = stage_restore(src, &installation, &manifest, &mut staged).await;
    let result = match result {
        Ok(counts) => staged
            .iter()
            .try_for_each(|(from, to)| {
                std::fs::rename(from, to).map_err(io("moving into place", to))
            })
            .map(|()| counts),
        Err(err) => Err(err),
    };
    match result {
        Ok(counts) => {
            sync_dir(&installation.data_dir);
            Ok(RestoreSummary {
                database: store::redact_url(&installation.url),
                manifest,
                files: counts.files,
                plugins: counts.plugins,
                plugins_skipped: counts.plugins_skipped,
            })
        }
        Err(err) => {
            for (temp, _) in &staged {
                let _ = std::fs::remove_dir_all(temp).or_else(|_| std::fs::remove_file(temp));
            }
            Err(err)
        }
    }
}

/// Refuse a target that already holds an installation: restoring over it would mix two.
async fn refuse_occupied(installation: &Installation) -> Result<()> {
    let mut found = Vec::new();
    if let Some(file) = &installation.sqlite_file {
        for suffix in ["", "-wal"] {
            let path = PathBuf::from(format!("{}{suffix}", file.display()));
            if path.exists() {
                found.push(path.display().to_string());
            }
        }
    } else {
        let mut conn = PgConnection::connect(&installation.url).await?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        if tables > 0 {
            found.push(format!(
                "the database {} ({tables} tables)",
                store::redact_url(&installation.url)
            ));
        }
    }
    if let Some(files) = &installation.files_dir
        && std::fs::read_dir(files).is_ok_and(|mut d| d.next().is_some())
    {
        found.push(files.display().to_string());
    }
    for name in KEY_FILES {
        let path = installation.data_dir.join(name);
        if path.exists() {
            found.push(path.display().to_string());
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(BackupError::TargetInUse(format!(
        "the target already holds an installation ({}): restore only into a fresh one — stop \
         the server and move these aside (or point the configuration at a new data directory \
         and an empty database); nothing was changed",
        found.join(", ")
    )))
}

/// What the staging copied.
struct Staged {
    files: usize,
    plugins: usize,
    plugins_skipped: Option<String>,
}

/// Copy everything to temporary names beside its destination (listed in `staged` as they
/// are made) and load a PostgreSQL archive.
async fn stage_restore(
    src: &Path,
    installation: &Installation,
    manifest: &Manifest,
    staged: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<Staged> {
    let suffix = format!(".restoring-{}", std::process::id());
    if let Some(file) = &installation.sqlite_file {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let temp = PathBuf::from(format!("{}{suffix}", file.display()));
        staged.push((temp.clone(), file.clone()));
        copy_hashed(&src.join(SQLITE_FILE), &temp)?;
    }
    let mut files = 0;
    if let Some(files_dir) = &installation.files_dir {
        let temp = PathBuf::from(format!("{}{suffix}", files_dir.display()));
        staged.push((temp.clone(), files_dir.clone()));
        std::fs::create_dir_all(&temp).map_err(io("creating", &temp))?;
        set_private(&temp, 0o700);
        for entry in &manifest.entries {
            let Some(name) = entry.path.strip_prefix(&format!("{FILES_DIR}/")) else {
                continue;
            };
            copy_hashed(&src.join(&entry.path), &temp.join(name))?;
            files += 1;
        }
        // An empty files directory left by an earlier start would block the rename.
        if files_dir.exists() {
            std::fs::remove_dir(files_dir).map_err(io("replacing the empty", files_dir))?;
        }
    } else if manifest
        .entries
        .iter()
        .any(|e| e.path.starts_with(&format!("{FILES_DIR}/")))
    {
        return Err(BackupError::Tool(
            "the backup holds locally stored files but the configuration keeps files in S3: \
             restore with the same files storage"
                .into(),
        ));
    }
    let (plugins, plugins_skipped) = stage_plugins(src, installation, manifest, &suffix, staged)?;
    for name in KEY_FILES {
        let source = src.join(name);
        if source.exists() {
            let temp = installation.data_dir.join(format!("{name}{suffix}"));
            staged.push((temp.clone(), installation.data_dir.join(name)));
            copy_hashed(&source, &temp)?;
        }
    }
    if installation.sqlite_file.is_none() {
        let output = tokio::process::Command::new("pg_restore")
            .arg("--no-owner")
            .arg("--exit-on-error")
            .arg("--single-transaction")
            .arg(format!("--dbname={}", installation.url))
            .arg(src.join(PG_DUMP_FILE))
            .output()
            .await
            .map_err(|e| BackupError::Tool(format!("running pg_restore ({e})")))?;
        if !output.status.success() {
            return Err(BackupError::Tool(format!(
                "pg_restore failed (its single transaction rolled back): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        // pg_restore leaves the planner's statistics describing empty tables until
        // autovacuum catches up; searches over the restored history would walk rooms row by
        // row meanwhile (~500 ms a query at a million messages instead of milliseconds).
        let mut conn = PgConnection::connect(&installation.url).await?;
        sqlx::query("ANALYZE").execute(&mut conn).await?;
        conn.close().await?;
    }
    Ok(Staged {
        files,
        plugins,
        plugins_skipped,
    })
}

/// The backup's plugins go into `plugins.dir` when it is configured and holds nothing yet;
/// otherwise they are left in the backup and the summary says why.
fn stage_plugins(
    src: &Path,
    installation: &Installation,
    manifest: &Manifest,
    suffix: &str,
    staged: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(usize, Option<String>)> {
    let prefix = format!("{PLUGINS_DIR}/");
    let entries: Vec<&Entry> = manifest
        .entries
        .iter()
        .filter(|e| e.path.starts_with(&prefix))
        .collect();
    if entries.is_empty() {
        return Ok((0, None));
    }
    let Some(dir) = &installation.plugins_dir else {
        return Ok((
            0,
            Some(format!(
                "the backup holds {} plugin file(s) but plugins.dir is not configured; they stay \
                 in {}",
                entries.len(),
                src.join(PLUGINS_DIR).display()
            )),
        ));
    };
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Ok((
            0,
            Some(format!(
                "{} already holds plugins, left as they are; the backup's are in {}",
                dir.display(),
                src.join(PLUGINS_DIR).display()
            )),
        ));
    }
    let temp = PathBuf::from(format!("{}{suffix}", dir.display()));
    staged.push((temp.clone(), dir.clone()));
    for entry in &entries {
        let Some(relative) = entry.path.strip_prefix(&prefix) else {
            continue;
        };
        copy_hashed(&src.join(&entry.path), &temp.join(relative))?;
    }
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(io("replacing the empty", dir))?;
    }
    Ok((entries.len(), None))
}

// ---- file helpers ----

/// Copy `from` into the backup `dir` as `relative`, and describe it for the manifest.
fn copy_entry(from: &Path, dir: &Path, relative: String) -> Result<Entry> {
    let (size, sha256) = copy_hashed(from, &dir.join(&relative))?;
    Ok(Entry {
        path: relative,
        size,
        sha256,
    })
}

/// Copy `from` to a new private file `to` (never overwriting; its directory is made if
/// missing), hashing on the way, and sync it.
fn copy_hashed(from: &Path, to: &Path) -> Result<(u64, String)> {
    // The source first: a missing one must leave nothing behind in the target.
    let input = std::fs::File::open(from).map_err(io("reading", from))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let mut output = crate::private_files::create_new(to).map_err(io("creating", to))?;
    let done = hash_stream(from, input, Some((to, &mut output)))?;
    output.sync_all().map_err(io("writing", to))?;
    Ok(done)
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let input = std::fs::File::open(path).map_err(io("reading", path))?;
    hash_stream(path, input, None)
}

/// Read `input` (the file `from`) to its end, hashing it and writing each chunk to `copy`
/// when given: the size and the hex SHA-256. Errors name the file that failed.
fn hash_stream(
    from: &Path,
    mut input: std::fs::File,
    mut copy: Option<(&Path, &mut std::fs::File)>,
) -> Result<(u64, String)> {
    use std::io::{Read as _, Write as _};
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buffer).map_err(io("reading", from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        if let Some((path, file)) = copy.as_mut() {
            file.write_all(&buffer[..n]).map_err(io("writing", path))?;
        }
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn hash_entry(dir: &Path, relative: &str) -> Result<Entry> {
    let path = dir.join(relative);
    let (size, sha256) = hash_file(&path)?;
    Ok(Entry {
        path: relative.into(),
        size,
        sha256,
    })
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", path))
}

/// Make a rename durable. Best effort: some filesystems refuse to sync a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn set_private(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_stay_inside_the_backup() {
        assert!(is_safe_relative("files/3/abc"));
        assert!(is_safe_relative("switchboard.db"));
        assert!(!is_safe_relative("../etc/passwd"));
        assert!(!is_safe_relative("/etc/passwd"));
        assert!(!is_safe_relative("files/../../x"));
        assert!(!is_safe_relative(""));
        assert!(!is_safe_relative("./x"));
    }

    #[test]
    fn the_partial_directory_is_a_hidden_sibling() {
        let p = partial_path(Path::new("/backups/monday")).expect("path");
        assert_eq!(p.parent(), Some(Path::new("/backups")));
        assert!(
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".monday.partial-"))
        );
        assert!(partial_path(Path::new("/")).is_err());
    }
}

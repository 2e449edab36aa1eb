//! `switchboard migrate-store`: copy a single-node SQLite installation into an empty
//! PostgreSQL database, row for row.
//!
//! This deliberately does not go through the [`Store`](super::Store) trait: the trait assigns
//! ids, seqs and timestamps itself, while a migration must keep every one of them exactly as
//! it was (clients hold seqs and message ids; sessions must stay valid). So the migrator
//! knows both schemas and speaks SQL to each: it reads the SQLite file inside one read
//! transaction (a consistent snapshot), writes everything to PostgreSQL inside one
//! transaction (all or nothing), moves the identity sequences past the copied ids, and then
//! checks the copy (row counts, and per room `last_seq`, event count and highest seq).
//!
//! If a later migration adds a table this module does not know, it refuses to run rather than
//! silently leave data behind.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{Context as _, bail, ensure};
use futures_util::TryStreamExt as _;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Connection as _, Postgres, QueryBuilder, Row as _};

use super::redact_url;

/// Rows per multi-row INSERT: 12 columns × 500 stays far below PostgreSQL's 65 535
/// bind parameters while keeping round trips few.
const CHUNK: usize = 500;

/// How a column is read from SQLite and bound for PostgreSQL.
#[derive(Debug, Clone, Copy)]
enum Ty {
    Int,
    OptInt,
    Text,
    OptText,
    /// 0/1 integer in SQLite, BOOLEAN in PostgreSQL.
    Bool,
    /// Text in SQLite, JSONB in PostgreSQL.
    Json,
    Bytes,
}

#[derive(Debug)]
enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(bool),
    Json(String),
    Bytes(Vec<u8>),
}

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Ty)],
    /// Copy order (also makes the copy deterministic).
    order_by: &'static str,
    /// `id` is `GENERATED ALWAYS AS IDENTITY` in PostgreSQL: insert with
    /// `OVERRIDING SYSTEM VALUE` and move the sequence afterwards.
    identity: bool,
}

/// Every table of the schema, parents before children (foreign keys).
const TABLES: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            ("id", Ty::Int),
            ("name", Ty::Text),
            ("display_name", Ty::Text),
            ("password_hash", Ty::OptText),
            ("is_admin", Ty::Bool),
            ("is_compliance", Ty::Bool),
            ("is_bot", Ty::Bool),
            ("active", Ty::Bool),
            ("created_at", Ty::Int),
            ("presence_hidden", Ty::Bool),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "sessions",
        columns: &[
            ("id", Ty::Text),
            ("user_id", Ty::Int),
            ("refresh_hash", Ty::Text),
            ("created_at", Ty::Int),
            ("expires_at", Ty::Int),
            ("revoked", Ty::Bool),
        ],
        order_by: "id",
        identity: false,
    },
    Table {
        name: "rooms",
        columns: &[
            ("id", Ty::Int),
            ("kind", Ty::Text),
            ("name", Ty::OptText),
            ("topic", Ty::OptText),
            ("created_by", Ty::Int),
            ("created_at", Ty::Int),
            ("last_seq", Ty::Int),
            ("direct_key", Ty::OptText),
            ("members_may_pin", Ty::Bool),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "members",
        columns: &[
            ("room_id", Ty::Int),
            ("user_id", Ty::Int),
            ("role", Ty::Text),
            ("joined_at", Ty::Int),
        ],
        order_by: "room_id, user_id",
        identity: false,
    },
    Table {
        name: "events",
        columns: &[
            ("id", Ty::Int),
            ("room_id", Ty::Int),
            ("seq", Ty::Int),
            ("kind", Ty::Text),
            ("sender_id", Ty::Int),
            ("target", Ty::OptInt),
            ("body", Ty::OptText),
            ("metadata", Ty::Json),
            ("client_msg_id", Ty::OptText),
            ("created_at", Ty::Int),
            ("edited_at", Ty::OptInt),
            ("deleted", Ty::Bool),
            ("search_text", Ty::OptText),
            ("thread_root", Ty::OptInt),
            ("also_to_room", Ty::Bool),
            ("mentions", Ty::OptText),
            ("mentions_room", Ty::Bool),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "user_mentions",
        columns: &[
            ("user_id", Ty::Int),
            ("event_id", Ty::Int),
            ("room_id", Ty::Int),
            ("seq", Ty::Int),
        ],
        order_by: "user_id, event_id",
        identity: false,
    },
    Table {
        name: "reactions",
        columns: &[
            ("message_id", Ty::Int),
            ("emoji", Ty::Text),
            ("user_id", Ty::Int),
            ("event_id", Ty::Int),
            ("created_at", Ty::Int),
        ],
        order_by: "message_id, emoji, user_id",
        identity: false,
    },
    Table {
        name: "pins",
        columns: &[
            ("room_id", Ty::Int),
            ("message_id", Ty::Int),
            ("pinned_by", Ty::Int),
            ("event_id", Ty::Int),
            ("pinned_at", Ty::Int),
        ],
        order_by: "room_id, message_id",
        identity: false,
    },
    Table {
        name: "thread_reads",
        columns: &[("user_id", Ty::Int), ("root_id", Ty::Int), ("seq", Ty::Int)],
        order_by: "user_id, root_id",
        identity: false,
    },
    Table {
        name: "event_versions",
        columns: &[
            ("id", Ty::Int),
            ("event_id", Ty::Int),
            ("replaced_at", Ty::Int),
            ("cause", Ty::Text),
            ("body", Ty::OptText),
            ("metadata", Ty::Text),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "legal_holds",
        columns: &[
            ("id", Ty::Int),
            ("name", Ty::Text),
            ("users", Ty::Text),
            ("rooms", Ty::Text),
            ("from_at", Ty::OptInt),
            ("until_at", Ty::OptInt),
            ("created_by", Ty::Int),
            ("created_at", Ty::Int),
            ("release_requested_by", Ty::OptInt),
            ("release_requested_at", Ty::OptInt),
            ("released_at", Ty::OptInt),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "files",
        columns: &[
            ("id", Ty::Int),
            ("room_id", Ty::Int),
            ("uploader_id", Ty::Int),
            ("name", Ty::Text),
            ("content_type", Ty::Text),
            ("size", Ty::Int),
            ("sha256", Ty::Text),
            ("storage_key", Ty::Text),
            ("state", Ty::Text),
            ("created_at", Ty::Int),
            ("message_id", Ty::OptInt),
            ("quarantined_by", Ty::OptText),
            ("quarantine_reason", Ty::OptText),
            ("has_thumbnail", Ty::Bool),
            ("received", Ty::Int),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "retention_policies",
        columns: &[("room_id", Ty::Int), ("days", Ty::Int)],
        order_by: "room_id",
        identity: false,
    },
    Table {
        name: "read_cursors",
        columns: &[("user_id", Ty::Int), ("room_id", Ty::Int), ("seq", Ty::Int)],
        order_by: "user_id, room_id",
        identity: false,
    },
    Table {
        name: "plugin_kv",
        columns: &[
            ("plugin", Ty::Text),
            ("key", Ty::Text),
            ("value", Ty::Bytes),
        ],
        order_by: "plugin, key",
        identity: false,
    },
    Table {
        name: "audit",
        columns: &[
            ("id", Ty::Int),
            ("at", Ty::Int),
            ("actor", Ty::Text),
            ("action", Ty::Text),
            ("subject", Ty::Text),
            ("detail", Ty::Json),
            ("seq", Ty::OptInt),
            ("prev_hash", Ty::OptText),
            ("hash", Ty::OptText),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "audit_head",
        columns: &[("id", Ty::Int), ("seq", Ty::Int), ("hash", Ty::Text)],
        order_by: "id",
        identity: false,
    },
    Table {
        name: "audit_checkpoints",
        columns: &[
            ("seq", Ty::Int),
            ("head_hash", Ty::Text),
            ("at", Ty::Int),
            ("key_id", Ty::Text),
            ("signature", Ty::Text),
        ],
        order_by: "seq",
        identity: false,
    },
    Table {
        name: "external_identities",
        columns: &[
            ("user_id", Ty::Int),
            ("source", Ty::Text),
            ("external_id", Ty::OptText),
            ("email", Ty::OptText),
            ("updated_at", Ty::Int),
        ],
        order_by: "user_id, source",
        identity: false,
    },
    Table {
        name: "directory_groups",
        columns: &[
            ("id", Ty::Int),
            ("source", Ty::Text),
            ("name", Ty::Text),
            ("external_id", Ty::OptText),
            ("created_at", Ty::Int),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "directory_group_members",
        columns: &[("group_id", Ty::Int), ("user_id", Ty::Int)],
        order_by: "group_id, user_id",
        identity: false,
    },
    Table {
        name: "one_time_values",
        columns: &[
            ("key", Ty::Text),
            ("kind", Ty::Text),
            ("payload", Ty::Text),
            ("created_at", Ty::Int),
        ],
        order_by: "key",
        identity: false,
    },
    Table {
        name: "incoming_webhooks",
        columns: &[
            ("id", Ty::Int),
            ("room_id", Ty::Int),
            ("bot_user_id", Ty::Int),
            ("name", Ty::Text),
            ("key_hash", Ty::Text),
            ("created_by", Ty::Int),
            ("created_at", Ty::Int),
            ("revoked_at", Ty::OptInt),
        ],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "llm_usage",
        columns: &[
            ("day", Ty::Int),
            ("scope", Ty::Text),
            ("scope_id", Ty::Int),
            ("tokens", Ty::Int),
        ],
        order_by: "day, scope, scope_id",
        identity: false,
    },
];

/// What was copied, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Rows copied per table, in copy order.
    pub tables: Vec<(&'static str, u64)>,
    /// Rooms whose `last_seq` and event log were checked on both sides.
    pub rooms_verified: u64,
    /// The highest `last_seq` of any room.
    pub max_last_seq: i64,
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "copied:")?;
        for (table, rows) in &self.tables {
            writeln!(f, "  {table:<14} {rows:>10} rows")?;
        }
        write!(
            f,
            "verified: row counts equal; {} room(s) with identical last_seq, event counts and \
             highest seq (largest last_seq {})",
            self.rooms_verified, self.max_last_seq
        )
    }
}

/// Copy the SQLite database at `from` into the empty PostgreSQL database at `to`.
pub async fn sqlite_to_postgres(from: &str, to: &str) -> anyhow::Result<MigrationReport> {
    ensure!(
        from.starts_with("sqlite:"),
        "--from must be a sqlite:// URL, got {}",
        redact_url(from)
    );
    ensure!(
        to.starts_with("postgres://") || to.starts_with("postgresql://"),
        "--to must be a postgres:// URL, got {}",
        redact_url(to)
    );

    // The source must exist: creating an empty one would "migrate" nothing, successfully.
    let source_opts = SqliteConnectOptions::from_str(from)
        .with_context(|| format!("parsing {}", redact_url(from)))?
        .create_if_missing(false)
        .foreign_keys(true);
    let mut source = SqliteConnection::connect_with(&source_opts)
        .await
        .with_context(|| format!("opening {}", redact_url(from)))?;
    // Bring an older installation's schema up to date, exactly as starting the server would,
    // so the queries below match it.
    super::schema::refuse_newer_sqlite(&mut source).await?;
    super::schema::SQLITE
        .run(&mut source)
        .await
        .context("migrating the source schema")?;
    check_known_tables(&mut source).await?;

    let mut target = PgConnection::connect(to)
        .await
        .with_context(|| format!("connecting to {}", redact_url(to)))?;
    super::schema::refuse_newer_postgres(&mut target).await?;
    super::schema::POSTGRES
        .run(&mut target)
        .await
        .context("creating the schema in the target")?;
    refuse_non_empty(&mut target).await?;

    // One read transaction: every table comes from the same snapshot even if something
    // (wrongly) still writes to the file.
    sqlx::query("BEGIN").execute(&mut source).await?;
    let mut tx = target.begin().await?;
    let mut copied = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let rows = copy_table(&mut source, &mut tx, table)
            .await
            .with_context(|| format!("copying {}", table.name))?;
        copied.push((table.name, rows));
    }
    for table in TABLES.iter().filter(|t| t.identity) {
        // The next generated id continues after the copied ones (is_called = false: the
        // value given is the next one handed out).
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{0}', 'id'), \
             COALESCE((SELECT MAX(id) FROM {0}), 0) + 1, false)",
            table.name
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("moving the id sequence of {}", table.name))?;
    }
    let report = verify(&mut source, &mut tx, copied).await?;
    tx.commit().await.context("committing the copy")?;
    // Planner statistics for the tables just filled: until autovacuum gets to them the
    // planner takes them for empty, and a search over a copied history then walks rooms
    // row by row (measured: ~500 ms a query at a million messages, 2–10 ms after).
    sqlx::query("ANALYZE")
        .execute(&mut target)
        .await
        .context("analyzing the copy")?;
    sqlx::query("COMMIT").execute(&mut source).await?;
    source.close().await?;
    target.close().await?;
    Ok(report)
}

/// Refuse a source with tables this module would not copy.
async fn check_known_tables(source: &mut SqliteConnection) -> anyhow::Result<()> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *source)
    .await?;
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !TABLES.iter().any(|t| t.name == n.as_str()))
        // SQLite's search index (FTS5 and its shadow tables) is derived from `events`;
        // PostgreSQL builds its own from the copied `search_text`. `search_index_deferred`
        // only holds a row inside the group commit's own transactions (migration 0022).
        .filter(|n| {
            *n != "events_fts" && !n.starts_with("events_fts_") && *n != "search_index_deferred"
        })
        .collect();
    if !unknown.is_empty() {
        bail!(
            "the source has tables this version of migrate-store does not know how to copy: {}",
            unknown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Copying into a database that already holds data would merge two installations (or clash
/// on ids); only an empty target is accepted.
async fn refuse_non_empty(target: &mut PgConnection) -> anyhow::Result<()> {
    let mut non_empty = Vec::new();
    for table in TABLES {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", table.name))
            .fetch_one(&mut *target)
            .await?;
        if rows > 0 {
            non_empty.push(format!("{} ({rows} rows)", table.name));
        }
    }
    if !non_empty.is_empty() {
        bail!(
            "the target database is not empty: {}. migrate-store only copies into an empty \
             database; create a new one (CREATE DATABASE …) and point --to at it",
            non_empty.join(", ")
        );
    }
    Ok(())
}

fn read_cell(row: &SqliteRow, column: &str, ty: Ty) -> anyhow::Result<Cell> {
    let cell = match ty {
        Ty::Int => Cell::Int(Some(row.try_get(column)?)),
        Ty::OptInt => Cell::Int(row.try_get(column)?),
        Ty::Text => Cell::Text(Some(row.try_get(column)?)),
        Ty::OptText => Cell::Text(row.try_get(column)?),
        Ty::Bool => Cell::Bool(row.try_get::<i64, _>(column)? != 0),
        Ty::Json => {
            let text: String = row.try_get(column)?;
            // JSONB rejects what is not JSON; say which row instead of failing the batch.
            serde_json::from_str::<serde_json::Value>(&text)
                .with_context(|| format!("column {column} holds invalid JSON: {text:?}"))?;
            Cell::Json(text)
        }
        Ty::Bytes => Cell::Bytes(row.try_get(column)?),
    };
    Ok(cell)
}

async fn copy_table(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &Table,
) -> anyhow::Result<u64> {
    let columns = table
        .columns
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ");
    let select = format!(
        "SELECT {columns} FROM {} ORDER BY {}",
        table.name, table.order_by
    );
    let mut rows = sqlx::query(&select).fetch(&mut *source);
    let mut chunk: Vec<Vec<Cell>> = Vec::with_capacity(CHUNK);
    let mut total = 0u64;
    while let Some(row) = rows.try_next().await? {
        let cells = table
            .columns
            .iter()
            .map(|(c, ty)| read_cell(&row, c, *ty))
            .collect::<anyhow::Result<Vec<_>>>()?;
        chunk.push(cells);
        if chunk.len() == CHUNK {
            total += insert_chunk(target, table, &columns, std::mem::take(&mut chunk)).await?;
        }
    }
    if !chunk.is_empty() {
        total += insert_chunk(target, table, &columns, chunk).await?;
    }
    Ok(total)
}

async fn insert_chunk(
    target: &mut PgConnection,
    table: &Table,
    columns: &str,
    rows: Vec<Vec<Cell>>,
) -> anyhow::Result<u64> {
    let mut insert: QueryBuilder<'_, Postgres> =
        QueryBuilder::new(format!("INSERT INTO {} ({columns}) ", table.name));
    if table.identity {
        insert.push("OVERRIDING SYSTEM VALUE ");
    }
    insert.push_values(rows, |mut values, row| {
        for cell in row {
            match cell {
                Cell::Int(v) => values.push_bind(v),
                Cell::Text(v) => values.push_bind(v),
                Cell::Bool(v) => values.push_bind(v),
                Cell::Json(v) => values.push_bind(v).push_unseparated("::jsonb"),
                Cell::Bytes(v) => values.push_bind(v),
            };
        }
    });
    let done = insert.build().execute(&mut *target).await?;
    Ok(done.rows_affected())
}

/// Per room: (last_seq, number of events, highest event seq).
type RoomShape = BTreeMap<i64, (i64, i64, i64)>;

const ROOM_SHAPE: &str = "SELECT r.id, r.last_seq, COUNT(e.id), COALESCE(MAX(e.seq), 0) \
     FROM rooms r LEFT JOIN events e ON e.room_id = r.id GROUP BY r.id, r.last_seq";

/// Compare the copy with the source inside the still-open transactions.
async fn verify(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    copied: Vec<(&'static str, u64)>,
) -> anyhow::Result<MigrationReport> {
    for (table, rows) in &copied {
        let count = format!("SELECT COUNT(*) FROM {table}");
        let in_source: i64 = sqlx::query_scalar(&count).fetch_one(&mut *source).await?;
        let in_target: i64 = sqlx::query_scalar(&count).fetch_one(&mut *target).await?;
        ensure!(
            in_source == in_target && u64::try_from(in_target).ok() == Some(*rows),
            "verification failed for {table}: {in_source} rows in the source, {in_target} in \
             the target, {rows} copied; nothing was committed"
        );
    }
    let mut source_rooms = RoomShape::new();
    let mut rows = sqlx::query(ROOM_SHAPE).fetch(&mut *source);
    while let Some(row) = rows.try_next().await? {
        source_rooms.insert(
            row.try_get(0)?,
            (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
        );
    }
    drop(rows);
    let mut target_rooms = RoomShape::new();
    let mut rows = sqlx::query(ROOM_SHAPE).fetch(&mut *target);
    while let Some(row) = rows.try_next().await? {
        target_rooms.insert(
            row.try_get(0)?,
            (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
        );
    }
    drop(rows);
    if let Some((room, shape)) = source_rooms
        .iter()
        .find(|(room, shape)| target_rooms.get(room) != Some(shape))
    {
        bail!(
            "verification failed for room {room}: (last_seq, events, max seq) = {shape:?} in \
             the source, {:?} in the target; nothing was committed",
            target_rooms.get(room)
        );
    }
    ensure!(
        source_rooms.len() == target_rooms.len(),
        "verification failed: {} rooms in the source, {} in the target",
        source_rooms.len(),
        target_rooms.len()
    );
    Ok(MigrationReport {
        tables: copied,
        rooms_verified: source_rooms.len() as u64,
        max_last_seq: source_rooms.values().map(|s| s.0).max().unwrap_or(0),
    })
}

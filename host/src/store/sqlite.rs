//! SQLite implementation of [`Store`]: the embedded default, one file in WAL mode.
//!
//! SQLite allows one writer at a time. Rather than let connections fight over the lock (and
//! spin on `SQLITE_BUSY`), every write goes through a pool of exactly one connection, so
//! writes queue in-process; reads use a separate pool and, thanks to WAL, never wait for the
//! writer. The room log (`append_events`, paging, read cursors) lives in [`log`].

mod log;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::common::{
    col, decode_json, direct_key, direct_peer, initial_members, limit, map_write, parse_role,
    parse_room_kind, prefix_upper_bound,
};
use super::{
    Appended, AuditRecord, Event, EventId, Member, NewEvent, NewRoom, NewUser, Page, Role, Room,
    RoomId, RoomKind, RoomSummary, Session, SqliteSync, Store, StoreError, StoreOptions,
    StoreResult, User, UserId, now_millis,
};

/// How long a connection waits for the file lock (another process, a checkpoint) before
/// giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const USER_COLS: &str = "id, name, display_name, is_admin, is_bot, active, created_at";
const ROOM_COLS: &str = "id, kind, name, topic, created_by, created_at, last_seq";
const SESSION_COLS: &str = "id, user_id, refresh_hash, created_at, expires_at, revoked";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: all writes, each in its own transaction.
    writer: SqlitePool,
    /// Reads only (`max_connections` of them); WAL lets them run beside the writer.
    reader: SqlitePool,
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
        let synchronous = match options.sqlite_synchronous {
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Normal => SqliteSynchronous::Normal,
        };
        let writer_opts = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            // Deleted message text must leave the file, not linger in freed pages (the
            // contract test for erasure fails without this).
            .pragma("secure_delete", "ON");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A writer held for a while by a big batch is normal: queue, don't time out early.
            .acquire_timeout(Duration::from_secs(60))
            // Never recycle it: an in-memory database would vanish with its connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_opts)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;

        // An in-memory database exists only on its one connection: read through the writer.
        let reader = if memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .connect_with(base.read_only(true))
                .await?
        };
        Ok(Self { writer, reader })
    }
}

/// The database holds password hashes and every message: only the server's own user may
/// read it. Creates the file `0600` if missing (SQLite gives its `-wal` and `-shm` files
/// the database file's mode), and tightens an existing file, WAL and shared-memory file
/// that others could read, saying so in the log.
fn make_private(db: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
        let mut companions = db.as_os_str().to_os_string();
        companions.push("-wal");
        let wal = std::path::PathBuf::from(&companions);
        let mut shm = db.as_os_str().to_os_string();
        shm.push("-shm");
        for path in [db.to_path_buf(), wal, std::path::PathBuf::from(shm)] {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700))?;
                tracing::warn!(
                    path = %path.display(),
                    was = format!("{mode:o}"),
                    "the database file was readable by other users; made it private"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

async fn create_dir(dir: &Path) -> StoreResult<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))
}

fn user_from_row(row: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: col(row, "id")?,
        name: col(row, "name")?,
        display_name: col(row, "display_name")?,
        is_admin: col(row, "is_admin")?,
        is_bot: col(row, "is_bot")?,
        active: col(row, "active")?,
        created_at: col(row, "created_at")?,
    })
}

fn room_from_row(row: &SqliteRow) -> StoreResult<Room> {
    Ok(Room {
        id: col(row, "id")?,
        kind: parse_room_kind(&col::<_, String>(row, "kind")?)?,
        name: col(row, "name")?,
        topic: col(row, "topic")?,
        created_by: col(row, "created_by")?,
        created_at: col(row, "created_at")?,
        last_seq: col(row, "last_seq")?,
    })
}

fn session_from_row(row: &SqliteRow) -> StoreResult<Session> {
    Ok(Session {
        id: col(row, "id")?,
        user_id: col(row, "user_id")?,
        refresh_hash: col(row, "refresh_hash")?,
        created_at: col(row, "created_at")?,
        expires_at: col(row, "expires_at")?,
        revoked: col(row, "revoked")?,
    })
}

fn member_from_row(row: &SqliteRow) -> StoreResult<Member> {
    Ok(Member {
        room_id: col(row, "room_id")?,
        user_id: col(row, "user_id")?,
        role: parse_role(&col::<_, String>(row, "role")?)?,
        joined_at: col(row, "joined_at")?,
    })
}

/// Insert a room and its members on an open write transaction.
async fn insert_room(
    conn: &mut sqlx::SqliteConnection,
    room: &NewRoom,
    key: Option<&str>,
    members: &[(UserId, Role)],
    now: i64,
) -> StoreResult<Room> {
    let row = sqlx::query(&format!(
        "INSERT INTO rooms (kind, name, topic, created_by, created_at, direct_key)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ROOM_COLS}"
    ))
    .bind(room.kind.as_str())
    .bind(&room.name)
    .bind(&room.topic)
    .bind(room.created_by)
    .bind(now)
    .bind(key)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| map_write(e, "room_exists"))?;
    let created = room_from_row(&row)?;
    for (user, role) in members {
        sqlx::query(
            "INSERT INTO members (room_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(created.id)
        .bind(user)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| map_write(e, "already_member"))?;
    }
    Ok(created)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn size_bytes(&self) -> StoreResult<Option<u64>> {
        let row = sqlx::query(
            "SELECT page_count * page_size AS size FROM pragma_page_count(), pragma_page_size()",
        )
        .fetch_one(&self.reader)
        .await?;
        let size: i64 = col(&row, "size")?;
        Ok(u64::try_from(size).ok())
    }

    // ---- users ----

    #[tracing::instrument(skip_all)]
    async fn count_users(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.reader)
            .await?;
        col(&row, "n")
    }

    #[tracing::instrument(skip_all)]
    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        let row = sqlx::query(&format!(
            "INSERT INTO users (name, display_name, password_hash, is_admin, is_bot, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLS}"
        ))
        .bind(&user.name)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.is_bot)
        .bind(now_millis())
        .fetch_one(&self.writer)
        .await
        .map_err(|e| map_write(e, "user_exists"))?;
        user_from_row(&row)
    }

    #[tracing::instrument(skip_all)]
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<(User, Option<String>)>> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {USER_COLS}, password_hash FROM users WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some((user_from_row(&row)?, col(&row, "password_hash")?)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY id"))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn set_user_active(&self, id: UserId, active: bool) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET active = $2 WHERE id = $1")
            .bind(id)
            .bind(active)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    #[tracing::instrument(skip_all)]
    async fn set_password_hash(&self, id: UserId, hash: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    // ---- sessions ----

    #[tracing::instrument(skip_all)]
    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, refresh_hash, created_at, expires_at, revoked)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.id)
        .bind(session.user_id)
        .bind(&session.refresh_hash)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.revoked)
        .execute(&self.writer)
        .await
        .map_err(|e| map_write(e, "session_exists"))?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_refresh(
        &self,
        id: &str,
        old_hash: &str,
        new_hash: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        // One conditional UPDATE: of two concurrent refreshes with the same token, exactly
        // one matches `old_hash`.
        let done = sqlx::query(
            "UPDATE sessions SET refresh_hash = $3, expires_at = $4
             WHERE id = $1 AND refresh_hash = $2 AND revoked = FALSE AND expires_at > $5",
        )
        .bind(id)
        .bind(old_hash)
        .bind(new_hash)
        .bind(expires_at)
        .bind(now_millis())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_session(&self, id: &str) -> StoreResult<()> {
        // Revoking an unknown or already revoked session is not an error: logout is idempotent.
        sqlx::query("UPDATE sessions SET revoked = TRUE WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_user_sessions(&self, user: UserId) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "UPDATE sessions SET revoked = TRUE
             WHERE user_id = $1 AND revoked = FALSE AND expires_at > $2 RETURNING id",
        )
        .bind(user)
        .bind(now_millis())
        .fetch_all(&self.writer)
        .await?;
        let mut ids = rows
            .iter()
            .map(|r| col(r, "id"))
            .collect::<StoreResult<Vec<String>>>()?;
        ids.sort();
        Ok(ids)
    }

    // ---- rooms and members ----

    #[tracing::instrument(skip_all)]
    async fn create_room(&self, room: NewRoom, members: &[(UserId, Role)]) -> StoreResult<Room> {
        if room.kind != RoomKind::Group {
            // Direct rooms need their pair key; `direct_room` is the only way to make one.
            return Err(StoreError::Conflict("not_a_group"));
        }
        let all = initial_members(room.created_by, members);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let created = insert_room(&mut tx, &room, None, &all, now_millis()).await?;
        tx.commit().await?;
        Ok(created)
    }

    #[tracing::instrument(skip_all)]
    async fn direct_room(&self, a: UserId, b: UserId) -> StoreResult<(Room, bool)> {
        let key = direct_key(a, b);
        // The single writer connection serialises concurrent callers: whoever comes second
        // finds the room the first one committed.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let existing = sqlx::query(&format!(
            "SELECT {ROOM_COLS} FROM rooms WHERE direct_key = $1"
        ))
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return Ok((room_from_row(&row)?, false));
        }
        let new = NewRoom {
            kind: RoomKind::Direct,
            name: None,
            topic: None,
            created_by: a,
        };
        let mut members = vec![(a, Role::Member)];
        if b != a {
            members.push((b, Role::Member));
        }
        let created = insert_room(&mut tx, &new, Some(&key), &members, now_millis()).await?;
        tx.commit().await?;
        Ok((created, true))
    }

    #[tracing::instrument(skip_all)]
    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>> {
        sqlx::query(&format!("SELECT {ROOM_COLS} FROM rooms WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(room_from_row)
            .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn rooms_for_user(&self, user: UserId) -> StoreResult<Vec<RoomSummary>> {
        // `deleted = 0` (not `= FALSE`) so SQLite matches the partial index
        // `events_live_messages` word for word.
        let rows = sqlx::query(
            "SELECT r.id, r.kind, r.name, r.topic, r.created_by, r.created_at, r.last_seq,
                    r.direct_key, m.role, COALESCE(c.seq, 0) AS read_seq,
                    (SELECT COUNT(*) FROM events e
                      WHERE e.room_id = r.id AND e.kind = 'message' AND e.deleted = 0
                        AND e.seq > COALESCE(c.seq, 0) AND e.sender_id <> m.user_id) AS unread
               FROM members m
               JOIN rooms r ON r.id = m.room_id
               LEFT JOIN read_cursors c ON c.user_id = m.user_id AND c.room_id = m.room_id
              WHERE m.user_id = $1
              ORDER BY r.id",
        )
        .bind(user)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let key: Option<String> = col(row, "direct_key")?;
                Ok(RoomSummary {
                    room: room_from_row(row)?,
                    role: parse_role(&col::<_, String>(row, "role")?)?,
                    read_seq: col(row, "read_seq")?,
                    unread: col(row, "unread")?,
                    peer: key.map(|k| direct_peer(&k, user)).transpose()?,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn list_rooms(&self) -> StoreResult<Vec<Room>> {
        sqlx::query(&format!("SELECT {ROOM_COLS} FROM rooms ORDER BY id"))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(room_from_row)
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn room_members(&self, room: RoomId) -> StoreResult<Vec<Member>> {
        sqlx::query(
            "SELECT room_id, user_id, role, joined_at FROM members WHERE room_id = $1
             ORDER BY user_id",
        )
        .bind(room)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(member_from_row)
        .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn member(&self, room: RoomId, user: UserId) -> StoreResult<Option<Member>> {
        sqlx::query(
            "SELECT room_id, user_id, role, joined_at FROM members
             WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room)
        .bind(user)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(member_from_row)
        .transpose()
    }

    // ---- the room log ----

    #[tracing::instrument(skip_all, fields(items = batch.len()))]
    async fn append_events(&self, batch: &[NewEvent]) -> StoreResult<Vec<StoreResult<Appended>>> {
        let erases = batch.iter().any(|e| matches!(e, NewEvent::Delete { .. }));
        let results = log::append_events(&self.writer, batch).await?;
        if erases {
            // `secure_delete` zeroes the freed text in the database file, but the WAL still
            // holds old page images until a checkpoint: copy back and truncate it now, so
            // deleted content is gone from disk, not merely unreachable. Deletes are rare,
            // so the extra fsync is cheap overall.
            if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await
            {
                tracing::warn!(error = %err, "checkpoint after delete failed; the WAL may hold deleted text until the next checkpoint");
            }
        }
        Ok(results)
    }

    #[tracing::instrument(skip_all)]
    async fn event(&self, id: EventId) -> StoreResult<Option<Event>> {
        log::event(&self.reader, id).await
    }

    #[tracing::instrument(skip_all)]
    async fn event_by_client_msg_id(
        &self,
        sender: UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Event>> {
        let mut conn = self.reader.acquire().await?;
        log::event_by_client_msg_id(&mut conn, sender, client_msg_id).await
    }

    #[tracing::instrument(skip_all)]
    async fn events(&self, room: RoomId, page: Page, limit: u32) -> StoreResult<Vec<Event>> {
        log::events(&self.reader, room, page, limit).await
    }

    #[tracing::instrument(skip_all)]
    async fn set_read_cursor(&self, user: UserId, room: RoomId, seq: i64) -> StoreResult<i64> {
        log::set_read_cursor(&self.writer, user, room, seq).await
    }

    // ---- plugin key/value ----

    #[tracing::instrument(skip_all)]
    async fn kv_get(&self, plugin: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2")
            .bind(plugin)
            .bind(key)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| col(&r, "value")).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn kv_put(&self, plugin: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO plugin_kv (plugin, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
        )
        .bind(plugin)
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2")
            .bind(plugin)
            .bind(key)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn kv_keys(&self, plugin: &str, prefix: &str, max: u32) -> StoreResult<Vec<String>> {
        // A key range instead of LIKE: no escaping, and the primary-key index bounds both ends.
        let rows = match prefix_upper_bound(prefix) {
            Some(upper) => {
                sqlx::query(
                    "SELECT key FROM plugin_kv WHERE plugin = $1 AND key >= $2 AND key < $3
                     ORDER BY key LIMIT $4",
                )
                .bind(plugin)
                .bind(prefix)
                .bind(upper)
                .bind(limit(max))
                .fetch_all(&self.reader)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT key FROM plugin_kv WHERE plugin = $1 AND key >= $2
                     ORDER BY key LIMIT $3",
                )
                .bind(plugin)
                .bind(prefix)
                .bind(limit(max))
                .fetch_all(&self.reader)
                .await?
            }
        };
        rows.iter().map(|r| col(r, "key")).collect()
    }

    // ---- audit ----

    #[tracing::instrument(skip_all)]
    async fn append_audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now_millis())
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn recent_audit(&self, max: u32) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query(
            "SELECT id, at, actor, action, subject, detail FROM audit ORDER BY id DESC LIMIT $1",
        )
        .bind(limit(max))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditRecord {
                id: col(row, "id")?,
                at: col(row, "at")?,
                actor: col(row, "actor")?,
                action: col(row, "action")?,
                subject: col(row, "subject")?,
                detail: decode_json(&col::<_, String>(row, "detail")?)?,
            })
        })
        .collect()
    }
}

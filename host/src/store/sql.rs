//! The SQL both backends share, written once.
//!
//! SQLite and PostgreSQL run the same schema (migrations stay per backend) and, for all but a
//! handful of statements, the same SQL. What differs is small and named in [`Dialect`]: how a
//! write transaction begins, how JSON goes in and out, two SQL functions, the size probe,
//! and how a group-commit batch is guarded (SQLite: one writer and a one-statement fast path
//! for messages; PostgreSQL: room locks and a retry when the database breaks a deadlock).
//!
//! The rest is [`sql_store!`]: invoked once in each backend's module with its sqlx database,
//! it expands the row conversions, the room-log functions and the whole `Store` impl there.
//! A macro rather than functions generic over `sqlx::Database`: sqlx's generic executors need
//! a where-clause per function naming every bound and decoded type, which would be longer
//! than the code it shares; the macro keeps each method readable as plain SQL, and the store
//! contract suite (`tests/e2e/store_contract`) runs the one body on both databases.

use super::{Appended, NewEvent, StoreResult, UserId, search_text};

/// Most `(sender, client_msg_id)` keys one `events_by_client_msg_ids` statement asks for;
/// more take several statements. A power of two (the statement shapes double up to it).
pub(in crate::store) const KEYS_PER_LOOKUP: usize = 32;

/// What differs between the backends. Implemented by each store type; the shared body in
/// [`sql_store!`] reads these.
pub(super) trait Dialect {
    type Db: sqlx::Database;
    /// `sqlite` or `postgres`, for logs and `/metrics`.
    const NAME: &'static str;
    /// A query returning the database's size in bytes as `size`.
    const SIZE_SQL: &'static str;
    /// Appended to a bound JSON text parameter (`::jsonb` on PostgreSQL).
    const JSON_IN: &'static str;
    /// The event columns, with `metadata` read back as text.
    const EVENT_COLS: &'static str;
    /// `detail` read back as text.
    const DETAIL_OUT: &'static str;
    /// An events row `e` that is a live (not deleted) message, written the way the backend's
    /// partial index `events_live_messages` is, so the planner uses it.
    const LIVE_MESSAGE: &'static str;
    /// Whether search goes through SQLite's FTS5 table `events_fts` (joined for words of
    /// three characters or more); otherwise PostgreSQL's trigram index serves `LIKE` on
    /// `e.search_text` directly.
    const FTS5: bool;
    /// Written after `events e` when a search walks the senders' messages
    /// ([`SearchPlan::BySender`]): SQLite is told the index (its planner has no statistics
    /// to find it); PostgreSQL's planner needs no word.
    const SENDER_INDEX: &'static str;
    /// A condition that `e.search_text` contains the value bound to parameter `param`.
    fn contains(param: &str) -> String;
    /// The value to bind for [`Self::contains`] of a folded term.
    fn contains_value(term: &str) -> String;
    /// The `metadata` column read as JSON text (`metadata::text` on PostgreSQL).
    const METADATA_TEXT: &'static str;
    /// Appended to a SELECT whose rows the transaction must hold until it commits (the audit
    /// chain's head, a room whose reactions or pins are being checked), so that writers on
    /// other connections queue instead of acting on what they read before: ` FOR UPDATE` on
    /// PostgreSQL. SQLite needs none: its write transaction already excludes other writers.
    const FOR_UPDATE: &'static str;
    /// Whether a write runs on the calling thread ([`super::Store::writes_on_calling_thread`]).
    const WRITES_ON_CALLING_THREAD: bool;
    /// Upsert of a read cursor ($1 user, $2 room, $3 seq), clamped to `[0, last_seq]` and
    /// never moving back; returns `seq`.
    const READ_CURSOR_SQL: &'static str;

    /// The pool for reads.
    fn reads(&self) -> &sqlx::Pool<Self::Db>;
    /// The pool for writes.
    fn writes(&self) -> &sqlx::Pool<Self::Db>;
    /// Begin a write transaction that will not fail half-way for lock contention.
    fn begin_write(
        &self,
    ) -> impl Future<Output = StoreResult<sqlx::Transaction<'static, Self::Db>>> + Send;
    /// After text was erased: make sure it is gone from disk too (SQLite folds the WAL, whose
    /// old page images would still hold it).
    fn after_erase(&self) -> impl Future<Output = ()> + Send;
    /// One bounded step of the search index's deferred merging ([`super::Store::merge_search_index`]).
    fn merge_search_index_step(&self, pages: u32)
    -> impl Future<Output = StoreResult<bool>> + Send;
    /// [`super::Store::may_hold_client_msg_id`]: false only when no event with this key is
    /// stored, known without a read.
    fn may_hold_sent_key(&self, sender: UserId, client_msg_id: &str) -> bool;
    /// Append a batch: the backend's guard around the shared item loop.
    fn append_batch(
        &self,
        batch: &[NewEvent],
    ) -> impl Future<Output = StoreResult<Vec<StoreResult<Appended>>>> + Send;
}

/// A value bound to a search query's parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SearchBind {
    Int(i64),
    Text(String),
}

/// Where a search starts. Both plans give the same page; they differ in what they read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SearchPlan {
    /// From the word index where there is one (SQLite's FTS5 table), else from the events
    /// newest first (PostgreSQL's planner chooses among its indexes).
    Words,
    /// From the senders' live messages newest first (`events_sender_live`), checking the
    /// words on each: for `from:` searches whose senders wrote few messages, where the word
    /// index would hand back every message with the word, most of them from others.
    BySender,
}

/// The SQL of a search and its parameters, in order. The reader's membership is a
/// condition of the query itself, so no row of a room the reader cannot read is ever
/// produced (nor counted against the page's limit).
///
/// On SQLite, when the query has a word of three characters or more, the FTS5 trigram
/// index `events_fts` drives the query (walked newest first, so a page of a common word
/// stops early) unless the plan is [`SearchPlan::BySender`]: it hands back the rows that
/// hold all the words' trigrams, and every word (shorter ones too) is checked on those
/// candidate rows. On PostgreSQL the trigram index serves each `LIKE '%…%'` and the
/// planner combines them.
pub(super) fn search_sql<D: Dialect>(
    query: &super::SearchQuery,
    plan: SearchPlan,
) -> (String, Vec<SearchBind>) {
    use std::fmt::Write as _;

    let mut binds = Vec::new();
    let mut param = |bind: SearchBind| {
        binds.push(bind);
        format!("${}", binds.len())
    };
    let indexed: Vec<&String> = query
        .required
        .iter()
        .filter(|term| search_text::is_indexed(term))
        .collect();
    let mut sql = format!("SELECT {} FROM ", D::EVENT_COLS);
    let order = if plan == SearchPlan::BySender {
        let _ = write!(sql, "events e{} WHERE ", D::SENDER_INDEX);
        "e.id"
    } else if D::FTS5 && !indexed.is_empty() {
        // The rows holding every word's trigrams, each trigram a quoted FTS5 string (quotes
        // doubled inside): the index keeps no positions (migration 0021), so it cannot
        // match a word as a phrase; the words themselves are checked on the rows below.
        let mut trigrams: Vec<String> = Vec::new();
        for trigram in indexed
            .iter()
            .flat_map(|term| search_text::index_trigrams(term))
        {
            if !trigrams.contains(&trigram) {
                trigrams.push(trigram);
            }
        }
        let expression = trigrams
            .iter()
            .map(|trigram| format!("\"{}\"", trigram.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" ");
        let p = param(SearchBind::Text(expression));
        let _ = write!(
            sql,
            "events_fts f JOIN events e ON e.id = f.rowid WHERE f.events_fts MATCH {p} AND "
        );
        "f.rowid"
    } else {
        sql.push_str("events e WHERE ");
        "e.id"
    };
    let _ = write!(sql, "{} AND e.search_text IS NOT NULL", D::LIVE_MESSAGE);
    if let Some(reader) = query.reader {
        let p = param(SearchBind::Int(reader));
        let _ = write!(
            sql,
            " AND EXISTS (SELECT 1 FROM members m WHERE m.room_id = e.room_id AND m.user_id = {p})"
        );
    }
    for term in &query.required {
        let p = param(SearchBind::Text(D::contains_value(term)));
        let _ = write!(sql, " AND {}", D::contains(&p));
    }
    for term in &query.excluded {
        let p = param(SearchBind::Text(D::contains_value(term)));
        let _ = write!(sql, " AND NOT ({})", D::contains(&p));
    }
    for (column, ids) in [("e.sender_id", &query.senders), ("e.room_id", &query.rooms)] {
        if !ids.is_empty() {
            let list: Vec<String> = ids.iter().map(|&id| param(SearchBind::Int(id))).collect();
            let _ = write!(sql, " AND {column} IN ({})", list.join(", "));
        }
    }
    if let Some(since) = query.since {
        let p = param(SearchBind::Int(since));
        let _ = write!(sql, " AND e.created_at >= {p}");
    }
    if let Some(until) = query.until {
        let p = param(SearchBind::Int(until));
        let _ = write!(sql, " AND e.created_at < {p}");
    }
    if query.has_file {
        // As a set the planner can start from (files are few, indexed by message).
        sql.push_str(
            " AND e.id IN (SELECT x.message_id FROM files x WHERE x.state = 'ready' AND x.message_id IS NOT NULL)",
        );
    }
    if let Some(before) = query.before_id {
        let p = param(SearchBind::Int(before));
        let _ = write!(sql, " AND {order} < {p}");
    }
    if let Some(recent) = query.recent_events {
        let p = param(SearchBind::Int(i64::try_from(recent).unwrap_or(i64::MAX)));
        let _ = write!(
            sql,
            " AND e.id > (SELECT COALESCE(MAX(id), 0) FROM events) - {p}"
        );
    }
    let p = param(SearchBind::Int(i64::from(query.limit.max(1))));
    let _ = write!(sql, " ORDER BY {order} DESC LIMIT {p}");
    (sql, binds)
}

/// Expand the shared store body in a backend's module: `sql_store!(StoreType, sqlx_db)`,
/// where `StoreType: Dialect<Db = sqlx::sqlx_db>`. Brings into that module `EventRow`,
/// the row conversions, the room-log functions (`apply`, `events`, …) and
/// `impl Store for StoreType`.
macro_rules! sql_store {
    ($store:ty, $db:ident) => {
        use $crate::store::chain;
        use $crate::store::search_text;
        use $crate::store::common::{
            Violation, col, constraint_name, qualified, decode_json, decode_metadata, direct_key, direct_peer,
            encode_metadata, initial_members, is_item_failure, limit, map_write, parse_event_kind,
            not_found_on_foreign_key, parse_role, prefix_upper_bound, refuse_row_errors, violation,
        };
        use $crate::store::{
            ThreadReply, Appended, AuditCheckpoint, AuditRecord, Event, EventId, EventKind, EventVersion,
            FileRecord, FileUsage, FinishedFile, LegalHold, Member, Metadata, NewEvent, NewHold, NewRoom, NewUser, Page, ReindexStep, Role, Room,
            RoomId, RoomKind, RoomSummary, SearchQuery, Session, Store, StoreError, StoreResult,
            DirectoryGroup, ExternalIdentity, IncomingWebhook, Millis, Annotations, Mentions, Pin, ReactionCount, Reactors, ThreadSummary, User, UserId, WritePolicy,
            now_millis,
        };
        use $crate::store::sql::{SearchBind, SearchPlan, search_sql};

        type DbRow = <sqlx::$db as sqlx::Database>::Row;
        type DbConnection = <sqlx::$db as sqlx::Database>::Connection;

        const USER_COLS: &str =
            "id, name, display_name, is_admin, is_compliance, is_bot, active, created_at";
        const ROOM_COLS: &str =
            "id, kind, name, topic, created_by, created_at, last_seq, members_may_pin";
        const SESSION_COLS: &str = "id, user_id, refresh_hash, created_at, expires_at, revoked";
        const MEMBER_COLS: &str = "room_id, user_id, role, joined_at";
        const GROUP_COLS: &str = "id, source, name, external_id, created_at";
        const WEBHOOK_COLS: &str =
            "id, room_id, bot_user_id, name, key_hash, created_by, created_at, revoked_at";
        /// The unique index that makes `(sender, client_msg_id)` idempotent.
        const CLIENT_MSG_INDEX: &str = "events_client_msg";

        /// Set one of a user's boolean columns (`active`, `is_admin`, …: a name from the
        /// code, never from input); `NotFound` for no such user.
        async fn set_user_flag(
            pool: &sqlx::Pool<sqlx::$db>,
            id: UserId,
            column: &'static str,
            value: bool,
        ) -> StoreResult<()> {
            let done = sqlx::query(&format!("UPDATE users SET {column} = $2 WHERE id = $1"))
                .bind(id)
                .bind(value)
                .execute(pool)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        }

        /// An account's identity at a provider, from a row's `external_id` and `email`.
        fn identity_from_row(row: &DbRow) -> StoreResult<ExternalIdentity> {
            Ok(ExternalIdentity {
                external_id: col(row, "external_id")?,
                email: col(row, "email")?,
            })
        }

        /// A row as a domain type (`User`, `Room`, `Session`, `Member` derive `FromRow`); a
        /// row that does not decode is a corrupt database, not a transient error.
        fn from_row<T>(row: &DbRow) -> StoreResult<T>
        where
            T: for<'r> sqlx::FromRow<'r, DbRow>,
        {
            T::from_row(row).map_err(|e| StoreError::Corrupt(e.to_string()))
        }

        fn event_from_row(row: &DbRow) -> StoreResult<Event> {
            Ok(Event {
                id: col(row, "id")?,
                room_id: col(row, "room_id")?,
                seq: col(row, "seq")?,
                kind: parse_event_kind(&col::<_, String>(row, "kind")?)?,
                sender_id: col(row, "sender_id")?,
                target: col(row, "target")?,
                body: col(row, "body")?,
                metadata: decode_metadata(&col::<_, String>(row, "metadata")?)?,
                client_msg_id: col(row, "client_msg_id")?,
                created_at: col(row, "created_at")?,
                edited_at: col(row, "edited_at")?,
                deleted: col(row, "deleted")?,
                thread_root: col(row, "thread_root")?,
                also_to_room: col(row, "also_to_room")?,
                mentions: decode_mentions(col(row, "mentions")?)?,
                mentions_room: col(row, "mentions_room")?,
                thread: None,
                reactions: Vec::new(),
            })
        }

        /// `events.mentions`: member ids, comma-separated.
        fn decode_mentions(text: Option<String>) -> StoreResult<Vec<UserId>> {
            text.as_deref()
                .unwrap_or_default()
                .split(',')
                .filter(|id| !id.is_empty())
                .map(|id| {
                    id.parse()
                        .map_err(|_| StoreError::Corrupt(format!("mention list {id:?}")))
                })
                .collect()
        }

        fn encode_mentions(mentions: &Mentions) -> Option<String> {
            (!mentions.users.is_empty()).then(|| {
                mentions
                    .users
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        }

        /// One page of a log read by `seq` — the events matching `filter` (a condition on
        /// the parameters `$1…` bound to `filter_binds`) after or before the page's bound —
        /// at most `max`, oldest first. `Page::Before` reads the newest `max` before the
        /// bound, newest first, and turns them around.
        async fn log_page(
            pool: &sqlx::Pool<sqlx::$db>,
            filter: &str,
            filter_binds: &[i64],
            page: Page,
            max: u32,
        ) -> StoreResult<Vec<Event>> {
            let (op, order, bound) = match page {
                Page::After(after) => (">", "ASC", after),
                Page::Before(before) => ("<", "DESC", before),
            };
            let sql = format!(
                "SELECT {} FROM events WHERE {filter} AND seq {op} ${} ORDER BY seq {order} LIMIT ${}",
                <$store>::EVENT_COLS,
                filter_binds.len() + 1,
                filter_binds.len() + 2
            );
            let mut query = sqlx::query(&sql);
            for value in filter_binds {
                query = query.bind(*value);
            }
            let mut events = query
                .bind(bound)
                .bind(limit(max))
                .fetch_all(pool)
                .await?
                .iter()
                .map(event_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            if matches!(page, Page::Before(_)) {
                events.reverse();
            }
            Ok(events)
        }

        /// Forget whom `message` mentions by name.
        async fn unindex_mentions(conn: &mut DbConnection, message: EventId) -> StoreResult<()> {
            sqlx::query("DELETE FROM user_mentions WHERE event_id = $1")
                .bind(message)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// Index whom `message` (at `seq` in `room`) mentions by name, replacing what it
        /// mentioned.
        async fn index_mentions(
            conn: &mut DbConnection,
            message: EventId,
            room: RoomId,
            seq: i64,
            mentions: &Mentions,
        ) -> StoreResult<()> {
            unindex_mentions(conn, message).await?;
            for user in &mentions.users {
                sqlx::query(
                    "INSERT INTO user_mentions (user_id, event_id, room_id, seq) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id, event_id) DO NOTHING",
                )
                .bind(user)
                .bind(message)
                .bind(room)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        fn audit_from_row(row: &DbRow) -> StoreResult<AuditRecord> {
            Ok(AuditRecord {
                id: col(row, "id")?,
                seq: col::<_, Option<i64>>(row, "seq")?.unwrap_or(0),
                at: col(row, "at")?,
                actor: col(row, "actor")?,
                action: col(row, "action")?,
                subject: col(row, "subject")?,
                detail: decode_json(&col::<_, String>(row, "detail")?)?,
                prev_hash: col(row, "prev_hash")?,
                hash: col(row, "hash")?,
            })
        }

        /// The audit chain's head, locked for this transaction (created on first use).
        async fn lock_audit_head(conn: &mut DbConnection) -> StoreResult<(i64, String)> {
            sqlx::query(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '')
                 ON CONFLICT (id) DO NOTHING",
            )
            .execute(&mut *conn)
            .await?;
            let row = sqlx::query(&format!(
                "SELECT seq, hash FROM audit_head WHERE id = 1{}",
                <$store>::FOR_UPDATE
            ))
            .fetch_one(&mut *conn)
            .await?;
            Ok((col(&row, "seq")?, col(&row, "hash")?))
        }

        async fn set_audit_head(conn: &mut DbConnection, seq: i64, hash: &str) -> StoreResult<()> {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(seq)
                .bind(hash)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        async fn insert_audit_record(
            conn: &mut DbConnection,
            seq: i64,
            at: i64,
            (actor, action, subject, detail): (&str, &str, &str, &serde_json::Value),
            (prev_hash, hash): (&str, &str),
        ) -> StoreResult<()> {
            sqlx::query(&format!(
                "INSERT INTO audit (seq, at, actor, action, subject, detail, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6{}, $7, $8)",
                <$store>::JSON_IN
            ))
            .bind(seq)
            .bind(at)
            .bind(actor)
            .bind(action)
            .bind(subject)
            .bind(detail.to_string())
            .bind(prev_hash)
            .bind(hash)
            .execute(&mut *conn)
            .await
            .map_err(|e| refuse_row_errors(StoreError::Backend(e)))?;
            Ok(())
        }

        impl $store {
            /// How many live messages `senders` wrote together, counted no further than
            /// `cap` (a walk of `events_sender_live`, so a search can tell cheaply whether
            /// walking their messages is the shorter way).
            async fn live_messages_of(&self, senders: &[UserId], cap: u64) -> StoreResult<u64> {
                let list: Vec<String> = (1..=senders.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "SELECT COUNT(*) AS n FROM (SELECT 1 FROM events e{} WHERE e.sender_id IN ({}) AND {} LIMIT ${})",
                    <$store>::SENDER_INDEX,
                    list.join(", "),
                    <$store>::LIVE_MESSAGE,
                    senders.len() + 1
                );
                let mut statement = sqlx::query(&sql);
                for &sender in senders {
                    statement = statement.bind(sender);
                }
                let row = statement
                    .bind(i64::try_from(cap).unwrap_or(i64::MAX))
                    .fetch_one(self.reads())
                    .await?;
                Ok(u64::try_from(col::<_, i64>(&row, "n")?).unwrap_or(0))
            }

            /// Link audit records written before the chain existed (an upgraded database),
            /// in id order, after the current head. Runs at open; a no-op afterwards.
            pub(super) async fn chain_unsealed(&self) -> StoreResult<u64> {
                let mut chained = 0;
                loop {
                    let mut tx = self.begin_write().await?;
                    let (mut seq, mut head) = lock_audit_head(&mut tx).await?;
                    let rows = sqlx::query(&format!(
                        "SELECT id, at, actor, action, subject, {} FROM audit
                         WHERE seq IS NULL ORDER BY id LIMIT 500",
                        <$store>::DETAIL_OUT
                    ))
                    .fetch_all(&mut *tx)
                    .await?;
                    if rows.is_empty() {
                        tx.commit().await?;
                        return Ok(chained);
                    }
                    for row in &rows {
                        let id: i64 = col(row, "id")?;
                        let detail = decode_json(&col::<_, String>(row, "detail")?)?;
                        let hash = chain::record_hash(
                            &head,
                            col(row, "at")?,
                            &col::<_, String>(row, "actor")?,
                            &col::<_, String>(row, "action")?,
                            &col::<_, String>(row, "subject")?,
                            &detail,
                        );
                        seq += 1;
                        sqlx::query(
                            "UPDATE audit SET seq = $2, prev_hash = $3, hash = $4 WHERE id = $1",
                        )
                        .bind(id)
                        .bind(seq)
                        .bind(&head)
                        .bind(&hash)
                        .execute(&mut *tx)
                        .await?;
                        head = hash;
                        chained += 1;
                    }
                    set_audit_head(&mut tx, seq, &head).await?;
                    tx.commit().await?;
                }
            }
        }

        async fn insert_members(
            conn: &mut DbConnection,
            room: RoomId,
            members: &[(UserId, Role)],
            now: i64,
        ) -> StoreResult<()> {
            for (user, role) in members {
                sqlx::query(
                    "INSERT INTO members (room_id, user_id, role, joined_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(room)
                .bind(user)
                .bind(role.as_str())
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(|e| map_write(e, "already_member"))?;
            }
            Ok(())
        }

        // ---- the room log ----

        /// One item of a group-commit batch inside `SAVEPOINT item`, on a transaction the
        /// backend opened (and guarded): a domain failure or a refused row rolls back to the
        /// savepoint, undoing that item's `seq` bump and rows, and is the item's own result
        /// while the batch goes on. The outer `Err` means the batch cannot go on.
        async fn apply_in_savepoint(
            tx: &mut DbConnection,
            item: &NewEvent,
            now: i64,
            policy: WritePolicy,
        ) -> StoreResult<StoreResult<Appended>> {
            sqlx::query("SAVEPOINT item").execute(&mut *tx).await?;
            match apply(tx, item, now, policy)
                .await
                .map_err(refuse_row_errors)
            {
                Ok(done) => {
                    sqlx::query("RELEASE SAVEPOINT item")
                        .execute(&mut *tx)
                        .await?;
                    Ok(Ok(done))
                }
                Err(err) if is_item_failure(&err) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT item")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("RELEASE SAVEPOINT item")
                        .execute(&mut *tx)
                        .await?;
                    Ok(Err(err))
                }
                Err(err) => Err(err),
            }
        }

        /// Whether an active legal hold covers the message `message` (its room, sender and
        /// creation time) at `now`. Holds are few: read them all and match here.
        async fn held(conn: &mut DbConnection, message: EventId, now: i64) -> StoreResult<bool> {
            let Some(row) =
                sqlx::query("SELECT room_id, sender_id, created_at FROM events WHERE id = $1")
                    .bind(message)
                    .fetch_optional(&mut *conn)
                    .await?
            else {
                return Ok(false);
            };
            let (room, sender, created): (RoomId, UserId, i64) = (
                col(&row, "room_id")?,
                col(&row, "sender_id")?,
                col(&row, "created_at")?,
            );
            let holds = sqlx::query(&format!(
                "SELECT {HOLD_COLS} FROM legal_holds
                 WHERE released_at IS NULL OR released_at > $1"
            ))
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            for row in &holds {
                if hold_from_row(row)?.covers(room, sender, created) {
                    return Ok(true);
                }
            }
            Ok(false)
        }

        /// Keep the current text of `message` (and, for a delete, of its edits) before it
        /// is replaced.
        async fn keep_versions(
            conn: &mut DbConnection,
            message: EventId,
            cause: &str,
            now: i64,
        ) -> StoreResult<()> {
            let which = if cause == "delete" {
                "(id = $1 OR (kind = 'edit' AND target = $1))"
            } else {
                "id = $1"
            };
            sqlx::query(&format!(
                "INSERT INTO event_versions (event_id, replaced_at, cause, body, metadata)
                 SELECT id, $2, $3, body, {} FROM events
                 WHERE {which} AND body IS NOT NULL",
                <$store>::METADATA_TEXT
            ))
            .bind(message)
            .bind(now)
            .bind(cause)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        const FILE_COLS: &str = "id, room_id, uploader_id, name, content_type, size, sha256, \
                                 storage_key, state, created_at, message_id, quarantined_by, \
                                 quarantine_reason, has_thumbnail, received";

        const HOLD_COLS: &str = "id, name, users, rooms, from_at, until_at, created_by, \
                                 created_at, release_requested_by, release_requested_at, \
                                 released_at";

        fn hold_from_row(row: &DbRow) -> StoreResult<LegalHold> {
            let ids = |name: &'static str| -> StoreResult<Vec<i64>> {
                serde_json::from_str(&col::<_, String>(row, name)?)
                    .map_err(|e| StoreError::Corrupt(format!("legal_holds.{name}: {e}")))
            };
            Ok(LegalHold {
                id: col(row, "id")?,
                name: col(row, "name")?,
                users: ids("users")?,
                rooms: ids("rooms")?,
                from_at: col(row, "from_at")?,
                until_at: col(row, "until_at")?,
                created_by: col(row, "created_by")?,
                created_at: col(row, "created_at")?,
                release_requested_by: col(row, "release_requested_by")?,
                release_requested_at: col(row, "release_requested_at")?,
                released_at: col(row, "released_at")?,
            })
        }

        /// Claim `files` for the new message `event`: each must be a finished upload by its
        /// sender, in its room, not attached yet. Any other makes the item fail (its savepoint
        /// rolls back with the message): a file is never attached twice or half.
        async fn attach_files(
            conn: &mut DbConnection,
            event: &Event,
            files: &[i64],
        ) -> StoreResult<()> {
            for &file in files {
                let claimed = sqlx::query(
                    "UPDATE files SET message_id = $1
                     WHERE id = $2 AND room_id = $3 AND uploader_id = $4
                       AND state = 'ready' AND message_id IS NULL",
                )
                .bind(event.id)
                .bind(file)
                .bind(event.room_id)
                .bind(event.sender_id)
                .execute(&mut *conn)
                .await?;
                if claimed.rows_affected() != 1 {
                    return Err(StoreError::Conflict("file_unavailable"));
                }
            }
            Ok(())
        }

        /// Apply one item inside `SAVEPOINT item`. `policy.preserve`: keep earlier texts on
        /// every edit and delete, not only under a hold; `policy.index_search`: write the
        /// search text.
        async fn apply(
            conn: &mut DbConnection,
            item: &NewEvent,
            now: i64,
            policy: WritePolicy,
        ) -> StoreResult<Appended> {
            let fresh = |event| Appended {
                event,
                duplicate: false,
            };
            match item {
                NewEvent::Message {
                    room_id,
                    sender_id,
                    client_msg_id,
                    body,
                    metadata,
                    files,
                    thread,
                    mentions,
                } => {
                    // A retry (by any node, or earlier in this batch) returns the stored
                    // original before any seq is taken.
                    if let Some(original) =
                        event_by_client_msg_id(conn, *sender_id, client_msg_id).await?
                    {
                        return Ok(Appended {
                            event: original,
                            duplicate: true,
                        });
                    }
                    if let Some(thread) = thread {
                        check_thread_root(conn, *room_id, thread.root).await?;
                    }
                    let seq = next_seq(conn, *room_id).await?;
                    let row = NewRow {
                        room_id: *room_id,
                        kind: EventKind::Message,
                        sender_id: *sender_id,
                        target: None,
                        body: Some(body),
                        metadata,
                        client_msg_id: Some(client_msg_id),
                        thread: *thread,
                        mentions: Some(mentions),
                    };
                    match insert_at(conn, seq, row, now, policy).await {
                        Ok(event) => {
                            attach_files(conn, &event, files).await?;
                            Ok(fresh(event))
                        }
                        // Lost a race with another node storing the same send (to another
                        // room, as the room lock serialises same-room sends): give the seq
                        // back, answer with theirs. (One SQLite writer never races.)
                        Err(StoreError::Backend(e))
                            if violation(&e) == Some(Violation::Unique)
                                && constraint_name(&e) == Some(CLIENT_MSG_INDEX) =>
                        {
                            sqlx::query("ROLLBACK TO SAVEPOINT item")
                                .execute(&mut *conn)
                                .await?;
                            let original = event_by_client_msg_id(conn, *sender_id, client_msg_id)
                                .await?
                                .ok_or_else(|| {
                                    StoreError::Corrupt("lost idempotency race".into())
                                })?;
                            Ok(Appended {
                                event: original,
                                duplicate: true,
                            })
                        }
                        Err(e) => Err(e),
                    }
                }
                NewEvent::Edit {
                    room_id,
                    sender_id,
                    target,
                    body,
                    metadata,
                    mentions,
                } => {
                    let seq = next_seq(conn, *room_id).await?;
                    let (author, _) = live_message(conn, *room_id, *target).await?;
                    if author != *sender_id {
                        return Err(StoreError::Conflict("not_author"));
                    }
                    if policy.preserve || held(conn, *target, now).await? {
                        keep_versions(conn, *target, "edit", now).await?;
                    }
                    let message_seq: i64 = sqlx::query_scalar(&format!(
                        "UPDATE events SET body = $2, metadata = $3{}, edited_at = $4,
                                           search_text = $5, mentions = $6, mentions_room = $7
                         WHERE id = $1 RETURNING seq",
                        <$store>::JSON_IN
                    ))
                    .bind(target)
                    .bind(body)
                    .bind(encode_metadata(metadata))
                    .bind(now)
                    .bind(policy.search_text(body))
                    .bind(encode_mentions(mentions))
                    .bind(mentions.room)
                    .fetch_one(&mut *conn)
                    .await?;
                    index_mentions(conn, *target, *room_id, message_seq, mentions).await?;
                    let row = NewRow {
                        metadata,
                        ..NewRow::about(*room_id, EventKind::Edit, *sender_id, *target, Some(body))
                    };
                    Ok(fresh(insert_at(conn, seq, row, now, policy).await?))
                }
                NewEvent::Delete {
                    room_id,
                    sender_id,
                    target,
                } => {
                    let seq = next_seq(conn, *room_id).await?;
                    live_message(conn, *room_id, *target).await?;
                    let kept = policy.preserve || held(conn, *target, now).await?;
                    if kept {
                        keep_versions(conn, *target, "delete", now).await?;
                    }
                    // Its files go with it: out of users' reach at once; their bytes are
                    // purged after the commit, unless they are kept like the text.
                    sqlx::query("UPDATE files SET state = $2 WHERE message_id = $1")
                        .bind(target)
                        .bind(if kept { "kept" } else { "deleted" })
                        .execute(&mut *conn)
                        .await?;
                    // Erase, not hide: the text (and metadata, which plugins may derive from
                    // the text) of the message and of every edit of it leaves the database.
                    sqlx::query(
                        "UPDATE events SET body = NULL, metadata = '{}', deleted = TRUE, search_text = NULL
                         WHERE id = $1 OR (kind = 'edit' AND target = $1)",
                    )
                    .bind(target)
                    .execute(&mut *conn)
                    .await?;
                    unindex_mentions(conn, *target).await?;
                    forget_reactions_and_pins(conn, *target).await?;
                    let row = NewRow::about(*room_id, EventKind::Delete, *sender_id, *target, None);
                    Ok(fresh(insert_at(conn, seq, row, now, policy).await?))
                }
                NewEvent::Join {
                    room_id,
                    actor_id,
                    user_id,
                    role,
                } => {
                    let seq = next_seq(conn, *room_id).await?;
                    sqlx::query(
                        "INSERT INTO members (room_id, user_id, role, joined_at)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(room_id)
                    .bind(user_id)
                    .bind(role.as_str())
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| match violation(&e) {
                        Some(Violation::Unique) => StoreError::Conflict("already_member"),
                        Some(Violation::ForeignKey) => StoreError::NotFound,
                        None => StoreError::Backend(e),
                    })?;
                    let metadata =
                        Metadata::from([("role".to_string(), role.as_str().to_string())]);
                    let row = NewRow {
                        metadata: &metadata,
                        ..NewRow::about(*room_id, EventKind::MemberJoined, *actor_id, *user_id, None)
                    };
                    Ok(fresh(insert_at(conn, seq, row, now, policy).await?))
                }
                NewEvent::Leave {
                    room_id,
                    actor_id,
                    user_id,
                } => {
                    let seq = next_seq(conn, *room_id).await?;
                    let done =
                        sqlx::query("DELETE FROM members WHERE room_id = $1 AND user_id = $2")
                            .bind(room_id)
                            .bind(user_id)
                            .execute(&mut *conn)
                            .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    let row = NewRow::about(*room_id, EventKind::MemberLeft, *actor_id, *user_id, None);
                    Ok(fresh(insert_at(conn, seq, row, now, policy).await?))
                }
                NewEvent::React {
                    room_id,
                    sender_id,
                    target,
                    emoji,
                    distinct_max,
                } => {
                    // Checked under the room's lock: two identical reactions at once are one
                    // reaction and a duplicate, two new emoji at the limit are one refusal,
                    // and a delete cannot slip in between the check and the insert.
                    lock_room(conn, *room_id).await?;
                    live_message(conn, *room_id, *target).await?;
                    let given: Option<i64> = sqlx::query_scalar(
                        "SELECT event_id FROM reactions
                          WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
                    )
                    .bind(target)
                    .bind(emoji)
                    .bind(sender_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(given) = given {
                        return Ok(Appended {
                            event: event_by_id(conn, given).await?,
                            duplicate: true,
                        });
                    }
                    let (distinct, known): (i64, bool) = {
                        let row = sqlx::query(
                            "SELECT count(DISTINCT emoji) AS distinct_emoji,
                                    count(CASE WHEN emoji = $2 THEN 1 END) > 0 AS known
                               FROM reactions WHERE message_id = $1",
                        )
                        .bind(target)
                        .bind(emoji)
                        .fetch_one(&mut *conn)
                        .await?;
                        (col(&row, "distinct_emoji")?, col(&row, "known")?)
                    };
                    if !known && distinct >= i64::from(*distinct_max) {
                        return Err(StoreError::Conflict("too_many_reactions"));
                    }
                    let seq = next_seq(conn, *room_id).await?;
                    let row = NewRow::about(*room_id, EventKind::Reaction, *sender_id, *target, Some(emoji));
                    let event = insert_at(conn, seq, row, now, policy).await?;
                    sqlx::query(
                        "INSERT INTO reactions (message_id, emoji, user_id, event_id, created_at)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(target)
                    .bind(emoji)
                    .bind(sender_id)
                    .bind(event.id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    Ok(fresh(event))
                }
                NewEvent::Unreact {
                    room_id,
                    sender_id,
                    target,
                    emoji,
                } => {
                    live_message(conn, *room_id, *target).await?;
                    let removed = sqlx::query(
                        "DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
                    )
                    .bind(target)
                    .bind(emoji)
                    .bind(sender_id)
                    .execute(&mut *conn)
                    .await?;
                    if removed.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    let seq = next_seq(conn, *room_id).await?;
                    let row = NewRow::about(*room_id, EventKind::ReactionRemoved, *sender_id, *target, Some(emoji));
                    Ok(fresh(insert_at(conn, seq, row, now, policy).await?))
                }
                NewEvent::Pin {
                    room_id,
                    actor_id,
                    target,
                    pins_max,
                } => {
                    // Under the room's lock, like a reaction: one pin per message, the limit
                    // exact, no delete in between.
                    lock_room(conn, *room_id).await?;
                    live_message(conn, *room_id, *target).await?;
                    let pinned: Option<i64> = sqlx::query_scalar(
                        "SELECT event_id FROM pins WHERE room_id = $1 AND message_id = $2",
                    )
                    .bind(room_id)
                    .bind(target)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(pinned) = pinned {
                        return Ok(Appended {
                            event: event_by_id(conn, pinned).await?,
                            duplicate: true,
                        });
                    }
                    let pins: i64 = sqlx::query_scalar("SELECT count(*) FROM pins WHERE room_id = $1")
                        .bind(room_id)
                        .fetch_one(&mut *conn)
                        .await?;
                    if pins >= i64::from(*pins_max) {
                        return Err(StoreError::Conflict("too_many_pins"));
                    }
                    let seq = next_seq(conn, *room_id).await?;
                    let row = NewRow::about(*room_id, EventKind::Pinned, *actor_id, *target, None);
                    let event = insert_at(conn, seq, row, now, policy).await?;
                    sqlx::query(
                        "INSERT INTO pins (room_id, message_id, pinned_by, event_id, pinned_at)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(room_id)
                    .bind(target)
                    .bind(actor_id)
                    .bind(event.id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    Ok(fresh(event))
                }
                NewEvent::Unpin {
                    room_id,
                    actor_id,
                    target,
                } => {
                    let removed =
                        sqlx::query("DELETE FROM pins WHERE room_id = $1 AND message_id = $2")
                            .bind(room_id)
                            .bind(target)
                            .execute(&mut *conn)
                            .await?;
                    if removed.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    let seq = next_seq(conn, *room_id).await?;
                    let row = NewRow::about(*room_id, EventKind::Unpinned, *actor_id, *target, None);
                    Ok(fresh(insert_at(conn, seq, row, now, policy).await?))
                }
            }
        }

        /// The columns of a new event that vary by kind.
        struct NewRow<'a> {
            room_id: RoomId,
            kind: EventKind,
            sender_id: UserId,
            target: Option<i64>,
            body: Option<&'a String>,
            metadata: &'a Metadata,
            client_msg_id: Option<&'a String>,
            thread: Option<ThreadReply>,
            mentions: Option<&'a Mentions>,
        }

        impl<'a> NewRow<'a> {
            /// An event about another row (a delete, a membership change, a reaction, a
            /// pin): no metadata, client id, thread or mentions of its own.
            fn about(
                room_id: RoomId,
                kind: EventKind,
                sender_id: UserId,
                target: i64,
                body: Option<&'a String>,
            ) -> Self {
                static NONE: Metadata = Metadata::new();
                NewRow {
                    room_id,
                    kind,
                    sender_id,
                    target: Some(target),
                    body,
                    metadata: &NONE,
                    client_msg_id: None,
                    thread: None,
                    mentions: None,
                }
            }
        }

        /// Take the room's next seq; `NotFound` if there is no such room. On PostgreSQL the
        /// row lock this UPDATE holds until commit keeps seqs gap-free across nodes.
        async fn next_seq(conn: &mut DbConnection, room: RoomId) -> StoreResult<i64> {
            let row = sqlx::query(
                "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
            )
            .bind(room)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)?;
            col(&row, "last_seq")
        }

        /// Hold the room's row until commit without taking a seq (`NotFound` if there is no
        /// such room): every append to the room takes the same lock in [`next_seq`].
        async fn lock_room(conn: &mut DbConnection, room: RoomId) -> StoreResult<()> {
            sqlx::query(&format!(
                "SELECT id FROM rooms WHERE id = $1{}",
                <$store>::FOR_UPDATE
            ))
            .bind(room)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)?;
            Ok(())
        }

        /// Check that `target` is a live message in `room`; return its author and, for a
        /// reply, its thread's root.
        async fn live_message(
            conn: &mut DbConnection,
            room: RoomId,
            target: EventId,
        ) -> StoreResult<(UserId, Option<EventId>)> {
            let row = sqlx::query(
                "SELECT kind, sender_id, deleted, thread_root FROM events
                  WHERE id = $1 AND room_id = $2",
            )
            .bind(target)
            .bind(room)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)?;
            if parse_event_kind(&col::<_, String>(&row, "kind")?)? != EventKind::Message {
                return Err(StoreError::Conflict("not_a_message"));
            }
            if col::<_, bool>(&row, "deleted")? {
                return Err(StoreError::Conflict("message_deleted"));
            }
            Ok((col(&row, "sender_id")?, col(&row, "thread_root")?))
        }

        /// A reply's root must be a live top-level message of the room: one level of
        /// threads, as people use them (a reply to a reply is refused, not re-rooted).
        async fn check_thread_root(
            conn: &mut DbConnection,
            room: RoomId,
            root: EventId,
        ) -> StoreResult<()> {
            match live_message(conn, room, root).await? {
                (_, Some(_)) => Err(StoreError::Conflict("nested_thread")),
                (_, None) => Ok(()),
            }
        }

        /// A deleted or erased message keeps no reactions and is no longer pinned.
        async fn forget_reactions_and_pins(
            conn: &mut DbConnection,
            message: EventId,
        ) -> StoreResult<()> {
            sqlx::query("DELETE FROM reactions WHERE message_id = $1")
                .bind(message)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM pins WHERE message_id = $1")
                .bind(message)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// An event that must exist (a reaction's or pin's own event).
        async fn event_by_id(conn: &mut DbConnection, id: EventId) -> StoreResult<Event> {
            sqlx::query(&format!("SELECT {} FROM events WHERE id = $1", <$store>::EVENT_COLS))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(event_from_row)
                .transpose()?
                .ok_or_else(|| StoreError::Corrupt(format!("event {id} is missing")))
        }

        async fn insert_at(
            conn: &mut DbConnection,
            seq: i64,
            row: NewRow<'_>,
            now: i64,
            policy: WritePolicy,
        ) -> StoreResult<Event> {
            let stored = sqlx::query(&format!(
                "INSERT INTO events
                    (room_id, seq, kind, sender_id, target, body, metadata, client_msg_id,
                     created_at, search_text, thread_root, also_to_room, mentions, mentions_room)
                 VALUES ($1, $2, $3, $4, $5, $6, $7{}, $8, $9, $10, $11, $12, $13, $14)
                 RETURNING {}",
                <$store>::JSON_IN,
                <$store>::EVENT_COLS
            ))
            .bind(row.room_id)
            .bind(seq)
            .bind(row.kind.as_str())
            .bind(row.sender_id)
            .bind(row.target)
            .bind(row.body)
            .bind(encode_metadata(row.metadata))
            .bind(row.client_msg_id)
            .bind(now)
            // Only a message is found by its text (an edit's text is the message's now).
            .bind(
                row.body
                    .filter(|_| row.kind == EventKind::Message)
                    .and_then(|body| policy.search_text(body)),
            )
            .bind(row.thread.map(|t| t.root))
            .bind(row.thread.is_some_and(|t| t.also_to_room))
            .bind(row.mentions.and_then(encode_mentions))
            .bind(row.mentions.is_some_and(|m| m.room))
            .fetch_one(&mut *conn)
            .await
            .map_err(not_found_on_foreign_key)?;
            let event = event_from_row(&stored)?;
            if let Some(mentions) = row.mentions
                && !mentions.users.is_empty()
            {
                index_mentions(conn, event.id, event.room_id, event.seq, mentions).await?;
            }
            Ok(event)
        }

        async fn event_by_client_msg_id(
            conn: &mut DbConnection,
            sender: UserId,
            client_msg_id: &str,
        ) -> StoreResult<Option<Event>> {
            sqlx::query(&format!(
                "SELECT {} FROM events WHERE sender_id = $1 AND client_msg_id = $2",
                <$store>::EVENT_COLS
            ))
            .bind(sender)
            .bind(client_msg_id)
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(event_from_row)
            .transpose()
        }

        /// Why a new message's fast-path insert stored nothing: a retry of a stored send
        /// (its original, flagged `duplicate`) or an unknown room.
        async fn retry_or_unknown_room(
            conn: &mut DbConnection,
            sender: UserId,
            client_msg_id: &str,
        ) -> StoreResult<Appended> {
            match event_by_client_msg_id(conn, sender, client_msg_id).await? {
                Some(original) => Ok(Appended {
                    event: original,
                    duplicate: true,
                }),
                None => Err(StoreError::NotFound),
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                <$store>::NAME
            }

            fn writes_on_calling_thread(&self) -> bool {
                <$store>::WRITES_ON_CALLING_THREAD
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.reads()).await?;
                Ok(())
            }

            async fn size_bytes(&self) -> StoreResult<Option<u64>> {
                let row = sqlx::query(<$store>::SIZE_SQL)
                    .fetch_one(self.reads())
                    .await?;
                let size: i64 = col(&row, "size")?;
                Ok(u64::try_from(size).ok())
            }

            // ---- users ----

            #[tracing::instrument(skip_all)]
            async fn count_users(&self) -> StoreResult<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
                    .fetch_one(self.reads())
                    .await?;
                col(&row, "n")
            }

            #[tracing::instrument(skip_all)]
            async fn create_user(&self, user: NewUser) -> StoreResult<User> {
                let row = sqlx::query(&format!(
                    "INSERT INTO users
                        (name, display_name, password_hash, is_admin, is_bot, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLS}"
                ))
                .bind(&user.name)
                .bind(&user.display_name)
                .bind(&user.password_hash)
                .bind(user.is_admin)
                .bind(user.is_bot)
                .bind(now_millis())
                .fetch_one(self.writes())
                .await
                .map_err(|e| map_write(e, "user_exists"))?;
                from_row::<User>(&row)
            }

            #[tracing::instrument(skip_all)]
            async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
                sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?
                    .as_ref()
                    .map(from_row::<User>)
                    .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn user_by_name(
                &self,
                name: &str,
            ) -> StoreResult<Option<(User, Option<String>)>> {
                let Some(row) = sqlx::query(&format!(
                    "SELECT {USER_COLS}, password_hash FROM users WHERE name = $1"
                ))
                .bind(name)
                .fetch_optional(self.reads())
                .await?
                else {
                    return Ok(None);
                };
                Ok(Some((from_row::<User>(&row)?, col(&row, "password_hash")?)))
            }

            #[tracing::instrument(skip_all)]
            async fn list_users(&self) -> StoreResult<Vec<User>> {
                sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY id"))
                    .fetch_all(self.reads())
                    .await?
                    .iter()
                    .map(from_row::<User>)
                    .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn set_user_active(&self, id: UserId, active: bool) -> StoreResult<()> {
                set_user_flag(self.writes(), id, "active", active).await
            }

            #[tracing::instrument(skip_all)]
            async fn set_user_compliance(&self, id: UserId, compliance: bool) -> StoreResult<()> {
                set_user_flag(self.writes(), id, "is_compliance", compliance).await
            }

            #[tracing::instrument(skip_all)]
            async fn set_password_hash(&self, id: UserId, hash: &str) -> StoreResult<()> {
                let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                    .bind(id)
                    .bind(hash)
                    .execute(self.writes())
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            // ---- sessions ----

            #[tracing::instrument(skip_all)]
            async fn create_session(&self, session: &Session) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO sessions
                        (id, user_id, refresh_hash, created_at, expires_at, revoked)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&session.id)
                .bind(session.user_id)
                .bind(&session.refresh_hash)
                .bind(session.created_at)
                .bind(session.expires_at)
                .bind(session.revoked)
                .execute(self.writes())
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
                .fetch_optional(self.reads())
                .await?
                .as_ref()
                .map(from_row::<Session>)
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
                // One conditional UPDATE: of two concurrent refreshes with the same token (on
                // any nodes), exactly one matches `old_hash`.
                let done = sqlx::query(
                    "UPDATE sessions SET refresh_hash = $3, expires_at = $4
                     WHERE id = $1 AND refresh_hash = $2 AND revoked = FALSE
                       AND expires_at > $5",
                )
                .bind(id)
                .bind(old_hash)
                .bind(new_hash)
                .bind(expires_at)
                .bind(now_millis())
                .execute(self.writes())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn revoke_session(&self, id: &str) -> StoreResult<()> {
                // Revoking an unknown or already revoked session is not an error: logout is
                // idempotent.
                sqlx::query("UPDATE sessions SET revoked = TRUE WHERE id = $1")
                    .bind(id)
                    .execute(self.writes())
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
                .fetch_all(self.writes())
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
            async fn create_room(
                &self,
                room: NewRoom,
                members: &[(UserId, Role)],
            ) -> StoreResult<Room> {
                if room.kind != RoomKind::Group {
                    // Direct rooms need their pair key; `direct_room` is the only way to
                    // make one.
                    return Err(StoreError::Conflict("not_a_group"));
                }
                let all = initial_members(room.created_by, members);
                let now = now_millis();
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(&format!(
                    "INSERT INTO rooms (kind, name, topic, created_by, created_at)
                     VALUES ('group', $1, $2, $3, $4) RETURNING {ROOM_COLS}"
                ))
                .bind(&room.name)
                .bind(&room.topic)
                .bind(room.created_by)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| map_write(e, "room_exists"))?;
                let created = from_row::<Room>(&row)?;
                insert_members(&mut tx, created.id, &all, now).await?;
                tx.commit().await?;
                Ok(created)
            }

            #[tracing::instrument(skip_all)]
            async fn direct_room(&self, a: UserId, b: UserId) -> StoreResult<(Room, bool)> {
                let key = direct_key(a, b);
                // Two callers (or nodes) may race. ON CONFLICT DO NOTHING waits for the other
                // insert of the same key to commit (then inserts nothing) or abort (then
                // inserts). A second attempt covers the one window where the winner aborts
                // after we looked.
                for _ in 0..3 {
                    let now = now_millis();
                    let mut tx = self.begin_write().await?;
                    let inserted = sqlx::query(&format!(
                        "INSERT INTO rooms (kind, created_by, created_at, direct_key)
                         VALUES ('direct', $1, $2, $3)
                         ON CONFLICT (direct_key) DO NOTHING RETURNING {ROOM_COLS}"
                    ))
                    .bind(a)
                    .bind(now)
                    .bind(&key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| map_write(e, "room_exists"))?;
                    if let Some(row) = inserted {
                        let created = from_row::<Room>(&row)?;
                        let mut members = vec![(a, Role::Member)];
                        if b != a {
                            members.push((b, Role::Member));
                        }
                        insert_members(&mut tx, created.id, &members, now).await?;
                        tx.commit().await?;
                        return Ok((created, true));
                    }
                    tx.rollback().await?;
                    let existing = sqlx::query(&format!(
                        "SELECT {ROOM_COLS} FROM rooms WHERE direct_key = $1"
                    ))
                    .bind(&key)
                    .fetch_optional(self.writes())
                    .await?;
                    if let Some(row) = existing {
                        return Ok((from_row::<Room>(&row)?, false));
                    }
                }
                Err(StoreError::Conflict("direct_room_race"))
            }

            #[tracing::instrument(skip_all)]
            async fn room(&self, id: RoomId) -> StoreResult<Option<Room>> {
                sqlx::query(&format!("SELECT {ROOM_COLS} FROM rooms WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?
                    .as_ref()
                    .map(from_row::<Room>)
                    .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn rooms_for_user(&self, user: UserId) -> StoreResult<Vec<RoomSummary>> {
                let rows = sqlx::query(&format!(
                    "SELECT r.id, r.kind, r.name, r.topic, r.created_by, r.created_at,
                            r.last_seq, r.members_may_pin, r.direct_key, m.role, COALESCE(c.seq, 0) AS read_seq,
                            (SELECT COUNT(*) FROM events e
                              WHERE e.room_id = r.id AND {0}
                                AND e.seq > COALESCE(c.seq, 0)
                                AND e.sender_id <> m.user_id
                                AND (e.thread_root IS NULL OR e.also_to_room)) AS unread,
                            (SELECT COUNT(*) FROM events e
                              WHERE e.room_id = r.id AND {0}
                                AND e.seq > COALESCE(c.seq, 0)
                                AND e.sender_id <> m.user_id
                                AND (e.mentions_room
                                     OR EXISTS (SELECT 1 FROM user_mentions x
                                                 WHERE x.user_id = m.user_id
                                                   AND x.event_id = e.id))) AS mentions
                       FROM members m
                       JOIN rooms r ON r.id = m.room_id
                       LEFT JOIN read_cursors c
                              ON c.user_id = m.user_id AND c.room_id = m.room_id
                      WHERE m.user_id = $1
                      ORDER BY r.id",
                    <$store>::LIVE_MESSAGE
                ))
                .bind(user)
                .fetch_all(self.reads())
                .await?;
                rows.iter()
                    .map(|row| {
                        let key: Option<String> = col(row, "direct_key")?;
                        Ok(RoomSummary {
                            room: from_row::<Room>(row)?,
                            role: parse_role(&col::<_, String>(row, "role")?)?,
                            read_seq: col(row, "read_seq")?,
                            unread: col(row, "unread")?,
                            mentions: col(row, "mentions")?,
                            peer: key.map(|k| direct_peer(&k, user)).transpose()?,
                        })
                    })
                    .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn list_rooms(&self) -> StoreResult<Vec<Room>> {
                sqlx::query(&format!("SELECT {ROOM_COLS} FROM rooms ORDER BY id"))
                    .fetch_all(self.reads())
                    .await?
                    .iter()
                    .map(from_row::<Room>)
                    .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn room_members(&self, room: RoomId) -> StoreResult<Vec<Member>> {
                sqlx::query(&format!(
                    "SELECT {MEMBER_COLS} FROM members WHERE room_id = $1 ORDER BY user_id"
                ))
                .bind(room)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(from_row::<Member>)
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn room_ids_of(&self, user: UserId) -> StoreResult<Vec<RoomId>> {
                Ok(sqlx::query_scalar("SELECT room_id FROM members WHERE user_id = $1")
                    .bind(user)
                    .fetch_all(self.reads())
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn set_presence_hidden(&self, id: UserId, hidden: bool) -> StoreResult<()> {
                set_user_flag(self.writes(), id, "presence_hidden", hidden).await
            }

            #[tracing::instrument(skip_all)]
            async fn presence_hidden_users(&self) -> StoreResult<Vec<UserId>> {
                Ok(sqlx::query_scalar("SELECT id FROM users WHERE presence_hidden")
                    .fetch_all(self.reads())
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn set_display_name(&self, id: UserId, display_name: &str) -> StoreResult<()> {
                let done = sqlx::query("UPDATE users SET display_name = $2 WHERE id = $1")
                    .bind(id)
                    .bind(display_name)
                    .execute(self.writes())
                    .await
                    .map_err(|e| map_write(e, "invalid_display_name"))?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn set_user_admin(&self, id: UserId, admin: bool) -> StoreResult<()> {
                set_user_flag(self.writes(), id, "is_admin", admin).await
            }

            // ---- directory ----

            #[tracing::instrument(skip_all)]
            async fn people_page(&self, offset: i64, limit: i64) -> StoreResult<(i64, Vec<User>)> {
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE NOT is_bot")
                        .fetch_one(self.reads())
                        .await?;
                let users = sqlx::query(&format!(
                    "SELECT {USER_COLS} FROM users WHERE NOT is_bot ORDER BY id
                     LIMIT $1 OFFSET $2"
                ))
                .bind(limit)
                .bind(offset)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(from_row::<User>)
                .collect::<StoreResult<Vec<_>>>()?;
                Ok((total, users))
            }

            #[tracing::instrument(skip_all)]
            async fn set_external_identity(
                &self,
                user: UserId,
                source: &str,
                identity: &ExternalIdentity,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO external_identities
                        (user_id, source, external_id, email, updated_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (user_id, source) DO UPDATE
                     SET external_id = excluded.external_id, email = excluded.email,
                         updated_at = excluded.updated_at",
                )
                .bind(user)
                .bind(source)
                .bind(&identity.external_id)
                .bind(&identity.email)
                .bind(now_millis())
                .execute(self.writes())
                .await
                .map_err(|e| map_write(e, "identity_taken"))?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn external_identity(
                &self,
                user: UserId,
                source: &str,
            ) -> StoreResult<Option<ExternalIdentity>> {
                let row = sqlx::query(
                    "SELECT external_id, email FROM external_identities
                     WHERE user_id = $1 AND source = $2",
                )
                .bind(user)
                .bind(source)
                .fetch_optional(self.reads())
                .await?;
                row.as_ref().map(identity_from_row).transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn user_by_external_id(
                &self,
                source: &str,
                external_id: &str,
            ) -> StoreResult<Option<User>> {
                let cols = qualified(USER_COLS, "u");
                sqlx::query(&format!(
                    "SELECT {cols} FROM users u
                     JOIN external_identities x ON x.user_id = u.id
                     WHERE x.source = $1 AND x.external_id = $2"
                ))
                .bind(source)
                .bind(external_id)
                .fetch_optional(self.reads())
                .await?
                .as_ref()
                .map(from_row::<User>)
                .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn identities(
                &self,
                source: &str,
            ) -> StoreResult<Vec<(User, ExternalIdentity)>> {
                let cols = qualified(USER_COLS, "u");
                sqlx::query(&format!(
                    "SELECT {cols}, x.external_id, x.email FROM users u
                     JOIN external_identities x ON x.user_id = u.id
                     WHERE x.source = $1 ORDER BY u.id"
                ))
                .bind(source)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(|row| {
                    Ok((from_row::<User>(row)?, identity_from_row(row)?))
                })
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn create_group(
                &self,
                source: &str,
                name: &str,
                external_id: Option<&str>,
                members: &[UserId],
            ) -> StoreResult<DirectoryGroup> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(&format!(
                    "INSERT INTO directory_groups (source, name, external_id, created_at)
                     VALUES ($1, $2, $3, $4) RETURNING {GROUP_COLS}"
                ))
                .bind(source)
                .bind(name)
                .bind(external_id)
                .bind(now_millis())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| map_write(e, "group_exists"))?;
                let group = from_row::<DirectoryGroup>(&row)?;
                for user in members {
                    sqlx::query(
                        "INSERT INTO directory_group_members (group_id, user_id) VALUES ($1, $2)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(group.id)
                    .bind(user)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| map_write(e, "group_member_exists"))?;
                }
                tx.commit().await?;
                Ok(group)
            }

            #[tracing::instrument(skip_all)]
            async fn group(&self, source: &str, id: i64) -> StoreResult<Option<DirectoryGroup>> {
                sqlx::query(&format!(
                    "SELECT {GROUP_COLS} FROM directory_groups WHERE id = $1 AND source = $2"
                ))
                .bind(id)
                .bind(source)
                .fetch_optional(self.reads())
                .await?
                .as_ref()
                .map(from_row::<DirectoryGroup>)
                .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn groups_page(
                &self,
                source: &str,
                name: Option<&str>,
                offset: i64,
                limit: i64,
            ) -> StoreResult<(i64, Vec<DirectoryGroup>)> {
                // `$2 IS NULL` keeps one statement for both cases; the name is bound as text.
                let filter = "source = $1 AND (CAST($2 AS TEXT) IS NULL OR name = $2)";
                let total: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM directory_groups WHERE {filter}"
                ))
                .bind(source)
                .bind(name)
                .fetch_one(self.reads())
                .await?;
                let groups = sqlx::query(&format!(
                    "SELECT {GROUP_COLS} FROM directory_groups WHERE {filter}
                     ORDER BY id LIMIT $3 OFFSET $4"
                ))
                .bind(source)
                .bind(name)
                .bind(limit)
                .bind(offset)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(from_row::<DirectoryGroup>)
                .collect::<StoreResult<Vec<_>>>()?;
                Ok((total, groups))
            }

            #[tracing::instrument(skip_all)]
            async fn update_group(
                &self,
                id: i64,
                name: &str,
                external_id: Option<&str>,
            ) -> StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE directory_groups SET name = $2, external_id = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(name)
                .bind(external_id)
                .execute(self.writes())
                .await
                .map_err(|e| map_write(e, "group_exists"))?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn delete_group(&self, id: i64) -> StoreResult<()> {
                let done = sqlx::query("DELETE FROM directory_groups WHERE id = $1")
                    .bind(id)
                    .execute(self.writes())
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn group_members(&self, id: i64) -> StoreResult<Vec<UserId>> {
                Ok(sqlx::query_scalar(
                    "SELECT user_id FROM directory_group_members WHERE group_id = $1
                     ORDER BY user_id",
                )
                .bind(id)
                .fetch_all(self.reads())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn change_group_members(
                &self,
                id: i64,
                add: &[UserId],
                remove: &[UserId],
                max_members: usize,
            ) -> StoreResult<(Vec<UserId>, Vec<UserId>)> {
                let mut tx = self.begin_write().await?;
                // The group's row lock queues concurrent changes, so the size check below
                // sees every member the others added.
                let locked = sqlx::query(&format!(
                    "SELECT id FROM directory_groups WHERE id = $1{}",
                    <$store>::FOR_UPDATE
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if locked.is_none() {
                    return Err(StoreError::NotFound);
                }
                let mut removed = Vec::new();
                for user in remove {
                    let done = sqlx::query(
                        "DELETE FROM directory_group_members WHERE group_id = $1 AND user_id = $2",
                    )
                    .bind(id)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() > 0 {
                        removed.push(*user);
                    }
                }
                let mut added = Vec::new();
                for user in add {
                    let done = sqlx::query(
                        "INSERT INTO directory_group_members (group_id, user_id) VALUES ($1, $2)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(user)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| map_write(e, "group_member_exists"))?;
                    if done.rows_affected() > 0 {
                        added.push(*user);
                    }
                }
                let size: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM directory_group_members WHERE group_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                if usize::try_from(size).unwrap_or(usize::MAX) > max_members {
                    return Err(StoreError::Conflict("group_too_large"));
                }
                tx.commit().await?;
                Ok((added, removed))
            }

            #[tracing::instrument(skip_all)]
            async fn user_groups(
                &self,
                user: UserId,
                source: &str,
            ) -> StoreResult<Vec<DirectoryGroup>> {
                let cols = qualified(GROUP_COLS, "g");
                sqlx::query(&format!(
                    "SELECT {cols} FROM directory_groups g
                     JOIN directory_group_members m ON m.group_id = g.id
                     WHERE m.user_id = $1 AND g.source = $2 ORDER BY g.id"
                ))
                .bind(user)
                .bind(source)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(from_row::<DirectoryGroup>)
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn put_once(
                &self,
                key: &str,
                kind: &str,
                payload: &str,
                expired_before: Millis,
            ) -> StoreResult<()> {
                sqlx::query("DELETE FROM one_time_values WHERE created_at < $1")
                    .bind(expired_before)
                    .execute(self.writes())
                    .await?;
                sqlx::query(
                    "INSERT INTO one_time_values (key, kind, payload, created_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(key)
                .bind(kind)
                .bind(payload)
                .bind(now_millis())
                .execute(self.writes())
                .await
                .map_err(|e| map_write(e, "value_exists"))?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn take_once(
                &self,
                key: &str,
                kind: &str,
            ) -> StoreResult<Option<(String, Millis)>> {
                // One statement: of two takers at once, one gets the row and one nothing.
                let row = sqlx::query(
                    "DELETE FROM one_time_values WHERE key = $1 AND kind = $2
                     RETURNING payload, created_at",
                )
                .bind(key)
                .bind(kind)
                .fetch_optional(self.writes())
                .await?;
                row.map(|row| Ok((col(&row, "payload")?, col(&row, "created_at")?)))
                    .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn create_incoming_webhook(
                &self,
                room: RoomId,
                bot: UserId,
                name: &str,
                key_hash: &str,
                created_by: UserId,
            ) -> StoreResult<IncomingWebhook> {
                let row = sqlx::query(&format!(
                    "INSERT INTO incoming_webhooks
                         (room_id, bot_user_id, name, key_hash, created_by, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {WEBHOOK_COLS}"
                ))
                .bind(room)
                .bind(bot)
                .bind(name)
                .bind(key_hash)
                .bind(created_by)
                .bind(now_millis())
                .fetch_one(self.writes())
                .await
                .map_err(|e| map_write(e, "webhook_exists"))?;
                from_row::<IncomingWebhook>(&row)
            }

            #[tracing::instrument(skip_all)]
            async fn incoming_webhook_by_key(
                &self,
                key_hash: &str,
            ) -> StoreResult<Option<IncomingWebhook>> {
                sqlx::query(&format!(
                    "SELECT {WEBHOOK_COLS} FROM incoming_webhooks WHERE key_hash = $1"
                ))
                .bind(key_hash)
                .fetch_optional(self.reads())
                .await?
                .as_ref()
                .map(from_row::<IncomingWebhook>)
                .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn incoming_webhook(&self, id: i64) -> StoreResult<Option<IncomingWebhook>> {
                sqlx::query(&format!("SELECT {WEBHOOK_COLS} FROM incoming_webhooks WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?
                    .as_ref()
                    .map(from_row::<IncomingWebhook>)
                    .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn incoming_webhooks(
                &self,
                room: Option<RoomId>,
            ) -> StoreResult<Vec<IncomingWebhook>> {
                sqlx::query(&format!(
                    "SELECT {WEBHOOK_COLS} FROM incoming_webhooks
                     WHERE CAST($1 AS BIGINT) IS NULL OR room_id = $1 ORDER BY id DESC"
                ))
                .bind(room)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(from_row::<IncomingWebhook>)
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn revoke_incoming_webhook(&self, id: i64, at: Millis) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE incoming_webhooks SET revoked_at = $2
                     WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(at)
                .execute(self.writes())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn llm_usage(&self, day: i64, scope: &str, id: i64) -> StoreResult<u64> {
                let tokens: Option<i64> = sqlx::query_scalar(
                    "SELECT tokens FROM llm_usage WHERE day = $1 AND scope = $2 AND scope_id = $3",
                )
                .bind(day)
                .bind(scope)
                .bind(id)
                .fetch_optional(self.reads())
                .await?;
                Ok(tokens.map_or(0, |t| u64::try_from(t).unwrap_or(0)))
            }

            #[tracing::instrument(skip_all)]
            async fn llm_usage_of_day(&self, day: i64) -> StoreResult<Vec<(String, i64, u64)>> {
                let rows = sqlx::query(
                    "SELECT scope, scope_id, tokens FROM llm_usage WHERE day = $1
                     ORDER BY tokens DESC, scope, scope_id LIMIT 100",
                )
                .bind(day)
                .fetch_all(self.reads())
                .await?;
                rows.iter()
                    .map(|row| {
                        let tokens: i64 = col(row, "tokens")?;
                        Ok((
                            col(row, "scope")?,
                            col(row, "scope_id")?,
                            u64::try_from(tokens).unwrap_or(0),
                        ))
                    })
                    .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn prune_llm_usage(&self, before_day: i64) -> StoreResult<u64> {
                let done = sqlx::query("DELETE FROM llm_usage WHERE day < $1")
                    .bind(before_day)
                    .execute(self.writes())
                    .await?;
                Ok(done.rows_affected())
            }

            #[tracing::instrument(skip_all)]
            async fn add_llm_usage(
                &self,
                day: i64,
                scope: &str,
                id: i64,
                tokens: u64,
            ) -> StoreResult<()> {
                // One statement: concurrent calls (on any node) add up, none is lost.
                sqlx::query(
                    "INSERT INTO llm_usage (day, scope, scope_id, tokens) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (day, scope, scope_id)
                     DO UPDATE SET tokens = llm_usage.tokens + excluded.tokens",
                )
                .bind(day)
                .bind(scope)
                .bind(id)
                .bind(i64::try_from(tokens).unwrap_or(i64::MAX))
                .execute(self.writes())
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn group_names_of(&self, user: UserId) -> StoreResult<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT g.name FROM directory_groups g
                     JOIN directory_group_members m ON m.group_id = g.id
                     WHERE m.user_id = $1 ORDER BY g.name",
                )
                .bind(user)
                .fetch_all(self.reads())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn member(&self, room: RoomId, user: UserId) -> StoreResult<Option<Member>> {
                sqlx::query(&format!(
                    "SELECT {MEMBER_COLS} FROM members WHERE room_id = $1 AND user_id = $2"
                ))
                .bind(room)
                .bind(user)
                .fetch_optional(self.reads())
                .await?
                .as_ref()
                .map(from_row::<Member>)
                .transpose()
            }

            // ---- the room log ----

            #[tracing::instrument(skip_all, fields(items = batch.len()))]
            async fn append_events(
                &self,
                batch: &[NewEvent],
            ) -> StoreResult<Vec<StoreResult<Appended>>> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                self.append_batch(batch).await
            }

            async fn merge_search_index(&self, pages: u32) -> StoreResult<bool> {
                self.merge_search_index_step(pages).await
            }

            fn may_hold_client_msg_id(&self, sender: UserId, client_msg_id: &str) -> bool {
                self.may_hold_sent_key(sender, client_msg_id)
            }

            #[tracing::instrument(skip_all)]
            async fn event(&self, id: EventId) -> StoreResult<Option<Event>> {
                sqlx::query(&format!(
                    "SELECT {} FROM events WHERE id = $1",
                    <$store>::EVENT_COLS
                ))
                .bind(id)
                .fetch_optional(self.reads())
                .await?
                .as_ref()
                .map(event_from_row)
                .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn event_by_client_msg_id(
                &self,
                sender: UserId,
                client_msg_id: &str,
            ) -> StoreResult<Option<Event>> {
                let mut conn = self.reads().acquire().await?;
                event_by_client_msg_id(&mut conn, sender, client_msg_id).await
            }

            #[tracing::instrument(skip_all)]
            async fn events_by_client_msg_ids(
                &self,
                keys: &[(UserId, &str)],
            ) -> StoreResult<Vec<Event>> {
                // A few statement shapes (1, 2, 4 … 32 keys), the unused places repeating
                // the last key, so that sqlx's statement cache holds them all.
                static SHAPES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
                let shapes = SHAPES.get_or_init(|| {
                    (0..=$crate::store::sql::KEYS_PER_LOOKUP.ilog2())
                        .map(|power| {
                            let terms: Vec<String> = (0..1usize << power)
                                .map(|i| {
                                    format!(
                                        "(sender_id = ${} AND client_msg_id = ${})",
                                        2 * i + 1,
                                        2 * i + 2
                                    )
                                })
                                .collect();
                            format!(
                                "SELECT {} FROM events WHERE {}",
                                <$store>::EVENT_COLS,
                                terms.join(" OR ")
                            )
                        })
                        .collect()
                });
                let mut found = Vec::new();
                for chunk in keys.chunks($crate::store::sql::KEYS_PER_LOOKUP) {
                    let Some(&last) = chunk.last() else { continue };
                    let places = chunk.len().next_power_of_two();
                    let mut query = sqlx::query(&shapes[places.ilog2() as usize]);
                    for i in 0..places {
                        let (sender, client_msg_id) = chunk.get(i).copied().unwrap_or(last);
                        query = query.bind(sender).bind(client_msg_id);
                    }
                    for row in query.fetch_all(self.reads()).await? {
                        found.push(event_from_row(&row)?);
                    }
                }
                Ok(found)
            }

            #[tracing::instrument(skip_all)]
            async fn events(&self, room: RoomId, page: Page, max: u32) -> StoreResult<Vec<Event>> {
                log_page(self.reads(), "room_id = $1", &[room], page, max).await
            }

            #[tracing::instrument(skip_all)]
            async fn set_read_cursor(
                &self,
                user: UserId,
                room: RoomId,
                seq: i64,
            ) -> StoreResult<i64> {
                // Clamped to [0, last_seq] so a bogus client value cannot hide all future
                // messages, and merged so a late or replayed update (from any node) never
                // moves the cursor back.
                let row = sqlx::query(<$store>::READ_CURSOR_SQL)
                    .bind(user)
                    .bind(room)
                    .bind(seq)
                    .fetch_optional(self.writes())
                    .await
                    .map_err(not_found_on_foreign_key)?
                    .ok_or(StoreError::NotFound)?;
                col(&row, "seq")
            }

            // ---- threads ----

            #[tracing::instrument(skip_all)]
            async fn thread_replies(
                &self,
                room: RoomId,
                root: EventId,
                page: Page,
                max: u32,
            ) -> StoreResult<Vec<Event>> {
                log_page(
                    self.reads(),
                    "thread_root = $1 AND room_id = $2",
                    &[root, room],
                    page,
                    max,
                )
                .await
            }

            #[tracing::instrument(skip_all)]
            async fn thread_unread(&self, user: UserId, root: EventId) -> StoreResult<(i64, u64)> {
                let read: i64 = sqlx::query_scalar(
                    "SELECT seq FROM thread_reads WHERE user_id = $1 AND root_id = $2",
                )
                .bind(user)
                .bind(root)
                .fetch_optional(self.reads())
                .await?
                .unwrap_or(0);
                let unread: i64 = sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM events e
                      WHERE e.thread_root = $1 AND e.seq > $2 AND e.sender_id <> $3 AND {}",
                    <$store>::LIVE_MESSAGE
                ))
                .bind(root)
                .bind(read)
                .bind(user)
                .fetch_one(self.reads())
                .await?;
                Ok((read, u64::try_from(unread).unwrap_or(0)))
            }

            #[tracing::instrument(skip_all)]
            async fn set_thread_read(
                &self,
                user: UserId,
                room: RoomId,
                root: EventId,
                seq: i64,
            ) -> StoreResult<i64> {
                // Clamped to the thread's last reply (a bogus value cannot hide future
                // replies) and never moved back (a late update from another tab or node).
                let last: Option<i64> = sqlx::query_scalar(
                    "SELECT max(seq) FROM events WHERE thread_root = $1 AND room_id = $2",
                )
                .bind(root)
                .bind(room)
                .fetch_one(self.reads())
                .await?;
                let seq = seq.clamp(0, last.unwrap_or(0));
                let row = sqlx::query(
                    "INSERT INTO thread_reads (user_id, root_id, seq) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, root_id) DO UPDATE
                        SET seq = CASE WHEN excluded.seq > thread_reads.seq
                                       THEN excluded.seq ELSE thread_reads.seq END
                     RETURNING seq",
                )
                .bind(user)
                .bind(root)
                .bind(seq)
                .fetch_one(self.writes())
                .await
                .map_err(not_found_on_foreign_key)?;
                col(&row, "seq")
            }

            // ---- reactions and pins ----

            #[tracing::instrument(skip_all)]
            async fn annotations(
                &self,
                viewer: UserId,
                room: RoomId,
                roots: &[EventId],
                messages: &[EventId],
            ) -> StoreResult<Annotations> {
                // One statement (one trip to the database) for both, as history asks for both
                // on every page. Only the parameters a part uses are numbered and bound.
                let mut parts = Vec::new();
                let mut next = 0;
                let mut params = |n: usize| -> String {
                    let list: Vec<String> = (next + 1..=next + n).map(|i| format!("${i}")).collect();
                    next += n;
                    list.join(", ")
                };
                if !roots.is_empty() {
                    let room_param = params(1);
                    parts.push(format!(
                        "SELECT 't' AS part, e.thread_root AS message_id, '' AS emoji,
                                count(*) AS n, CAST(0 AS BIGINT) AS mine, max(e.created_at) AS at
                           FROM events e
                          WHERE e.room_id = {room_param} AND e.thread_root IN ({}) AND {}
                          GROUP BY e.thread_root",
                        params(roots.len()),
                        <$store>::LIVE_MESSAGE
                    ));
                }
                if !messages.is_empty() {
                    let viewer_param = params(1);
                    parts.push(format!(
                        "SELECT 'r' AS part, message_id, emoji, count(*) AS n,
                                count(CASE WHEN user_id = {viewer_param} THEN 1 END) AS mine,
                                min(created_at) AS at
                           FROM reactions WHERE message_id IN ({})
                          GROUP BY message_id, emoji",
                        params(messages.len())
                    ));
                }
                if parts.is_empty() {
                    return Ok(Annotations::default());
                }
                let sql = format!(
                    "SELECT part, message_id, emoji, n, mine, at FROM ({}) a
                      ORDER BY part, message_id, at, emoji",
                    parts.join(" UNION ALL ")
                );
                let mut query = sqlx::query(&sql);
                if !roots.is_empty() {
                    query = query.bind(room);
                    for root in roots {
                        query = query.bind(root);
                    }
                }
                if !messages.is_empty() {
                    query = query.bind(viewer);
                    for message in messages {
                        query = query.bind(message);
                    }
                }
                let mut found = Annotations::default();
                for row in query.fetch_all(self.reads()).await? {
                    let message: EventId = col(&row, "message_id")?;
                    let n = u64::try_from(col::<_, i64>(&row, "n")?).unwrap_or(0);
                    if col::<_, String>(&row, "part")? == "t" {
                        let summary = ThreadSummary {
                            replies: n,
                            last_reply_at: col(&row, "at")?,
                        };
                        found.threads.push((message, summary));
                    } else {
                        let count = ReactionCount {
                            emoji: col(&row, "emoji")?,
                            count: n,
                            me: col::<_, i64>(&row, "mine")? > 0,
                        };
                        found.reactions.push((message, count));
                    }
                }
                Ok(found)
            }

            #[tracing::instrument(skip_all)]
            async fn reactors(&self, message: EventId) -> StoreResult<Vec<Reactors>> {
                let rows = sqlx::query(
                    "SELECT r.emoji, r.user_id FROM reactions r
                       JOIN (SELECT emoji, min(created_at) AS first_at FROM reactions
                              WHERE message_id = $1 GROUP BY emoji) f ON f.emoji = r.emoji
                      WHERE r.message_id = $1
                      ORDER BY f.first_at, r.emoji, r.created_at, r.user_id",
                )
                .bind(message)
                .fetch_all(self.reads())
                .await?;
                let mut out: Vec<Reactors> = Vec::new();
                for row in &rows {
                    let emoji: String = col(row, "emoji")?;
                    let user: UserId = col(row, "user_id")?;
                    match out.last_mut() {
                        Some(last) if last.emoji == emoji => last.users.push(user),
                        _ => out.push(Reactors {
                            emoji,
                            users: vec![user],
                        }),
                    }
                }
                Ok(out)
            }

            #[tracing::instrument(skip_all)]
            async fn pins(&self, room: RoomId) -> StoreResult<Vec<Pin>> {
                let cols = <$store>::EVENT_COLS
                    .split(", ")
                    .map(|c| format!("e.{}", c.trim()))
                    .collect::<Vec<_>>()
                    .join(", ");
                sqlx::query(&format!(
                    "SELECT {cols}, p.pinned_by, p.pinned_at FROM pins p
                       JOIN events e ON e.id = p.message_id
                      WHERE p.room_id = $1
                      ORDER BY p.pinned_at DESC, p.message_id DESC"
                ))
                .bind(room)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(|row| {
                    Ok(Pin {
                        message: event_from_row(row)?,
                        pinned_by: col(row, "pinned_by")?,
                        pinned_at: col(row, "pinned_at")?,
                    })
                })
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn set_members_may_pin(&self, room: RoomId, allowed: bool) -> StoreResult<()> {
                let done = sqlx::query("UPDATE rooms SET members_may_pin = $2 WHERE id = $1")
                    .bind(room)
                    .bind(allowed)
                    .execute(self.writes())
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            // ---- mentions ----

            #[tracing::instrument(skip_all)]
            async fn mentions_of(
                &self,
                user: UserId,
                before: Option<EventId>,
                max: u32,
            ) -> StoreResult<Vec<Event>> {
                // By name through the user's `mentions` rows, `@room` through the rooms the
                // user is in; either way only in rooms the user is a member of now.
                let cols = <$store>::EVENT_COLS;
                let live = <$store>::LIVE_MESSAGE;
                sqlx::query(&format!(
                    "SELECT {cols} FROM events e
                      WHERE e.id IN (
                             SELECT x.event_id FROM user_mentions x
                              WHERE x.user_id = $1 AND x.event_id < $2
                                AND EXISTS (SELECT 1 FROM members m
                                             WHERE m.room_id = x.room_id AND m.user_id = $1)
                             UNION
                             SELECT r.id FROM members m
                               JOIN events r ON r.room_id = m.room_id AND r.mentions_room
                              WHERE m.user_id = $1 AND r.id < $2)
                        AND {live} AND e.sender_id <> $1
                      ORDER BY e.id DESC LIMIT $3"
                ))
                .bind(user)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit(max))
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(event_from_row)
                .collect()
            }

            // ---- plugin key/value ----

            #[tracing::instrument(skip_all)]
            async fn kv_get(&self, plugin: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
                let row = sqlx::query("SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2")
                    .bind(plugin)
                    .bind(key)
                    .fetch_optional(self.reads())
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
                .execute(self.writes())
                .await
                .map_err(|e| refuse_row_errors(StoreError::Backend(e)))?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2")
                    .bind(plugin)
                    .bind(key)
                    .execute(self.writes())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            #[tracing::instrument(skip_all)]
            async fn kv_keys(
                &self,
                plugin: &str,
                prefix: &str,
                max: u32,
            ) -> StoreResult<Vec<String>> {
                // A key range instead of LIKE: no escaping, and the primary-key index bounds
                // both ends. Keys compare bytewise on both backends (PostgreSQL: COLLATE "C").
                let rows = match prefix_upper_bound(prefix) {
                    Some(upper) => {
                        sqlx::query(
                            "SELECT key FROM plugin_kv WHERE plugin = $1 AND key >= $2
                               AND key < $3 ORDER BY key LIMIT $4",
                        )
                        .bind(plugin)
                        .bind(prefix)
                        .bind(upper)
                        .bind(limit(max))
                        .fetch_all(self.reads())
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
                        .fetch_all(self.reads())
                        .await?
                    }
                };
                rows.iter().map(|r| col(r, "key")).collect()
            }

            // ---- audit ----

            /// One transaction: lock the chain's head, link the record after it, move the
            /// head. Appends from several nodes queue on the head's lock: one chain, no fork.
            #[tracing::instrument(skip_all)]
            async fn append_audit(
                &self,
                actor: &str,
                action: &str,
                subject: &str,
                detail: &serde_json::Value,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let (head_seq, head_hash) = lock_audit_head(&mut tx).await?;
                let at = now_millis();
                let hash = chain::record_hash(&head_hash, at, actor, action, subject, detail);
                insert_audit_record(
                    &mut tx,
                    head_seq + 1,
                    at,
                    (actor, action, subject, detail),
                    (&head_hash, &hash),
                )
                .await?;
                set_audit_head(&mut tx, head_seq + 1, &hash).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn audit_chain(&self, after: i64, max: u32) -> StoreResult<Vec<AuditRecord>> {
                sqlx::query(&format!(
                    "SELECT id, seq, at, actor, action, subject, {}, prev_hash, hash FROM audit
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    <$store>::DETAIL_OUT
                ))
                .bind(after)
                .bind(limit(max))
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(audit_from_row)
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn audit_head(&self) -> StoreResult<(i64, String)> {
                let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
                    .fetch_optional(self.reads())
                    .await?;
                match row {
                    Some(row) => Ok((col(&row, "seq")?, col(&row, "hash")?)),
                    None => Ok((0, chain::GENESIS.to_string())),
                }
            }

            #[tracing::instrument(skip_all)]
            async fn add_audit_checkpoint(&self, checkpoint: &AuditCheckpoint) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, head_hash, at, key_id, signature)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
                )
                .bind(checkpoint.seq)
                .bind(&checkpoint.head_hash)
                .bind(checkpoint.at)
                .bind(&checkpoint.key_id)
                .bind(&checkpoint.signature)
                .execute(self.writes())
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn create_hold(&self, hold: &NewHold) -> StoreResult<LegalHold> {
                let ids = |v: &[i64]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
                let row = sqlx::query(&format!(
                    "INSERT INTO legal_holds
                        (name, users, rooms, from_at, until_at, created_by, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {HOLD_COLS}"
                ))
                .bind(&hold.name)
                .bind(ids(&hold.users))
                .bind(ids(&hold.rooms))
                .bind(hold.from_at)
                .bind(hold.until_at)
                .bind(hold.created_by)
                .bind(now_millis())
                .fetch_one(self.writes())
                .await
                .map_err(|e| map_write(e, "hold_exists"))?;
                hold_from_row(&row)
            }

            #[tracing::instrument(skip_all)]
            async fn holds(&self) -> StoreResult<Vec<LegalHold>> {
                sqlx::query(&format!("SELECT {HOLD_COLS} FROM legal_holds ORDER BY id"))
                    .fetch_all(self.reads())
                    .await?
                    .iter()
                    .map(hold_from_row)
                    .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn set_hold_release(
                &self,
                id: i64,
                requested_by: UserId,
                requested_at: i64,
                released_at: i64,
            ) -> StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE legal_holds SET release_requested_by = $2,
                        release_requested_at = $3, released_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(requested_by)
                .bind(requested_at)
                .bind(released_at)
                .execute(self.writes())
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn message_versions(&self, message: EventId) -> StoreResult<Vec<EventVersion>> {
                sqlx::query(
                    "SELECT v.event_id, v.replaced_at, v.cause, v.body, v.metadata
                       FROM event_versions v JOIN events e ON e.id = v.event_id
                      WHERE e.id = $1 OR (e.kind = 'edit' AND e.target = $1)
                      ORDER BY v.id",
                )
                .bind(message)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(|row| {
                    Ok(EventVersion {
                        event_id: col(row, "event_id")?,
                        replaced_at: col(row, "replaced_at")?,
                        cause: col(row, "cause")?,
                        body: col(row, "body")?,
                        metadata: decode_metadata(&col::<_, String>(row, "metadata")?)?,
                    })
                })
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn search_messages(&self, query: &SearchQuery) -> StoreResult<Vec<Event>> {
                let plan = if <$store>::FTS5
                    && !query.senders.is_empty()
                    && query.sender_scan_max > 0
                    && self.live_messages_of(&query.senders, query.sender_scan_max.saturating_add(1)).await?
                        <= query.sender_scan_max
                {
                    SearchPlan::BySender
                } else {
                    SearchPlan::Words
                };
                let (sql, binds) = search_sql::<$store>(query, plan);
                let mut statement = sqlx::query(&sql);
                for bind in binds {
                    statement = match bind {
                        SearchBind::Int(value) => statement.bind(value),
                        SearchBind::Text(value) => statement.bind(value),
                    };
                }
                statement
                    .fetch_all(self.reads())
                    .await?
                    .iter()
                    .map(event_from_row)
                    .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn reindex_messages(
                &self,
                after: EventId,
                batch: u32,
                missing_only: bool,
            ) -> StoreResult<ReindexStep> {
                let rows = sqlx::query(&format!(
                    "SELECT e.id, e.body, e.search_text FROM events e
                      WHERE e.id > $1 AND {} AND e.body IS NOT NULL{}
                      ORDER BY e.id LIMIT $2",
                    <$store>::LIVE_MESSAGE,
                    if missing_only { " AND e.search_text IS NULL" } else { "" }
                ))
                .bind(after)
                .bind(limit(batch))
                .fetch_all(self.reads())
                .await?;
                let mut stale = Vec::new();
                for row in &rows {
                    let body: String = col(row, "body")?;
                    let folded = search_text::fold(&body);
                    if col::<_, Option<String>>(row, "search_text")?.as_deref() != Some(folded.as_str()) {
                        stale.push((col::<_, i64>(row, "id")?, body, folded));
                    }
                }
                if !stale.is_empty() {
                    let mut tx = self.begin_write().await?;
                    for (id, body, folded) in &stale {
                        // Only if the text is still what was read: an edit meanwhile wrote
                        // its own search text, and a delete cleared it.
                        sqlx::query(
                            "UPDATE events SET search_text = $2 WHERE id = $1 AND body = $3",
                        )
                        .bind(id)
                        .bind(folded)
                        .bind(body)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                }
                Ok(ReindexStep {
                    last: rows.last().map(|row| col(row, "id")).transpose()?,
                    visited: rows.len() as u64,
                    written: stale.len() as u64,
                })
            }

            #[tracing::instrument(skip_all)]
            async fn messages_to_index(&self, missing_only: bool) -> StoreResult<u64> {
                let count: i64 = sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM events e WHERE {} AND e.body IS NOT NULL{}",
                    <$store>::LIVE_MESSAGE,
                    if missing_only { " AND e.search_text IS NULL" } else { "" }
                ))
                .fetch_one(self.reads())
                .await?;
                Ok(u64::try_from(count).unwrap_or(0))
            }

            #[tracing::instrument(skip_all)]
            async fn set_room_retention(&self, room: RoomId, days: Option<i64>) -> StoreResult<()> {
                match days {
                    Some(days) => {
                        sqlx::query(
                            "INSERT INTO retention_policies (room_id, days) VALUES ($1, $2)
                             ON CONFLICT (room_id) DO UPDATE SET days = excluded.days",
                        )
                        .bind(room)
                        .bind(days)
                        .execute(self.writes())
                        .await
                        .map_err(|e| map_write(e, "retention_exists"))?;
                    }
                    None => {
                        sqlx::query("DELETE FROM retention_policies WHERE room_id = $1")
                            .bind(room)
                            .execute(self.writes())
                            .await?;
                    }
                }
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn create_file(
                &self,
                room: RoomId,
                uploader: UserId,
                name: &str,
                storage_key: &str,
            ) -> StoreResult<FileRecord> {
                let row = sqlx::query(&format!(
                    "INSERT INTO files (room_id, uploader_id, name, storage_key, state, created_at)
                     VALUES ($1, $2, $3, $4, 'uploading', $5) RETURNING {FILE_COLS}"
                ))
                .bind(room)
                .bind(uploader)
                .bind(name)
                .bind(storage_key)
                .bind(now_millis())
                .fetch_one(self.writes())
                .await
                .map_err(|e| map_write(e, "file_exists"))?;
                from_row::<FileRecord>(&row)
            }

            #[tracing::instrument(skip_all)]
            async fn finish_file(&self, id: i64, finished: &FinishedFile) -> StoreResult<()> {
                let (state, by, reason) = match &finished.quarantine {
                    Some((by, reason)) => ("quarantined", Some(by.as_str()), Some(reason.as_str())),
                    None => ("ready", None, None),
                };
                sqlx::query(
                    "UPDATE files SET size = $2, sha256 = $3, content_type = $4,
                            name = COALESCE($5, name), state = $6, quarantined_by = $7,
                            quarantine_reason = $8, has_thumbnail = $9
                     WHERE id = $1",
                )
                .bind(id)
                .bind(finished.size)
                .bind(&finished.sha256)
                .bind(&finished.content_type)
                .bind(finished.name.as_deref())
                .bind(state)
                .bind(by)
                .bind(reason)
                .bind(finished.thumbnail)
                .execute(self.writes())
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn create_resumable_file(
                &self,
                room: RoomId,
                uploader: UserId,
                name: &str,
                storage_key: &str,
                size: i64,
            ) -> StoreResult<FileRecord> {
                let row = sqlx::query(&format!(
                    "INSERT INTO files (room_id, uploader_id, name, storage_key, state, size, created_at)
                     VALUES ($1, $2, $3, $4, 'receiving', $5, $6) RETURNING {FILE_COLS}"
                ))
                .bind(room)
                .bind(uploader)
                .bind(name)
                .bind(storage_key)
                .bind(size)
                .bind(now_millis())
                .fetch_one(self.writes())
                .await
                .map_err(|e| map_write(e, "file_exists"))?;
                from_row::<FileRecord>(&row)
            }

            #[tracing::instrument(skip_all)]
            async fn advance_resumable_file(&self, id: i64, from: i64, to: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE files SET received = $3
                     WHERE id = $1 AND state = 'receiving' AND received = $2 AND $3 <= size",
                )
                .bind(id)
                .bind(from)
                .bind(to)
                .execute(self.writes())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn resumable_file_complete(&self, id: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE files SET state = 'uploading'
                     WHERE id = $1 AND state = 'receiving' AND received = size",
                )
                .bind(id)
                .execute(self.writes())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn release_file(&self, id: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE files SET state = 'ready', quarantined_by = NULL,
                            quarantine_reason = NULL
                     WHERE id = $1 AND state = 'quarantined'",
                )
                .bind(id)
                .execute(self.writes())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn discard_quarantined_file(&self, id: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE files SET state = 'deleted' WHERE id = $1 AND state = 'quarantined'",
                )
                .bind(id)
                .execute(self.writes())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn file(&self, id: i64) -> StoreResult<Option<FileRecord>> {
                sqlx::query(&format!("SELECT {FILE_COLS} FROM files WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?
                    .as_ref()
                    .map(from_row::<FileRecord>)
                    .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn delete_file(&self, id: i64) -> StoreResult<()> {
                sqlx::query("DELETE FROM files WHERE id = $1")
                    .bind(id)
                    .execute(self.writes())
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn files_in_state(&self, state: &str) -> StoreResult<Vec<FileRecord>> {
                sqlx::query(&format!(
                    "SELECT {FILE_COLS} FROM files WHERE state = $1 ORDER BY id"
                ))
                .bind(state)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(from_row::<FileRecord>)
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn discard_unattached_files(&self, before: i64) -> StoreResult<u64> {
                let done = sqlx::query(
                    "UPDATE files SET state = 'deleted'
                     WHERE state = 'ready' AND message_id IS NULL AND created_at < $1",
                )
                .bind(before)
                .execute(self.writes())
                .await?;
                Ok(done.rows_affected())
            }

            #[tracing::instrument(skip_all)]
            async fn discard_unattached_file(&self, id: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE files SET state = 'deleted'
                     WHERE id = $1 AND state = 'ready' AND message_id IS NULL",
                )
                .bind(id)
                .execute(self.writes())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn attached_files(&self, room: RoomId) -> StoreResult<Vec<FileRecord>> {
                sqlx::query(&format!(
                    "SELECT {FILE_COLS} FROM files
                     WHERE room_id = $1 AND message_id IS NOT NULL ORDER BY id"
                ))
                .bind(room)
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(from_row::<FileRecord>)
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn files_usage(&self) -> StoreResult<Vec<FileUsage>> {
                sqlx::query(
                    "SELECT state, CAST(COUNT(*) AS BIGINT) AS files,
                            CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes
                     FROM files GROUP BY state ORDER BY state",
                )
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(|row| {
                    Ok(FileUsage {
                        state: col(row, "state")?,
                        files: col(row, "files")?,
                        bytes: col(row, "bytes")?,
                    })
                })
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn room_retentions(&self) -> StoreResult<Vec<(RoomId, i64)>> {
                sqlx::query("SELECT room_id, days FROM retention_policies ORDER BY room_id")
                    .fetch_all(self.reads())
                    .await?
                    .iter()
                    .map(|row| Ok((col(row, "room_id")?, col(row, "days")?)))
                    .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn expired_messages(
                &self,
                now: i64,
                global_days: Option<i64>,
                after: EventId,
                max: u32,
            ) -> StoreResult<Vec<(EventId, RoomId, UserId, i64)>> {
                // Per message: the room's own days, else the global days; with neither the
                // cut-off is NULL and nothing matches.
                sqlx::query(&format!(
                    "SELECT e.id, e.room_id, e.sender_id, e.created_at
                       FROM events e LEFT JOIN retention_policies p ON p.room_id = e.room_id
                      WHERE {} AND e.id > $3
                        AND e.created_at < $1 - COALESCE(p.days, $2) * 86400000
                      ORDER BY e.id LIMIT $4",
                    <$store>::LIVE_MESSAGE
                ))
                .bind(now)
                .bind(global_days)
                .bind(after)
                .bind(limit(max))
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        col(row, "id")?,
                        col(row, "room_id")?,
                        col(row, "sender_id")?,
                        col(row, "created_at")?,
                    ))
                })
                .collect()
            }

            #[tracing::instrument(skip_all, fields(items = ids.len()))]
            async fn erase_messages(&self, ids: &[EventId]) -> StoreResult<u64> {
                if ids.is_empty() {
                    return Ok(0);
                }
                let mut tx = self.begin_write().await?;
                for id in ids {
                    sqlx::query(
                        "DELETE FROM event_versions WHERE event_id IN
                           (SELECT id FROM events WHERE id = $1 OR (kind = 'edit' AND target = $1))",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE events SET body = NULL, metadata = '{}', deleted = TRUE, search_text = NULL
                         WHERE id = $1 OR (kind = 'edit' AND target = $1)",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE files SET state = 'deleted' WHERE message_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    forget_reactions_and_pins(&mut tx, *id).await?;
                }
                tx.commit().await?;
                self.after_erase().await;
                Ok(ids.len() as u64)
            }

            #[tracing::instrument(skip_all)]
            async fn audit_checkpoints(&self) -> StoreResult<Vec<AuditCheckpoint>> {
                sqlx::query(
                    "SELECT seq, head_hash, at, key_id, signature FROM audit_checkpoints
                     ORDER BY seq",
                )
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(|row| {
                    Ok(AuditCheckpoint {
                        seq: col(row, "seq")?,
                        head_hash: col(row, "head_hash")?,
                        at: col(row, "at")?,
                        key_id: col(row, "key_id")?,
                        signature: col(row, "signature")?,
                    })
                })
                .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn recent_audit(&self, max: u32) -> StoreResult<Vec<AuditRecord>> {
                sqlx::query(&format!(
                    "SELECT id, seq, at, actor, action, subject, {}, prev_hash, hash FROM audit
                     ORDER BY seq DESC LIMIT $1",
                    <$store>::DETAIL_OUT
                ))
                .bind(limit(max))
                .fetch_all(self.reads())
                .await?
                .iter()
                .map(audit_from_row)
                .collect()
            }
        }
    };
}

pub(super) use sql_store;

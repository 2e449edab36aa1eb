//! The storage contract. Every check is written once against `Arc<dyn Store>` and runs on
//! both backends: SQLite in a temporary directory, PostgreSQL in a fresh database created for
//! the one test (`sb_test_<random>`, dropped afterwards, even when the check fails) on the
//! server named by `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! A check also gets a [`Backend`] handle, to open more stores on the same database (several
//! "nodes") and to look at the raw tables where the contract is about what is stored.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::join_all;
use sqlx::{Connection, Row};
use switchboard::store::{
    self, Appended, Event, EventKind, Metadata, NewEvent, NewRoom, NewUser, Page, Role, RoomKind,
    SearchQuery, Session, Store, StoreError, StoreOptions, StoreResult, UserId, now_millis,
};

mod accounts;
mod holds;
mod nodes;
mod plugin_data;
mod room_log;
mod rooms;
mod search;

use accounts::{sessions, users};
use holds::holds_keep_what_they_cover;
use nodes::{nodes_append_concurrently_without_gaps, same_send_from_two_nodes_is_stored_once};
use plugin_data::{audit, llm_usage_counts, plugin_kv};
use room_log::{
    append_is_ordered_and_gap_free, deleted_text_is_erased_from_storage, edit_and_delete,
    failed_items_burn_no_seq, idempotent_retry, long_runs_of_messages, paging,
    reopen_keeps_everything, retries_are_found_in_bulk, stored_sends_are_never_answered_new,
};
use rooms::{direct_room_exactly_once, group_rooms, join_and_leave, read_cursors_and_unread};
use search::{
    reindex_fills_in_what_is_missing, search_filters_and_pages, search_finds_what_people_type,
    search_reflects_edits_and_deletes_when_stored, search_sees_only_rooms_the_reader_is_in,
};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// The database under test, for opening more stores on it and for raw SQL.
#[derive(Debug, Clone)]
struct Backend {
    kind: Kind,
    url: String,
}

impl Backend {
    /// Another store on the same database: another "node".
    async fn open(&self) -> Arc<dyn Store> {
        store::open(&self.url, &options())
            .await
            .expect("open another store")
    }

    /// SQLite only: whether `needle` appears anywhere in the database files (free space and
    /// old page images included), after a checkpoint has folded the WAL into the main file.
    async fn sqlite_files_contain(&self, needle: &str) -> bool {
        assert_eq!(self.kind, Kind::Sqlite);
        let mut conn = sqlx::SqliteConnection::connect(&self.url)
            .await
            .expect("raw");
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut conn)
            .await
            .expect("checkpoint");
        assert_eq!(row.get::<i64, _>(0), 0, "checkpoint was blocked");
        conn.close().await.expect("close");
        let path = self.url.trim_start_matches("sqlite://");
        let files = [path.to_string(), format!("{path}-wal")];
        files.iter().any(|file| {
            let bytes = std::fs::read(file).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
    }

    /// Run one raw statement on the database: a state the store's API cannot make (such as
    /// rows from before a migration).
    async fn execute(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("raw");
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .expect("raw statement");
                conn.close().await.expect("close");
            }
            Kind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("raw");
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .expect("raw statement");
                conn.close().await.expect("close");
            }
        }
    }

    /// One number from raw SQL on the SQLite database.
    async fn sqlite_i64(&self, sql: &str) -> i64 {
        assert_eq!(self.kind, Kind::Sqlite);
        let mut conn = sqlx::SqliteConnection::connect(&self.url)
            .await
            .expect("raw");
        let value = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("raw query");
        conn.close().await.expect("close");
        value
    }

    /// The bytes of SQLite's search index (FTS5's segments and structure).
    async fn sqlite_index_bytes(&self) -> i64 {
        self.sqlite_i64("SELECT sum(length(block)) FROM events_fts_data")
            .await
    }

    /// The segments of SQLite's search index (each FTS5 segment has at least one leaf, and
    /// each leaf a row in `events_fts_idx`).
    async fn sqlite_index_segments(&self) -> i64 {
        self.sqlite_i64("SELECT count(DISTINCT segid) FROM events_fts_idx")
            .await
    }

    /// FTS5's own check of SQLite's search index against `events`; fails the test if the
    /// index does not match.
    async fn sqlite_index_is_sound(&self) {
        assert_eq!(self.kind, Kind::Sqlite);
        self.execute("INSERT INTO events_fts (events_fts, rank) VALUES ('integrity-check', 0)")
            .await;
    }

    /// Whether the search index's `secure-delete` is on.
    async fn sqlite_secure_delete(&self) -> bool {
        self.sqlite_i64(
            "SELECT count(*) FROM events_fts_config WHERE k = 'secure-delete' AND v = 1",
        )
        .await
            == 1
    }

    /// Events whose stored body or metadata contains `needle`, counted with raw SQL.
    async fn events_mentioning(&self, needle: &str) -> i64 {
        let pattern = format!("%{needle}%");
        match self.kind {
            Kind::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("raw");
                sqlx::query("SELECT COUNT(*) FROM events WHERE body LIKE $1 OR metadata LIKE $1")
                    .bind(&pattern)
                    .fetch_one(&mut conn)
                    .await
                    .expect("raw count")
                    .get(0)
            }
            Kind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("raw");
                sqlx::query(
                    "SELECT COUNT(*) FROM events WHERE body LIKE $1 OR metadata::text LIKE $1",
                )
                .bind(&pattern)
                .fetch_one(&mut conn)
                .await
                .expect("raw count")
                .get(0)
            }
        }
    }
}

fn options() -> StoreOptions {
    // Small pools: many tests (and "nodes") share one PostgreSQL server.
    StoreOptions {
        max_connections: 4,
        ..StoreOptions::default()
    }
}

async fn run_sqlite<F, Fut>(check: F)
where
    F: FnOnce(Arc<dyn Store>, Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    // A subdirectory that does not exist yet: opening must create it.
    let url = format!("sqlite://{}/db/switchboard.db", dir.path().display());
    let store = store::open(&url, &options())
        .await
        .expect("open sqlite store");
    assert_eq!(store.backend(), "sqlite");
    check(
        store,
        Backend {
            kind: Kind::Sqlite,
            url,
        },
    )
    .await;
}

async fn run_postgres<F, Fut>(check: F)
where
    F: FnOnce(Arc<dyn Store>, Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    let admin_url = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let name = format!("sb_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to PostgreSQL (TEST_POSTGRES_URL)");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create db");
    let url = with_database(&admin_url, &name);

    let outcome = AssertUnwindSafe(async {
        let store = store::open(&url, &options())
            .await
            .expect("open postgres store");
        assert_eq!(store.backend(), "postgres");
        check(
            store,
            Backend {
                kind: Kind::Postgres,
                url: url.clone(),
            },
        )
        .await;
    })
    .catch_unwind()
    .await;

    // FORCE ends connections a panicking check left behind in its pools.
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop db");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `postgres://user@host:port/db?params` with `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..path_start])
}

/// Declare each check once; get a `sqlite::<check>` and a `postgres::<check>` test.
macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::run_sqlite(super::$check).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::run_postgres(super::$check).await;
                }
            )*
        }
    };
}

contract!(
    users,
    sessions,
    group_rooms,
    direct_room_exactly_once,
    append_is_ordered_and_gap_free,
    idempotent_retry,
    retries_are_found_in_bulk,
    stored_sends_are_never_answered_new,
    edit_and_delete,
    deleted_text_is_erased_from_storage,
    failed_items_burn_no_seq,
    long_runs_of_messages,
    join_and_leave,
    paging,
    read_cursors_and_unread,
    plugin_kv,
    llm_usage_counts,
    audit,
    reopen_keeps_everything,
    nodes_append_concurrently_without_gaps,
    same_send_from_two_nodes_is_stored_once,
    holds_keep_what_they_cover,
    search_finds_what_people_type,
    search_reflects_edits_and_deletes_when_stored,
    search_filters_and_pages,
    search_sees_only_rooms_the_reader_is_in,
    reindex_fills_in_what_is_missing,
);

/// SQLite's own: the WAL is copied back into the database file by the background
/// checkpoint (`store.sqlite_checkpoint_ms`), long before the 1,000 pages at which SQLite
/// would do it inside a commit. Seen from outside: the main file grows to the database's
/// size while the writer stays idle. With SQLite's default the new pages would stay in the
/// WAL, and this test times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    run_sqlite(|store, backend| async move {
        let alice = user(&store, "alice").await;
        let room = group(&store, alice, &[]).await;
        // New pages for sure: 20 messages of 3 KiB each, one commit each.
        for i in 0..20 {
            send(&store, room, alice, &format!("c{i}"), &"w".repeat(3 * 1024)).await;
        }
        let path = backend.url.trim_start_matches("sqlite://").to_string();
        let mut conn = sqlx::SqliteConnection::connect(&backend.url)
            .await
            .expect("raw");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let size: i64 = sqlx::query_scalar(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            )
            .fetch_one(&mut conn)
            .await
            .expect("size");
            let on_disk = std::fs::metadata(&path).expect("db file").len();
            if on_disk == u64::try_from(size).expect("size") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the database file holds {on_disk} of {size} bytes: the WAL was not checkpointed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        conn.close().await.expect("close");
        // The store still writes and reads after its checkpoints.
        let id = send(&store, room, alice, "after", "more").await;
        let events = store
            .events(room, Page::After(0), 100)
            .await
            .expect("events");
        let last = events.last().expect("events");
        assert_eq!((last.id, last.body.as_deref()), (id, Some("more")));
    })
    .await;
}

/// SQLite's own: the search index (FTS5) writes new messages without `secure-delete`, which
/// would cost them about three times the CPU, yet whatever removes text from it (a delete,
/// an edit, a row erased) still removes the entries at once instead of masking them with a
/// tombstone until a merge (migration 0020). Seen from outside: the index's data shrinks on
/// a delete (a tombstone would add a segment), and the option is on after a delete and off
/// again after a batch of new messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_search_index_removes_text_in_place() {
    run_sqlite(|store, backend| async move {
        let alice = user(&store, "alice").await;
        let room = group(&store, alice, &[]).await;
        let batch = |from: usize| -> Vec<NewEvent> {
            (from..from + 20)
                .map(|i| {
                    msg(
                        room,
                        alice,
                        &format!("c{i}"),
                        &format!("note {i} zebra{i} quokka"),
                    )
                })
                .collect()
        };
        let ids: Vec<i64> = append_ok(&store, batch(0))
            .await
            .iter()
            .map(|a| a.event.id)
            .collect();
        assert!(
            !backend.sqlite_secure_delete().await,
            "off for new messages"
        );

        // A delete (the store's own transaction, with the trigger's delete).
        let before = backend.sqlite_index_bytes().await;
        append_ok(
            &store,
            vec![NewEvent::Delete {
                room_id: room,
                sender_id: alice,
                target: ids[0],
            }],
        )
        .await;
        let after = backend.sqlite_index_bytes().await;
        assert!(
            after < before,
            "a delete grew the index ({before} -> {after} bytes): a tombstone, not an erasure"
        );
        assert!(backend.sqlite_secure_delete().await, "on after a delete");

        // New messages turn it off again; an erased row (retention's DELETE) turns it on.
        append_ok(&store, batch(20)).await;
        assert!(
            !backend.sqlite_secure_delete().await,
            "off again for new messages"
        );
        let before = backend.sqlite_index_bytes().await;
        backend
            .execute(&format!("DELETE FROM events WHERE id = {}", ids[1]))
            .await;
        let after = backend.sqlite_index_bytes().await;
        assert!(
            after < before,
            "erasing a row grew the index ({before} -> {after} bytes)"
        );
        assert!(
            backend.sqlite_secure_delete().await,
            "on after a row is erased"
        );

        // What is left is found, what was removed is not, and the index is sound.
        // The index keeps which rows hold a trigram, not where (migration 0021): a word is
        // asked for as all of its trigrams.
        let holding_all_trigrams_of = |word: &str| {
            let trigrams: Vec<String> = store::search_text::index_trigrams(word)
                .iter()
                .map(|trigram| format!("\"{trigram}\""))
                .collect();
            format!(
                "SELECT count(*) FROM events_fts WHERE events_fts MATCH '{}'",
                trigrams.join(" ")
            )
        };
        let found = backend.sqlite_i64(&holding_all_trigrams_of("quokka")).await;
        assert_eq!(found, 38);
        for gone in ["zebra0 ", "zebra1 "] {
            let hits = backend.sqlite_i64(&holding_all_trigrams_of(gone)).await;
            assert_eq!(hits, 0, "{gone} is still found");
        }
        backend.sqlite_index_is_sound().await;
    })
    .await;
}

/// SQLite's search index is merged in bounded steps between commits, not inside them
/// (`store::sqlite_index_merge`): each batch leaves a segment of its own, the steps merge
/// them, and the merged index is sound and finds the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_search_index_merges_in_steps_between_commits() {
    run_sqlite(|store, backend| async move {
        let alice = user(&store, "alice").await;
        let room = group(&store, alice, &[]).await;
        // Fewer batches than FTS5's `crisismerge` (16), which would merge inside a commit.
        for i in 0..12 {
            append_ok(
                &store,
                vec![msg(room, alice, &format!("w{i}"), &format!("walrus {i}"))],
            )
            .await;
        }
        let unmerged = backend.sqlite_index_segments().await;
        assert!(
            unmerged >= 12,
            "the commits merged the index themselves: {unmerged} segments for 12 batches"
        );

        let mut steps_that_merged = 0;
        for _ in 0..100 {
            if !store.merge_search_index(16).await.expect("merge step") {
                break;
            }
            steps_that_merged += 1;
        }
        assert!(steps_that_merged > 0, "no step merged anything");
        let merged = backend.sqlite_index_segments().await;
        assert!(
            merged <= 4,
            "{merged} segments left of {unmerged} after the steps"
        );
        assert!(
            !store.merge_search_index(16).await.expect("merge step"),
            "a step after the last finds nothing"
        );
        backend.sqlite_index_is_sound().await;
        let found = search_every_room(&store, "walrus").await;
        assert_eq!(found.len(), 12);
    })
    .await;
}

/// A run of new messages is indexed in one statement after its inserts, not by the insert
/// trigger row by row (migration 0022): FTS5 starts a segment at every statement, so row
/// by row a batch of n messages left n segments. Messages stored through the savepoint path
/// in the same batch (a mention), and after the run, are indexed by the trigger as before;
/// the index is sound and finds every message, also after the store is opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_search_index_takes_a_run_of_messages_in_one_segment() {
    run_sqlite(|store, backend| async move {
        let alice = user(&store, "alice").await;
        let bob = user(&store, "bob").await;
        let room = group(&store, alice, &[bob]).await;
        let run = |from: usize, n: usize| -> Vec<NewEvent> {
            (from..from + n)
                .map(|i| msg(room, alice, &format!("r{i}"), &format!("okapi {i}")))
                .collect()
        };
        append_ok(&store, run(0, 10)).await;
        assert_eq!(
            backend.sqlite_index_segments().await,
            1,
            "a run of 10 messages left more than one segment"
        );

        // A batch that mixes runs with a message stored through a savepoint (a mention),
        // a retry of a stored message and a message to a room that does not exist.
        let mut mentioning = msg(room, alice, "m1", "okapi mentioning bob");
        if let NewEvent::Message { mentions, .. } = &mut mentioning {
            mentions.users.push(bob);
        }
        let mut mixed = run(10, 3);
        mixed.push(mentioning);
        mixed.extend(run(13, 3));
        mixed.push(msg(room, alice, "r0", "okapi 0"));
        mixed.push(msg(room + 1000, alice, "nowhere", "okapi nowhere"));
        mixed.extend(run(16, 2));
        let outcomes = store.append_events(&mixed).await.expect("batch");
        assert!(outcomes[..mixed.len() - 3].iter().all(Result::is_ok));
        assert!(outcomes[mixed.len() - 4].as_ref().expect("retry").duplicate);
        assert!(matches!(
            outcomes[mixed.len() - 3],
            Err(StoreError::NotFound)
        ));
        assert!(outcomes[mixed.len() - 2..].iter().all(Result::is_ok));
        assert_eq!(
            backend
                .sqlite_i64("SELECT count(*) FROM search_index_deferred")
                .await,
            0,
            "the insert trigger was left off"
        );

        // One message at a time, through the fast path, then after a reopen.
        send(&store, room, bob, "b1", "okapi from bob").await;
        drop(store);
        let store = backend.open().await;
        append_ok(&store, run(18, 2)).await;

        backend.sqlite_index_is_sound().await;
        let found = search_every_room(&store, "okapi").await;
        assert_eq!(
            found.len(),
            22,
            "10 + 8 + the mention + bob's + 2 after the reopen"
        );
    })
    .await;
}

/// Migration 0021 rebuilds SQLite's search index without positions: a database indexed
/// under the schema before it finds the same messages afterwards, and rows without search
/// text stay out of the rebuilt index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_search_index_rebuilt_without_positions_finds_what_was_indexed() {
    use sqlx::ConnectOptions as _;
    use std::str::FromStr as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/switchboard.db", dir.path().display());
    {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .expect("url")
            .create_if_missing(true)
            .connect()
            .await
            .expect("connect");
        let before_0021 = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                switchboard::store::schema::SQLITE
                    .migrations
                    .iter()
                    .filter(|m| m.version < 21)
                    .cloned()
                    .collect(),
            ),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        before_0021
            .run(&mut conn)
            .await
            .expect("migrations to 0020");
        for statement in [
            "INSERT INTO users (id, name, display_name, created_at) VALUES (1, 'alice', 'Alice', 0)",
            "INSERT INTO rooms (id, kind, name, created_by, created_at) VALUES (1, 'group', 'r', 1, 0)",
            "INSERT INTO events (room_id, seq, kind, sender_id, body, created_at, search_text) \
             VALUES (1, 1, 'message', 1, 'Narwhal ahoy', 0, 'narwhal ahoy'), \
                    (1, 2, 'message', 1, 'narwhals again', 0, 'narwhals again'), \
                    (1, 3, 'message', 1, 'a narwhal, unindexed', 0, NULL)",
        ] {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .expect(statement);
        }
        conn.close().await.expect("close");
    }

    let store = store::open(&url, &options())
        .await
        .expect("open and migrate");
    let backend = Backend {
        kind: Kind::Sqlite,
        url,
    };
    let found: Vec<i64> = search_every_room(&store, "narwhal")
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        found,
        vec![2, 1],
        "newest first, the unindexed row not among them"
    );
    let detail: String = {
        let mut conn = sqlx::SqliteConnection::connect(&backend.url)
            .await
            .expect("raw");
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'events_fts'")
            .fetch_one(&mut conn)
            .await
            .expect("schema")
    };
    assert!(detail.contains("detail = 'none'"), "{detail}");
    backend.sqlite_index_is_sound().await;
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn user(store: &Arc<dyn Store>, name: &str) -> UserId {
    store
        .create_user(NewUser {
            name: name.into(),
            display_name: name.to_uppercase(),
            password_hash: Some(format!("hash-{name}")),
            is_admin: false,
            is_bot: false,
        })
        .await
        .expect("create user")
        .id
}

async fn group(store: &Arc<dyn Store>, owner: UserId, members: &[UserId]) -> i64 {
    let members: Vec<(UserId, Role)> = members.iter().map(|m| (*m, Role::Member)).collect();
    store
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: Some("general".into()),
                topic: Some("everything".into()),
                created_by: owner,
            },
            &members,
        )
        .await
        .expect("create room")
        .id
}

fn msg(room: i64, sender: UserId, cmid: &str, body: &str) -> NewEvent {
    NewEvent::Message {
        room_id: room,
        sender_id: sender,
        client_msg_id: cmid.into(),
        body: body.into(),
        metadata: Metadata::new(),
        files: Vec::new(),
        thread: None,
        mentions: Default::default(),
    }
}

/// Up to 100 messages holding `word` (already folded), in every room.
async fn search_every_room(store: &Arc<dyn Store>, word: &str) -> Vec<Event> {
    let query = SearchQuery {
        required: vec![word.into()],
        limit: 100,
        ..SearchQuery::default()
    };
    store.search_messages(&query).await.expect("search")
}

/// Append a batch in which every item must succeed.
async fn append_ok(store: &Arc<dyn Store>, batch: Vec<NewEvent>) -> Vec<Appended> {
    store
        .append_events(&batch)
        .await
        .expect("batch")
        .into_iter()
        .map(|r| r.expect("item"))
        .collect()
}

async fn send(store: &Arc<dyn Store>, room: i64, sender: UserId, cmid: &str, body: &str) -> i64 {
    append_ok(store, vec![msg(room, sender, cmid, body)]).await[0]
        .event
        .id
}

async fn seqs(store: &Arc<dyn Store>, room: i64) -> Vec<i64> {
    store
        .events(room, Page::After(0), 10_000)
        .await
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect()
}

fn one_to(n: i64) -> Vec<i64> {
    (1..=n).collect()
}

fn assert_conflict<T: std::fmt::Debug>(result: StoreResult<T>, code: &str) {
    match result {
        Err(StoreError::Conflict(c)) => assert_eq!(c, code),
        other => panic!("expected Conflict({code}), got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: StoreResult<T>) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "expected NotFound, got {result:?}"
    );
}

/// `StoreResult<Appended>` is not `Clone` (sqlx errors are not); tests only need the shape.
trait CloneResult {
    fn clone_result(&self) -> StoreResult<Appended>;
}

impl CloneResult for StoreResult<Appended> {
    fn clone_result(&self) -> StoreResult<Appended> {
        match self {
            Ok(a) => Ok(a.clone()),
            Err(StoreError::NotFound) => Err(StoreError::NotFound),
            Err(StoreError::Conflict(c)) => Err(StoreError::Conflict(c)),
            Err(other) => panic!("unexpected error {other}"),
        }
    }
}

#[tokio::test]
async fn sqlite_in_memory_url_works() {
    // One in-memory database per store: reads must go through the same connection as writes.
    let store = store::open("sqlite::memory:", &options())
        .await
        .expect("open");
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    send(&store, room, alice, "c1", "hi").await;
    assert_eq!(seqs(&store, room).await, [1]);
}

#[test]
fn database_url_is_rewritten() {
    assert_eq!(
        with_database("postgres://u@h:5/postgres", "x"),
        "postgres://u@h:5/x"
    );
    assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
}

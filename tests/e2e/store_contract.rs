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
    self, Appended, EventKind, Metadata, NewEvent, NewRoom, NewUser, Page, Role, RoomKind, Session,
    Store, StoreError, StoreOptions, StoreResult, UserId, now_millis,
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
    edit_and_delete,
    deleted_text_is_erased_from_storage,
    failed_items_burn_no_seq,
    join_and_leave,
    paging,
    read_cursors_and_unread,
    plugin_kv,
    audit,
    reopen_keeps_everything,
    nodes_append_concurrently_without_gaps,
    same_send_from_two_nodes_is_stored_once,
);

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
    }
}

/// Append a batch in which every item must succeed.
async fn append_ok(store: &Arc<dyn Store>, batch: Vec<NewEvent>) -> Vec<Appended> {
    store
        .append_events(batch)
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

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

async fn users(store: Arc<dyn Store>, _: Backend) {
    store.ping().await.expect("ping");
    assert!(
        store
            .size_bytes()
            .await
            .expect("size")
            .is_some_and(|n| n > 0)
    );
    assert_eq!(store.count_users().await.expect("count"), 0);

    let alice = store
        .create_user(NewUser {
            name: "alice".into(),
            display_name: "Alice".into(),
            password_hash: Some("$argon2id$x".into()),
            is_admin: true,
            is_bot: false,
        })
        .await
        .expect("alice");
    assert_eq!(
        (alice.name.as_str(), alice.display_name.as_str()),
        ("alice", "Alice")
    );
    assert!(alice.is_admin && !alice.is_bot && alice.active);
    assert!((now_millis() - alice.created_at).abs() < 60_000);

    let bot = store
        .create_user(NewUser {
            name: "bot".into(),
            display_name: "Bot".into(),
            password_hash: None,
            is_admin: false,
            is_bot: true,
        })
        .await
        .expect("bot");
    let again = store
        .create_user(NewUser {
            name: "alice".into(),
            display_name: "Other".into(),
            password_hash: None,
            is_admin: false,
            is_bot: false,
        })
        .await;
    assert_conflict(again, "user_exists");
    assert_eq!(store.count_users().await.expect("count"), 2);

    assert_eq!(
        store.user_by_id(alice.id).await.expect("by id"),
        Some(alice.clone())
    );
    assert_eq!(
        store.user_by_id(alice.id + 1000).await.expect("by id"),
        None
    );
    let (found, hash) = store
        .user_by_name("alice")
        .await
        .expect("by name")
        .expect("alice");
    assert_eq!(
        (found, hash.as_deref()),
        (alice.clone(), Some("$argon2id$x"))
    );
    let (_, bot_hash) = store
        .user_by_name("bot")
        .await
        .expect("by name")
        .expect("bot");
    assert_eq!(bot_hash, None);
    assert_eq!(store.user_by_name("nobody").await.expect("by name"), None);

    let names: Vec<String> = store
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bot"]);

    store
        .set_user_active(bot.id, false)
        .await
        .expect("deactivate");
    assert!(
        !store
            .user_by_id(bot.id)
            .await
            .expect("get")
            .expect("bot")
            .active
    );
    store
        .set_password_hash(alice.id, "new-hash")
        .await
        .expect("set hash");
    let (_, hash) = store
        .user_by_name("alice")
        .await
        .expect("by name")
        .expect("alice");
    assert_eq!(hash.as_deref(), Some("new-hash"));
    assert_not_found(store.set_user_active(9999, false).await);
    assert_not_found(store.set_password_hash(9999, "x").await);
}

async fn sessions(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let now = now_millis();
    let session = |id: &str, expires_at| Session {
        id: id.into(),
        user_id: alice,
        refresh_hash: format!("{id}-r0"),
        created_at: now,
        expires_at,
        revoked: false,
    };
    let s1 = session("s1", now + 3_600_000);
    store.create_session(&s1).await.expect("s1");
    store
        .create_session(&session("s2", now + 3_600_000))
        .await
        .expect("s2");
    store
        .create_session(&session("old", now - 1))
        .await
        .expect("expired");
    assert_eq!(store.session("s1").await.expect("get"), Some(s1.clone()));
    assert_eq!(store.session("nope").await.expect("get"), None);

    // Rotation: the current hash works once; a replay of it is refused.
    let later = now + 7_200_000;
    assert!(
        store
            .rotate_refresh("s1", "s1-r0", "s1-r1", later)
            .await
            .expect("rotate")
    );
    assert!(
        !store
            .rotate_refresh("s1", "s1-r0", "s1-r2", later)
            .await
            .expect("replay")
    );
    let rotated = store.session("s1").await.expect("get").expect("s1");
    assert_eq!(
        (rotated.refresh_hash.as_str(), rotated.expires_at),
        ("s1-r1", later)
    );
    assert!(
        store
            .rotate_refresh("s1", "s1-r1", "s1-r2", later)
            .await
            .expect("rotate again")
    );
    // An expired session cannot be refreshed.
    assert!(
        !store
            .rotate_refresh("old", "old-r0", "old-r1", later)
            .await
            .expect("expired")
    );

    // Revocation ends refreshes.
    store.revoke_session("s1").await.expect("revoke");
    store
        .revoke_session("s1")
        .await
        .expect("revoke is idempotent");
    assert!(store.session("s1").await.expect("get").expect("s1").revoked);
    assert!(
        !store
            .rotate_refresh("s1", "s1-r2", "s1-r3", later)
            .await
            .expect("revoked")
    );

    // Revoking a user's sessions returns only those that were still live.
    let ids = store.revoke_user_sessions(alice).await.expect("revoke all");
    assert_eq!(ids, ["s2"]);
    assert!(store.session("s2").await.expect("get").expect("s2").revoked);
    assert!(
        store
            .revoke_user_sessions(alice)
            .await
            .expect("again")
            .is_empty()
    );
}

async fn group_rooms(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let room = store
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: Some("ops".into()),
                topic: Some("on call".into()),
                created_by: alice,
            },
            // The creator listed again (as member) stays owner; bob listed twice keeps his
            // first role.
            &[
                (bob, Role::Admin),
                (alice, Role::Member),
                (carol, Role::Member),
                (bob, Role::Member),
            ],
        )
        .await
        .expect("create");
    assert_eq!(room.kind, RoomKind::Group);
    assert_eq!(
        (room.name.as_deref(), room.topic.as_deref()),
        (Some("ops"), Some("on call"))
    );
    assert_eq!((room.created_by, room.last_seq), (alice, 0));
    assert_eq!(store.room(room.id).await.expect("room"), Some(room.clone()));
    assert_eq!(store.room(room.id + 100).await.expect("room"), None);

    let members: Vec<(UserId, Role)> = store
        .room_members(room.id)
        .await
        .expect("members")
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert_eq!(
        members,
        [
            (alice, Role::Owner),
            (bob, Role::Admin),
            (carol, Role::Member)
        ]
    );
    let bob_m = store
        .member(room.id, bob)
        .await
        .expect("member")
        .expect("bob");
    assert_eq!((bob_m.room_id, bob_m.role), (room.id, Role::Admin));
    let dave = user(&store, "dave").await;
    assert_eq!(store.member(room.id, dave).await.expect("member"), None);

    let second = group(&store, bob, &[]).await;
    let ids: Vec<i64> = store
        .list_rooms()
        .await
        .expect("list")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [room.id, second]);

    // A member that does not exist fails the whole creation.
    let bad = store
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: None,
                topic: None,
                created_by: alice,
            },
            &[(424_242, Role::Member)],
        )
        .await;
    assert_not_found(bad);
    assert_eq!(store.list_rooms().await.expect("list").len(), 2);
}

async fn direct_room_exactly_once(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let (room, created) = store.direct_room(alice, bob).await.expect("direct");
    assert!(created);
    assert_eq!((room.kind, room.name.clone()), (RoomKind::Direct, None));
    let (again, created) = store.direct_room(bob, alice).await.expect("direct again");
    assert!(!created);
    assert_eq!(again.id, room.id);
    let members: Vec<UserId> = store
        .room_members(room.id)
        .await
        .expect("members")
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(members, [alice.min(bob), alice.max(bob)]);

    // Both users ask at once, from several stores ("nodes"), many times over.
    let carol = user(&store, "carol").await;
    let nodes = [store.clone(), backend.open().await, backend.open().await];
    let asks = (0..12).map(|i| {
        let node = nodes[i % nodes.len()].clone();
        let (a, b) = if i % 2 == 0 {
            (alice, carol)
        } else {
            (carol, alice)
        };
        async move { node.direct_room(a, b).await.expect("concurrent direct") }
    });
    let answers = join_all(asks).await;
    let ids: BTreeSet<i64> = answers.iter().map(|(r, _)| r.id).collect();
    assert_eq!(ids.len(), 1, "one room for the pair: {answers:?}");
    assert_eq!(answers.iter().filter(|(_, created)| *created).count(), 1);
    let directs = store
        .list_rooms()
        .await
        .expect("list")
        .iter()
        .filter(|r| r.kind == RoomKind::Direct)
        .count();
    assert_eq!(directs, 2);

    // The room list names the peer.
    let summaries = store.rooms_for_user(carol).await.expect("rooms");
    assert_eq!(summaries.len(), 1);
    assert_eq!(
        (summaries[0].peer, summaries[0].role),
        (Some(alice), Role::Member)
    );
    let peers: BTreeSet<Option<UserId>> = store
        .rooms_for_user(alice)
        .await
        .expect("rooms")
        .iter()
        .map(|s| s.peer)
        .collect();
    assert_eq!(peers, BTreeSet::from([Some(bob), Some(carol)]));
}

async fn append_is_ordered_and_gap_free(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let r1 = group(&store, alice, &[]).await;
    let r2 = group(&store, alice, &[]).await;

    // One batch interleaving two rooms: each room counts on its own.
    let batch: Vec<NewEvent> = (0..20)
        .map(|i| {
            msg(
                if i % 2 == 0 { r1 } else { r2 },
                alice,
                &format!("b{i}"),
                &format!("m{i}"),
            )
        })
        .collect();
    let done = append_ok(&store, batch).await;
    let got: Vec<(i64, i64)> = done
        .iter()
        .map(|a| (a.event.room_id, a.event.seq))
        .collect();
    let want: Vec<(i64, i64)> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                (r1, i / 2 + 1)
            } else {
                (r2, i / 2 + 1)
            }
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        done.iter()
            .all(|a| !a.duplicate && a.event.kind == EventKind::Message)
    );
    assert_eq!(done[4].event.body.as_deref(), Some("m4"));
    assert_eq!(done[4].event.client_msg_id.as_deref(), Some("b4"));
    assert_eq!(
        store.event(done[4].event.id).await.expect("event"),
        Some(done[4].event.clone())
    );

    // Many concurrent writers on the same room.
    let writers = (0..8).map(|w| {
        let store = store.clone();
        async move {
            for i in 0..10 {
                append_ok(&store, vec![msg(r1, alice, &format!("w{w}-{i}"), "x")]).await;
            }
        }
    });
    join_all(writers).await;
    assert_eq!(seqs(&store, r1).await, one_to(90));
    assert_eq!(seqs(&store, r2).await, one_to(10));
    assert_eq!(
        store.room(r1).await.expect("room").expect("r1").last_seq,
        90
    );
    assert_eq!(
        store
            .events(r1, Page::After(0), 10_000)
            .await
            .expect("events")
            .len(),
        90
    );
}

async fn idempotent_retry(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;

    // The same send twice in one batch, plus another sender reusing the id (not a duplicate).
    let done = append_ok(
        &store,
        vec![
            msg(room, alice, "c1", "hello"),
            msg(room, alice, "c1", "hello (retry)"),
            msg(room, bob, "c1", "bob's own c1"),
        ],
    )
    .await;
    assert!(!done[0].duplicate && done[1].duplicate && !done[2].duplicate);
    assert_eq!(done[1].event, done[0].event);
    assert_eq!(done[1].event.body.as_deref(), Some("hello"));
    assert_eq!((done[0].event.seq, done[2].event.seq), (1, 2));

    // A retry in a later batch.
    let retry = append_ok(&store, vec![msg(room, alice, "c1", "hello")]).await;
    assert!(retry[0].duplicate);
    assert_eq!(retry[0].event, done[0].event);
    assert_eq!(seqs(&store, room).await, one_to(2));
    assert_eq!(
        store
            .room(room)
            .await
            .expect("room")
            .expect("room")
            .last_seq,
        2
    );

    let found = store
        .event_by_client_msg_id(alice, "c1")
        .await
        .expect("lookup");
    assert_eq!(found, Some(done[0].event.clone()));
    assert_eq!(
        store
            .event_by_client_msg_id(alice, "c2")
            .await
            .expect("lookup"),
        None
    );
    // The next new send takes the next seq: the retries burnt none.
    assert_eq!(
        append_ok(&store, vec![msg(room, alice, "c2", "next")]).await[0]
            .event
            .seq,
        3
    );
}

async fn edit_and_delete(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;
    let other_room = group(&store, alice, &[]).await;
    let m = send(&store, room, alice, "c1", "first draft").await;

    let meta = Metadata::from([("dlp".to_string(), "clean".to_string())]);
    let edited = append_ok(
        &store,
        vec![NewEvent::Edit {
            room_id: room,
            sender_id: alice,
            target: m,
            body: "final text".into(),
            metadata: meta.clone(),
        }],
    )
    .await;
    let edit = &edited[0].event;
    assert_eq!(
        (edit.kind, edit.seq, edit.target),
        (EventKind::Edit, 2, Some(m))
    );
    assert_eq!(edit.body.as_deref(), Some("final text"));
    assert_eq!(edit.metadata, meta);
    let original = store.event(m).await.expect("get").expect("message");
    assert_eq!(original.body.as_deref(), Some("final text"));
    assert_eq!(original.metadata, meta);
    assert!(original.edited_at.is_some());
    assert_eq!(original.seq, 1, "an edit does not move the message");

    // Rejected edits and deletes, each positional, none burning a seq.
    let edit_by = |sender, target, room_id| NewEvent::Edit {
        room_id,
        sender_id: sender,
        target,
        body: "nope".into(),
        metadata: Metadata::new(),
    };
    let results = store
        .append_events(vec![
            edit_by(bob, m, room),         // not the author
            edit_by(alice, edit.id, room), // an edit is not a message
            edit_by(alice, 99_999, room),  // no such event
            edit_by(alice, m, other_room), // wrong room
            NewEvent::Delete {
                room_id: other_room,
                sender_id: alice,
                target: m,
            },
        ])
        .await
        .expect("batch");
    assert_conflict(results[0].clone_result(), "not_author");
    assert_conflict(results[1].clone_result(), "not_a_message");
    assert_not_found(results[2].clone_result());
    assert_not_found(results[3].clone_result());
    assert_not_found(results[4].clone_result());
    assert_eq!(
        store
            .event(m)
            .await
            .expect("get")
            .expect("m")
            .body
            .as_deref(),
        Some("final text")
    );

    // Delete (a moderator may: the store does not check authorship).
    let deleted = append_ok(
        &store,
        vec![NewEvent::Delete {
            room_id: room,
            sender_id: bob,
            target: m,
        }],
    )
    .await;
    let del = &deleted[0].event;
    assert_eq!(
        (del.kind, del.seq, del.target, del.sender_id),
        (EventKind::Delete, 3, Some(m), bob)
    );
    assert_eq!(del.body, None);
    let gone = store.event(m).await.expect("get").expect("m");
    assert!(gone.deleted);
    assert_eq!((gone.body, gone.metadata.len()), (None, 0));
    let edit_now = store.event(edit.id).await.expect("get").expect("edit");
    assert_eq!(edit_now.body, None, "the edit's text goes with the message");

    // A deleted message can be neither edited nor deleted again.
    let results = store
        .append_events(vec![
            edit_by(alice, m, room),
            NewEvent::Delete {
                room_id: room,
                sender_id: alice,
                target: m,
            },
        ])
        .await
        .expect("batch");
    assert_conflict(results[0].clone_result(), "message_deleted");
    assert_conflict(results[1].clone_result(), "message_deleted");
    assert_eq!(seqs(&store, room).await, one_to(3));

    // History shows the log: message (erased), edit (erased), delete.
    let kinds: Vec<EventKind> = store
        .events(room, Page::After(0), 10)
        .await
        .expect("events")
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [EventKind::Message, EventKind::Edit, EventKind::Delete]
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

async fn deleted_text_is_erased_from_storage(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    let m = store
        .append_events(vec![NewEvent::Message {
            room_id: room,
            sender_id: alice,
            client_msg_id: "c1".into(),
            body: "password is hunter2".into(),
            metadata: Metadata::from([("preview".to_string(), "hunter2".to_string())]),
        }])
        .await
        .expect("batch")
        .remove(0)
        .expect("sent")
        .event
        .id;
    append_ok(
        &store,
        vec![NewEvent::Edit {
            room_id: room,
            sender_id: alice,
            target: m,
            body: "password is hunter3".into(),
            metadata: Metadata::new(),
        }],
    )
    .await;
    let kept = send(&store, room, alice, "c2", "unrelated hunter note").await;
    assert_eq!(backend.events_mentioning("hunter").await, 3);

    append_ok(
        &store,
        vec![NewEvent::Delete {
            room_id: room,
            sender_id: alice,
            target: m,
        }],
    )
    .await;
    assert_eq!(backend.events_mentioning("hunter2").await, 0);
    assert_eq!(backend.events_mentioning("hunter3").await, 0);
    // Only the unrelated message still holds the word.
    assert_eq!(backend.events_mentioning("hunter").await, 1);
    assert!(
        store
            .event(kept)
            .await
            .expect("get")
            .expect("kept")
            .body
            .is_some()
    );
}

async fn failed_items_burn_no_seq(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let room = group(&store, alice, &[bob]).await;
    let results = store
        .append_events(vec![
            msg(room, alice, "a", "one"),
            NewEvent::Edit {
                room_id: room,
                sender_id: alice,
                target: 77_777,
                body: "x".into(),
                metadata: Metadata::new(),
            },
            msg(room, alice, "b", "two"),
            NewEvent::Join {
                room_id: room,
                actor_id: alice,
                user_id: bob,
                role: Role::Member,
            },
            NewEvent::Leave {
                room_id: room,
                actor_id: alice,
                user_id: carol,
            },
            msg(55_555, alice, "c", "no such room"),
            msg(room, 88_888, "d", "no such sender"),
            msg(room, alice, "e", "three"),
        ])
        .await
        .expect("batch");
    assert_eq!(results.len(), 8);
    let seq_of = |i: usize| results[i].as_ref().map(|a| a.event.seq).ok();
    assert_eq!(
        (seq_of(0), seq_of(2), seq_of(7)),
        (Some(1), Some(2), Some(3))
    );
    assert_not_found(results[1].clone_result());
    assert_conflict(results[3].clone_result(), "already_member");
    assert_not_found(results[4].clone_result());
    assert_not_found(results[5].clone_result());
    assert_not_found(results[6].clone_result());

    // Nothing of the failed items was left behind.
    assert_eq!(seqs(&store, room).await, one_to(3));
    assert_eq!(
        store
            .room(room)
            .await
            .expect("room")
            .expect("room")
            .last_seq,
        3
    );
    assert_eq!(
        store
            .event_by_client_msg_id(alice, "c")
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(store.member(room, carol).await.expect("member"), None);
    assert_eq!(store.room_members(room).await.expect("members").len(), 2);
}

async fn join_and_leave(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[]).await;
    let joined = append_ok(
        &store,
        vec![NewEvent::Join {
            room_id: room,
            actor_id: alice,
            user_id: bob,
            role: Role::Admin,
        }],
    )
    .await;
    let e = &joined[0].event;
    assert_eq!(
        (e.kind, e.sender_id, e.target, e.seq),
        (EventKind::MemberJoined, alice, Some(bob), 1)
    );
    assert_eq!(
        store
            .member(room, bob)
            .await
            .expect("member")
            .expect("bob")
            .role,
        Role::Admin
    );

    let again = store
        .append_events(vec![NewEvent::Join {
            room_id: room,
            actor_id: alice,
            user_id: bob,
            role: Role::Member,
        }])
        .await
        .expect("batch");
    assert_conflict(again[0].clone_result(), "already_member");

    let left = append_ok(
        &store,
        vec![NewEvent::Leave {
            room_id: room,
            actor_id: bob,
            user_id: bob,
        }],
    )
    .await;
    let e = &left[0].event;
    assert_eq!(
        (e.kind, e.sender_id, e.target, e.seq),
        (EventKind::MemberLeft, bob, Some(bob), 2)
    );
    assert_eq!(store.member(room, bob).await.expect("member"), None);
    assert!(store.rooms_for_user(bob).await.expect("rooms").is_empty());

    let twice = store
        .append_events(vec![NewEvent::Leave {
            room_id: room,
            actor_id: bob,
            user_id: bob,
        }])
        .await
        .expect("batch");
    assert_not_found(twice[0].clone_result());
    // Rejoining works and continues the log.
    let back = append_ok(
        &store,
        vec![NewEvent::Join {
            room_id: room,
            actor_id: alice,
            user_id: bob,
            role: Role::Member,
        }],
    )
    .await;
    assert_eq!(back[0].event.seq, 3);
}

async fn paging(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    let other = group(&store, alice, &[]).await;
    let batch: Vec<NewEvent> = (1..=30)
        .map(|i| msg(room, alice, &format!("c{i}"), &format!("{i}")))
        .collect();
    append_ok(&store, batch).await;
    send(&store, other, alice, "other", "elsewhere").await;

    let page = |p, n| {
        let store = store.clone();
        async move {
            store
                .events(room, p, n)
                .await
                .expect("page")
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(Page::After(0), 10).await, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        page(Page::After(10), 10).await,
        (11..=20).collect::<Vec<_>>()
    );
    assert_eq!(
        page(Page::After(25), 10).await,
        (26..=30).collect::<Vec<_>>()
    );
    assert_eq!(page(Page::After(30), 10).await, Vec::<i64>::new());
    assert_eq!(
        page(Page::Before(31), 10).await,
        (21..=30).collect::<Vec<_>>()
    );
    assert_eq!(page(Page::Before(i64::MAX), 3).await, [28, 29, 30]);
    assert_eq!(
        page(Page::Before(21), 10).await,
        (11..=20).collect::<Vec<_>>()
    );
    assert_eq!(page(Page::Before(5), 10).await, [1, 2, 3, 4]);
    assert_eq!(page(Page::Before(1), 10).await, Vec::<i64>::new());
    assert_eq!(page(Page::After(0), 0).await, Vec::<i64>::new());
    let bodies: Vec<String> = store
        .events(room, Page::After(0), 3)
        .await
        .expect("page")
        .into_iter()
        .filter_map(|e| e.body)
        .collect();
    assert_eq!(bodies, ["1", "2", "3"]);
    assert!(
        store
            .events(9_999, Page::After(0), 10)
            .await
            .expect("page")
            .is_empty()
    );
}

async fn read_cursors_and_unread(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;
    let mut alice_msgs = Vec::new();
    for i in 0..5 {
        alice_msgs.push(send(&store, room, alice, &format!("a{i}"), "from alice").await);
    }
    send(&store, room, bob, "b0", "from bob").await;
    send(&store, room, bob, "b1", "from bob").await;

    let summary = |u| {
        let store = store.clone();
        async move {
            let mut all = store.rooms_for_user(u).await.expect("rooms");
            assert_eq!(all.len(), 1);
            all.remove(0)
        }
    };
    let bob_view = summary(bob).await;
    assert_eq!(
        (bob_view.room.id, bob_view.role, bob_view.peer),
        (room, Role::Member, None)
    );
    assert_eq!(
        (bob_view.read_seq, bob_view.unread, bob_view.room.last_seq),
        (0, 5, 7)
    );
    let alice_view = summary(alice).await;
    assert_eq!(
        (alice_view.role, alice_view.unread),
        (Role::Owner, 2),
        "own messages don't count"
    );

    assert_eq!(
        store.set_read_cursor(bob, room, 3).await.expect("cursor"),
        3
    );
    assert_eq!(
        (summary(bob).await.read_seq, summary(bob).await.unread),
        (3, 2)
    );
    // Never backwards.
    assert_eq!(
        store.set_read_cursor(bob, room, 1).await.expect("cursor"),
        3
    );
    assert_eq!(summary(bob).await.read_seq, 3);
    // A deleted message is no longer unread; edits, deletes and joins never count.
    append_ok(
        &store,
        vec![
            NewEvent::Delete {
                room_id: room,
                sender_id: alice,
                target: alice_msgs[4],
            },
            NewEvent::Edit {
                room_id: room,
                sender_id: alice,
                target: alice_msgs[3],
                body: "edited".into(),
                metadata: Metadata::new(),
            },
        ],
    )
    .await;
    assert_eq!(summary(bob).await.unread, 1);
    // Beyond the end is clamped to the room's last seq, so later messages still count.
    assert_eq!(
        store
            .set_read_cursor(bob, room, 1_000)
            .await
            .expect("cursor"),
        9
    );
    assert_eq!(summary(bob).await.unread, 0);
    send(&store, room, alice, "a9", "new").await;
    assert_eq!(summary(bob).await.unread, 1);
    assert_not_found(store.set_read_cursor(bob, 9_999, 1).await);
}

async fn plugin_kv(store: Arc<dyn Store>, _: Backend) {
    assert_eq!(store.kv_get("p", "k").await.expect("get"), None);
    store.kv_put("p", "k", b"v1").await.expect("put");
    assert_eq!(
        store.kv_get("p", "k").await.expect("get").as_deref(),
        Some(&b"v1"[..])
    );
    store
        .kv_put("p", "k", &[0, 255, 0])
        .await
        .expect("overwrite with binary");
    assert_eq!(
        store.kv_get("p", "k").await.expect("get").as_deref(),
        Some(&[0u8, 255, 0][..])
    );
    // Namespaces are per plugin.
    assert_eq!(store.kv_get("q", "k").await.expect("get"), None);

    for key in [
        "user:2", "user:10", "user:1", "users", "usex", "room:1", "user%", "user_",
    ] {
        store.kv_put("p", key, key.as_bytes()).await.expect("put");
    }
    store
        .kv_put("q", "user:99", b"other plugin")
        .await
        .expect("put");
    let keys = store.kv_keys("p", "user:", 100).await.expect("keys");
    assert_eq!(keys, ["user:1", "user:10", "user:2"]);
    assert_eq!(
        store.kv_keys("p", "user:", 2).await.expect("keys"),
        ["user:1", "user:10"]
    );
    // `%` and `_` are plain characters, not patterns.
    assert_eq!(
        store.kv_keys("p", "user%", 100).await.expect("keys"),
        ["user%"]
    );
    assert_eq!(
        store.kv_keys("p", "user_", 100).await.expect("keys"),
        ["user_"]
    );
    let all = store.kv_keys("p", "", 100).await.expect("keys");
    assert_eq!(all.len(), 9);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted: {all:?}");

    assert!(store.kv_delete("p", "user:1").await.expect("delete"));
    assert!(!store.kv_delete("p", "user:1").await.expect("delete again"));
    assert_eq!(store.kv_get("p", "user:1").await.expect("get"), None);
    assert_eq!(
        store.kv_keys("p", "user:", 100).await.expect("keys"),
        ["user:10", "user:2"]
    );
}

async fn audit(store: Arc<dyn Store>, _: Backend) {
    assert!(store.recent_audit(10).await.expect("recent").is_empty());
    for i in 0..3 {
        store
            .append_audit(
                "plugin:dlp",
                "plugin.reject",
                &format!("room:{i}"),
                &serde_json::json!({ "rule": "card-number", "n": i, "nested": { "ok": true } }),
            )
            .await
            .expect("append");
    }
    store
        .append_audit(
            "system",
            "user.deactivate",
            "user:7",
            &serde_json::json!({}),
        )
        .await
        .expect("append");
    let recent = store.recent_audit(3).await.expect("recent");
    let subjects: Vec<&str> = recent.iter().map(|r| r.subject.as_str()).collect();
    assert_eq!(subjects, ["user:7", "room:2", "room:1"]);
    assert_eq!(
        (recent[0].actor.as_str(), recent[0].action.as_str()),
        ("system", "user.deactivate")
    );
    assert_eq!(
        recent[1].detail,
        serde_json::json!({ "rule": "card-number", "n": 2, "nested": { "ok": true } })
    );
    assert!(recent[0].id > recent[1].id);
    assert!((now_millis() - recent[0].at).abs() < 60_000);
}

async fn reopen_keeps_everything(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    let sent = append_ok(
        &store,
        vec![
            msg(room, alice, "c1", "kept"),
            msg(room, alice, "c2", "too"),
        ],
    )
    .await;
    store.kv_put("p", "k", b"v").await.expect("put");
    drop(store);

    // Migrations run again on open and must be a no-op.
    let reopened = backend.open().await;
    assert_eq!(reopened.count_users().await.expect("count"), 1);
    let events = reopened
        .events(room, Page::After(0), 10)
        .await
        .expect("events");
    assert_eq!(events, [sent[0].event.clone(), sent[1].event.clone()]);
    assert_eq!(
        reopened.kv_get("p", "k").await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        append_ok(&reopened, vec![msg(room, alice, "c3", "more")]).await[0]
            .event
            .seq,
        3
    );
}

async fn nodes_append_concurrently_without_gaps(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;
    let quiet = group(&store, bob, &[]).await;
    let mut nodes = vec![store.clone()];
    for _ in 0..3 {
        nodes.push(backend.open().await);
    }
    // Four nodes, three writers each, batches that mix the busy room with a second one.
    let writers = (0..12).map(|w| {
        let node = nodes[w % nodes.len()].clone();
        async move {
            let mut stored = Vec::new();
            for b in 0..5 {
                let mut batch: Vec<NewEvent> = (0..4)
                    .map(|i| {
                        msg(
                            room,
                            if i % 2 == 0 { alice } else { bob },
                            &format!("{w}-{b}-{i}"),
                            "x",
                        )
                    })
                    .collect();
                batch.push(msg(quiet, bob, &format!("q{w}-{b}"), "y"));
                for item in node.append_events(batch).await.expect("batch") {
                    let appended = item.expect("item");
                    assert!(!appended.duplicate);
                    stored.push((appended.event.room_id, appended.event.seq));
                }
            }
            stored
        }
    });
    let stored: Vec<(i64, i64)> = join_all(writers).await.into_iter().flatten().collect();
    let mut room_seqs: Vec<i64> = stored
        .iter()
        .filter(|(r, _)| *r == room)
        .map(|(_, s)| *s)
        .collect();
    room_seqs.sort_unstable();
    assert_eq!(room_seqs, one_to(240), "acks are exactly 1..N");
    assert_eq!(
        seqs(&store, room).await,
        one_to(240),
        "stored seqs are exactly 1..N"
    );
    assert_eq!(seqs(&store, quiet).await, one_to(60));
}

async fn same_send_from_two_nodes_is_stored_once(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    let elsewhere = group(&store, alice, &[]).await;
    let nodes = [store.clone(), backend.open().await, backend.open().await];

    for round in 0..10 {
        let cmid = format!("retry-{round}");
        // Same room from every node; and (a confused client) the same id into another room,
        // which must not burn a seq there either.
        let sends = (0..6).map(|i| {
            let node = nodes[i % nodes.len()].clone();
            let target = if i == 5 { elsewhere } else { room };
            let item = msg(target, alice, &cmid, "once");
            async move {
                node.append_events(vec![item])
                    .await
                    .expect("batch")
                    .remove(0)
                    .expect("item")
            }
        });
        let acks = join_all(sends).await;
        let ids: BTreeSet<i64> = acks.iter().map(|a| a.event.id).collect();
        assert_eq!(ids.len(), 1, "one event for {cmid}: {acks:?}");
        assert_eq!(acks.iter().filter(|a| !a.duplicate).count(), 1);
    }
    let total = seqs(&store, room).await.len() + seqs(&store, elsewhere).await.len();
    assert_eq!(total, 10);
    let last = store
        .room(room)
        .await
        .expect("room")
        .expect("room")
        .last_seq
        + store
            .room(elsewhere)
            .await
            .expect("room")
            .expect("room")
            .last_seq;
    assert_eq!(last, 10, "no seq burnt by a lost race");
    assert_eq!(
        seqs(&store, room).await,
        one_to(i64::try_from(seqs(&store, room).await.len()).expect("len"))
    );
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

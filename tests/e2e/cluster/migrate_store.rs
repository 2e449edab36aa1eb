//! `switchboard migrate-store`: a populated SQLite installation copied into PostgreSQL with
//! every id, seq, timestamp, hash and flag intact, and new rows continuing after the old.

use std::process::{Command, Output};
use std::sync::Arc;

use switchboard::store::{
    self, Mentions, Metadata, NewEvent, NewRoom, NewUser, Page, Role, RoomKind, Session, Store,
    StoreOptions, ThreadReply, now_millis,
};

use super::PgDb;

fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 2,
        ..StoreOptions::default()
    }
}

fn migrate(from: &str, to: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["migrate-store", "--from", from, "--to", to])
        .env_clear()
        .current_dir(dir.path())
        .output()
        .expect("run migrate-store")
}

async fn new_user(store: &Arc<dyn Store>, name: &str, admin: bool) -> i64 {
    store
        .create_user(NewUser {
            name: name.into(),
            display_name: format!("{name} display"),
            password_hash: Some(format!("$argon2id$v=19$m=19456,t=2,p=1$fake${name}")),
            is_admin: admin,
            is_bot: false,
        })
        .await
        .expect("user")
        .id
}

fn message(room: i64, sender: i64, cmid: &str, body: &str) -> NewEvent {
    let mut metadata = Metadata::new();
    metadata.insert("lang".into(), "en".into());
    metadata.insert("n".into(), cmid.into());
    NewEvent::Message {
        room_id: room,
        sender_id: sender,
        client_msg_id: cmid.into(),
        body: body.into(),
        metadata,
        files: Vec::new(),
        thread: None,
        mentions: Default::default(),
    }
}

async fn append(store: &Arc<dyn Store>, events: Vec<NewEvent>) -> Vec<i64> {
    store
        .append_events(&events)
        .await
        .expect("append")
        .into_iter()
        .map(|r| r.expect("item").event.id)
        .collect()
}

/// Fill a SQLite store with one of everything.
async fn populate(store: &Arc<dyn Store>) -> (Vec<i64>, Vec<i64>) {
    let admin = new_user(store, "admin", true).await;
    let alice = new_user(store, "alice", false).await;
    let bob = new_user(store, "bob", false).await;
    let carol = new_user(store, "carol", false).await;
    let bot = store
        .create_user(NewUser {
            name: "bot".into(),
            display_name: "Bot".into(),
            password_hash: None,
            is_admin: false,
            is_bot: true,
        })
        .await
        .expect("bot")
        .id;
    store.set_user_active(carol, false).await.unwrap();
    let now = now_millis();
    for (id, user, revoked) in [("s-live", alice, false), ("s-dead", bob, true)] {
        store
            .create_session(&Session {
                id: id.into(),
                user_id: user,
                refresh_hash: format!("refresh-{id}"),
                created_at: now - 1000,
                expires_at: now + 86_400_000,
                revoked: false,
            })
            .await
            .unwrap();
        if revoked {
            store.revoke_session(id).await.unwrap();
        }
    }
    let group = store
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: Some("general".into()),
                topic: Some("all of it".into()),
                created_by: alice,
            },
            &[(bob, Role::Admin), (bot, Role::Member)],
        )
        .await
        .unwrap()
        .id;
    let (direct, _) = store.direct_room(alice, bob).await.unwrap();
    let empty = store
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: Some("quiet".into()),
                topic: None,
                created_by: admin,
            },
            &[],
        )
        .await
        .unwrap()
        .id;

    // Interleave rooms so event ids and per-room seqs differ.
    let mut ids = Vec::new();
    for i in 0..30 {
        let (room, sender) = if i % 3 == 0 {
            (direct.id, bob)
        } else {
            (group, alice)
        };
        ids.extend(
            append(
                store,
                vec![message(
                    room,
                    sender,
                    &format!("m{i}"),
                    &format!("text {i}"),
                )],
            )
            .await,
        );
    }
    let target = ids[1];
    append(
        store,
        vec![
            NewEvent::Edit {
                room_id: group,
                sender_id: alice,
                target,
                body: "text 1, edited".into(),
                metadata: Metadata::new(),
                mentions: Default::default(),
            },
            NewEvent::Delete {
                room_id: group,
                sender_id: alice,
                target: ids[2],
            },
            NewEvent::Join {
                room_id: group,
                actor_id: alice,
                user_id: carol,
                role: Role::Member,
            },
            NewEvent::Leave {
                room_id: group,
                actor_id: alice,
                user_id: bot,
            },
        ],
    )
    .await;
    // A reply in a thread that mentions bob and the room, and bob's place in the thread.
    let root = ids[4];
    append(
        store,
        vec![NewEvent::Message {
            room_id: group,
            sender_id: alice,
            client_msg_id: "reply".into(),
            body: "@bob @room see the thread".into(),
            metadata: Metadata::new(),
            files: Vec::new(),
            thread: Some(ThreadReply {
                root,
                also_to_room: true,
            }),
            mentions: Mentions {
                users: vec![bob],
                room: true,
            },
        }],
    )
    .await;
    store
        .set_thread_read(bob, group, root, 1_000)
        .await
        .unwrap();
    store.set_read_cursor(bob, group, 7).await.unwrap();
    store.set_read_cursor(alice, direct.id, 3).await.unwrap();
    store
        .kv_put("dlp", "rules/a", b"\x00\xffbinary")
        .await
        .unwrap();
    store.kv_put("dlp", "rules/b", b"second").await.unwrap();
    store.kv_put("welcome", "seen:2", b"1").await.unwrap();
    // What identity providers keep: an identity, groups with members, a sign-in in flight.
    store
        .set_external_identity(
            alice,
            "scim",
            &switchboard::store::ExternalIdentity {
                external_id: Some("ext-alice".into()),
                email: Some("alice@example.com".into()),
            },
        )
        .await
        .unwrap();
    store
        .create_group("scim", "Engineering", Some("grp-1"), &[alice, bob])
        .await
        .unwrap();
    store
        .create_group("oidc:corp", "Everyone", None, &[carol])
        .await
        .unwrap();
    store
        .put_once(
            "digest-of-a-state",
            "oidc_state",
            "{\"provider\":\"corp\"}",
            0,
        )
        .await
        .unwrap();
    for i in 0..3 {
        store
            .append_audit(
                "system",
                "test.action",
                &format!("user:{i}"),
                &serde_json::json!({ "i": i, "nested": { "k": [1, 2] } }),
            )
            .await
            .unwrap();
    }
    (
        vec![admin, alice, bob, carol, bot],
        vec![group, direct.id, empty],
    )
}

/// Everything a client or operator can see, through the Store API.
async fn snapshot(store: &Arc<dyn Store>, users: &[i64], rooms: &[i64]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let list = store.list_users().await.unwrap();
    let mut hashes = Vec::new();
    let mut summaries = Vec::new();
    for user in &list {
        hashes.push(store.user_by_name(&user.name).await.unwrap().unwrap().1);
    }
    let mut mentions = Vec::new();
    for user in users {
        summaries.push(format!("{:?}", store.rooms_for_user(*user).await.unwrap()));
        mentions.push(store.mentions_of(*user, None, 100).await.unwrap());
    }
    out.insert("mentions".into(), serde_json::to_value(&mentions).unwrap());
    out.insert("users".into(), serde_json::to_value(&list).unwrap());
    out.insert("hashes".into(), serde_json::to_value(&hashes).unwrap());
    out.insert(
        "summaries".into(),
        serde_json::to_value(&summaries).unwrap(),
    );
    let sessions = [
        format!("{:?}", store.session("s-live").await.unwrap()),
        format!("{:?}", store.session("s-dead").await.unwrap()),
    ];
    out.insert("sessions".into(), serde_json::to_value(sessions).unwrap());
    out.insert(
        "rooms".into(),
        serde_json::Value::String(format!("{:?}", store.list_rooms().await.unwrap())),
    );
    for room in rooms {
        for event in store.events(*room, Page::After(0), 10_000).await.unwrap() {
            if let Some(root) = event.thread_root {
                let mut threads = Vec::new();
                for user in users {
                    threads.push(store.thread_unread(*user, root).await.unwrap());
                }
                out.insert(
                    format!("thread-{root}"),
                    serde_json::json!({
                        "replies": store.thread_replies(*room, root, Page::After(0), 100).await.unwrap(),
                        "summaries": format!("{:?}", store.annotations(0, *room, &[root], &[]).await.unwrap().threads),
                        "unread": threads,
                    }),
                );
            }
        }
        out.insert(
            format!("members-{room}"),
            serde_json::Value::String(format!("{:?}", store.room_members(*room).await.unwrap())),
        );
        out.insert(
            format!("events-{room}"),
            serde_json::to_value(store.events(*room, Page::After(0), 10_000).await.unwrap())
                .unwrap(),
        );
    }
    let mut kv = Vec::new();
    for plugin in ["dlp", "welcome"] {
        for key in store.kv_keys(plugin, "", 100).await.unwrap() {
            let value = store.kv_get(plugin, &key).await.unwrap();
            kv.push((plugin, key, value));
        }
    }
    out.insert("kv".into(), serde_json::to_value(kv).unwrap());
    let mut directory = Vec::new();
    for source in ["scim", "oidc:corp"] {
        directory.push(format!("{:?}", store.identities(source).await.unwrap()));
        let (_, groups) = store.groups_page(source, None, 0, 100).await.unwrap();
        for group in groups {
            let members = store.group_members(group.id).await.unwrap();
            directory.push(format!("{group:?} {members:?}"));
        }
    }
    out.insert("directory".into(), serde_json::to_value(directory).unwrap());
    out.insert(
        "audit".into(),
        serde_json::to_value(store.recent_audit(100).await.unwrap()).unwrap(),
    );
    serde_json::Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_copies_sqlite_to_postgres_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}/switchboard.db", dir.path().display());
    let source = store::open(&sqlite_url, &options()).await.unwrap();
    let (users, rooms) = populate(&source).await;
    let before = snapshot(&source, &users, &rooms).await;
    drop(source);

    let db = PgDb::create().await;
    let out = migrate(&sqlite_url, &db.url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "migrate-store failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified"), "{stdout}");
    assert!(stdout.contains("events"), "{stdout}");

    let target = store::open(&db.url, &options()).await.unwrap();
    assert_eq!(target.backend(), "postgres");
    let after = snapshot(&target, &users, &rooms).await;
    // Compare piece by piece for a readable failure.
    for (key, value) in before.as_object().unwrap() {
        assert_eq!(&after[key], value, "{key} differs after migration");
    }

    // New rows continue after the copied ones.
    let group = rooms[0];
    let room = target.room(group).await.unwrap().unwrap();
    let max_event = target
        .events(group, Page::After(0), 10_000)
        .await
        .unwrap()
        .iter()
        .chain(
            &target
                .events(rooms[1], Page::After(0), 10_000)
                .await
                .unwrap(),
        )
        .map(|e| e.id)
        .max()
        .unwrap();
    let appended = target
        .append_events(&[message(group, users[1], "after-migration", "new")])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(!appended.duplicate);
    assert_eq!(appended.event.seq, room.last_seq + 1);
    assert!(appended.event.id > max_event, "event id sequence moved");
    // An old client_msg_id is still known: idempotency survives the move.
    let retry = target
        .append_events(&[message(group, users[1], "m1", "again")])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(retry.duplicate);
    let dave = new_user(&target, "dave", false).await;
    assert!(
        dave > *users.iter().max().unwrap(),
        "user id sequence moved"
    );
    let new_room = target
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: Some("new".into()),
                topic: None,
                created_by: dave,
            },
            &[],
        )
        .await
        .unwrap();
    assert!(
        new_room.id > *rooms.iter().max().unwrap(),
        "room id sequence moved"
    );
    target
        .append_audit("system", "after", "x", &serde_json::json!({}))
        .await
        .unwrap();
    drop(target);

    // A second run refuses: the target is no longer empty.
    let again = migrate(&sqlite_url, &db.url);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");

    // A missing source is an error, not an empty migration.
    let empty_db = PgDb::create().await;
    let missing = format!("sqlite://{}/nope.db", dir.path().display());
    let out = migrate(&missing, &empty_db.url);
    assert!(!out.status.success());
}

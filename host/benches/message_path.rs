//! Micro-benchmarks of the message path's building blocks: the store's insert path (one
//! transaction per message vs group commit, and a batch spread over many rooms), the room
//! list with its unread counts, WebSocket frame decode/encode, and one audit record appended
//! to the hash chain.
//!
//! `cargo bench -p switchboard --bench message_path`

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchboard::protocol::{ClientFrame, ServerFrame};
use switchboard::store::{
    Event, EventKind, NewEvent, NewRoom, NewUser, RoomKind, Store, StoreOptions,
};

const BODY: &str = "The quarterly numbers are in: revenue is up 12% on last year, margins flat, and the \
                    board meets on Thursday to discuss the hiring plan for the next two quarters.";

struct Fixture {
    store: Arc<dyn Store>,
    room: i64,
    user: i64,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = switchboard::store::open(&url, &StoreOptions::default())
        .await
        .expect("store");
    let user = store
        .create_user(NewUser {
            name: "bench".into(),
            display_name: "bench".into(),
            password_hash: None,
            is_admin: false,
            is_bot: false,
        })
        .await
        .expect("user");
    let room = store
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: Some("bench".into()),
                topic: None,
                created_by: user.id,
            },
            &[(user.id, switchboard::store::Role::Owner)],
        )
        .await
        .expect("room");
    Fixture {
        store,
        room: room.id,
        user: user.id,
        _dir: dir,
    }
}

fn message(f: &Fixture, n: u64) -> NewEvent {
    message_in(f.room, f.user, n)
}

/// Time `append_events` (one transaction, one sync) of the batches `next_batch` makes; making
/// them is not timed.
fn time_appends(
    b: &mut criterion::Bencher<'_>,
    runtime: &tokio::runtime::Runtime,
    store: &dyn Store,
    mut next_batch: impl FnMut() -> Vec<NewEvent>,
) {
    b.iter_batched(
        &mut next_batch,
        |events| {
            runtime
                .block_on(store.append_events(&events))
                .expect("append")
        },
        BatchSize::SmallInput,
    );
}

fn store_insert(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fixture = runtime.block_on(fixture());
    let mut counter = 0u64;
    let mut group = c.benchmark_group("store_insert_sqlite_full_sync");
    group.sample_size(20);
    for batch in [1usize, 16, 128, 512] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            time_appends(b, &runtime, fixture.store.as_ref(), || {
                (0..batch)
                    .map(|_| {
                        counter += 1;
                        message(&fixture, counter)
                    })
                    .collect()
            });
        });
    }
    group.finish();
}

/// Rooms of two members each, as the load tool's `chat` scenario makes them.
struct ManyRooms {
    store: Arc<dyn Store>,
    /// `(room, its two members)`.
    rooms: Vec<(i64, [i64; 2])>,
    _dir: tempfile::TempDir,
}

/// Who the rooms' first members are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FirstMember {
    /// A user of its own in every room (one-to-one rooms of distinct pairs).
    Own,
    /// The same user in every room.
    Shared,
}

async fn many_rooms(rooms: usize, first: FirstMember) -> ManyRooms {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = switchboard::store::open(&url, &StoreOptions::default())
        .await
        .expect("store");
    let mut users = 0;
    let mut new_user = async || {
        users += 1;
        store
            .create_user(NewUser {
                name: format!("u{users}"),
                display_name: format!("u{users}"),
                password_hash: None,
                is_admin: false,
                is_bot: false,
            })
            .await
            .expect("user")
            .id
    };
    let shared = new_user().await;
    let mut made = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let pair = [
            match first {
                FirstMember::Shared => shared,
                FirstMember::Own => new_user().await,
            },
            new_user().await,
        ];
        let room = store
            .create_room(
                NewRoom {
                    kind: RoomKind::Group,
                    name: Some(format!("room {r}")),
                    topic: None,
                    created_by: pair[0],
                },
                &[
                    (pair[0], switchboard::store::Role::Owner),
                    (pair[1], switchboard::store::Role::Member),
                ],
            )
            .await
            .expect("room");
        made.push((room.id, pair));
    }
    ManyRooms {
        store,
        rooms: made,
        _dir: dir,
    }
}

fn message_in(room: i64, sender: i64, n: u64) -> NewEvent {
    NewEvent::Message {
        room_id: room,
        sender_id: sender,
        client_msg_id: format!("m-{n}"),
        body: BODY.into(),
        metadata: BTreeMap::new(),
        files: Vec::new(),
        thread: None,
        mentions: Default::default(),
    }
}

/// One message per room, from either member in turn: `rounds` such batches.
fn batches_over_rooms(f: &ManyRooms, rounds: u64, counter: &mut u64) -> Vec<Vec<NewEvent>> {
    (0..rounds)
        .map(|_| {
            f.rooms
                .iter()
                .map(|&(room, pair)| {
                    *counter += 1;
                    let sender = pair[usize::from(counter.is_multiple_of(2))];
                    message_in(room, sender, *counter)
                })
                .collect()
        })
        .collect()
}

/// A group commit as the `chat` load makes it at saturation: 50 messages, one in each of 50
/// rooms, from 100 senders, into a store that already holds 2,000 messages per room — so
/// every index keyed by room or sender has a leaf per room or sender to write, as in the
/// server, and not the few adjacent leaves a batch into one room touches.
fn store_insert_over_rooms(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fixture = runtime.block_on(many_rooms(50, FirstMember::Own));
    let mut counter = 0u64;
    for batch in batches_over_rooms(&fixture, 2_000, &mut counter) {
        runtime
            .block_on(fixture.store.append_events(&batch))
            .expect("append");
    }
    let mut group = c.benchmark_group("store_insert_sqlite_full_sync");
    group.sample_size(20);
    group.throughput(Throughput::Elements(50));
    group.bench_function("batch_50_over_50_rooms", |b| {
        time_appends(b, &runtime, fixture.store.as_ref(), || {
            batches_over_rooms(&fixture, 1, &mut counter)
                .pop()
                .expect("a batch")
        });
    });
    group.finish();
}

/// The room list of a user in 20 rooms, each with 580 events after the user's read cursor:
/// 400 messages of the other member (40 of them edited, 40 deleted), the edits and deletions
/// themselves, and 100 of the user's own messages — all of which but 360 live messages of
/// the other member the unread counts skip.
fn room_list_unread(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fixture = runtime.block_on(many_rooms(20, FirstMember::Shared));
    let mut counter = 0u64;
    for &(room, [reader, writer]) in &fixture.rooms {
        let mut events = Vec::new();
        for n in 0..500u64 {
            counter += 1;
            let sender = if n % 5 == 4 { reader } else { writer };
            events.push(message_in(room, sender, counter));
        }
        let stored = runtime
            .block_on(fixture.store.append_events(&events))
            .expect("append");
        let ids: Vec<i64> = stored
            .into_iter()
            .map(|one| one.expect("stored").event)
            .filter(|event| event.sender_id == writer)
            .map(|event| event.id)
            .collect();
        let mut changes = Vec::new();
        for (n, &target) in ids.iter().enumerate() {
            if n % 10 == 3 {
                changes.push(NewEvent::Edit {
                    room_id: room,
                    sender_id: writer,
                    target,
                    body: "edited".into(),
                    metadata: BTreeMap::new(),
                    mentions: Default::default(),
                });
            } else if n % 10 == 7 {
                changes.push(NewEvent::Delete {
                    room_id: room,
                    sender_id: writer,
                    target,
                });
            }
        }
        for result in runtime
            .block_on(fixture.store.append_events(&changes))
            .expect("append")
        {
            result.expect("changed");
        }
    }
    let reader = fixture.rooms[0].1[0];
    let summaries = runtime
        .block_on(fixture.store.rooms_for_user(reader))
        .expect("rooms");
    assert_eq!(summaries.len(), fixture.rooms.len());
    // 400 of the other member's messages, less the 40 deleted.
    assert!(
        summaries.iter().all(|room| room.unread == 360),
        "{summaries:?}"
    );
    c.bench_function("room_list_unread_500", |b| {
        b.iter(|| {
            runtime
                .block_on(fixture.store.rooms_for_user(reader))
                .expect("rooms")
        });
    });
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_frames");
    let send = format!(
        r#"{{"type":"send","req":"42","room":7,"client_msg_id":"c-7f3a9","body":"{BODY}"}}"#
    );
    group.throughput(Throughput::Bytes(send.len() as u64));
    group.bench_function("decode_send", |b| {
        b.iter(|| {
            switchboard::api::parse_json::<ClientFrame>(std::hint::black_box(send.as_bytes()))
                .expect("frame")
        });
    });
    let event = Event {
        id: 123_456,
        room_id: 7,
        seq: 98_765,
        kind: EventKind::Message,
        sender_id: 42,
        target: None,
        body: Some(BODY.into()),
        metadata: BTreeMap::new(),
        client_msg_id: Some("c-7f3a9".into()),
        created_at: 1_764_385_200_000,
        edited_at: None,
        deleted: false,
        thread_root: None,
        also_to_room: false,
        mentions: Vec::new(),
        mentions_room: false,
        thread: None,
        reactions: Vec::new(),
    };
    group.bench_function("encode_event", |b| {
        b.iter(|| {
            ServerFrame::Event {
                event: std::hint::black_box(&event),
            }
            .to_json()
        });
    });
    group.finish();
}

/// One audit record appended to the hash chain (lock the head, hash, insert, move the head,
/// commit: one `synchronous = FULL` transaction), as a plugin rejection or flag does on the
/// message path.
fn audit_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fixture = runtime.block_on(fixture());
    let detail = serde_json::json!({ "code": "dlp.card", "sender": 7, "edit_of": null });
    c.bench_function("audit_append_sqlite_full_sync", |b| {
        b.iter(|| {
            runtime
                .block_on(fixture.store.append_audit(
                    "plugin:dlp",
                    "plugin.reject",
                    "room:1",
                    &detail,
                ))
                .expect("append")
        });
    });
}

/// The compliance export of one room of 10,000 messages to JSON lines (with the signed
/// manifest): events per second is 10,000 ÷ the time shown.
fn export_room(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fixture = runtime.block_on(fixture());
    let events: Vec<NewEvent> = (0..10_000)
        .map(|n| message(&fixture, 1_000_000 + n))
        .collect();
    for chunk in events.chunks(500) {
        runtime
            .block_on(fixture.store.append_events(chunk))
            .expect("append");
    }
    let key = switchboard::signing::SecretKey::generate().expect("key");
    let request = switchboard::export::ExportRequest {
        rooms: vec![fixture.room],
        ..Default::default()
    };
    let settings = switchboard::export::ArchiveSettings {
        email_domain: "corp.example".into(),
        eml_max_bytes: switchboard::export::archive::EML_MAX_BYTES,
    };
    let data = tempfile::tempdir().expect("data dir");
    let config = switchboard::config::Config {
        data_dir: data.path().to_path_buf(),
        ..Default::default()
    };
    let files = switchboard::files::Files::open(&config).expect("file storage");
    let mut group = c.benchmark_group("export");
    group.sample_size(10);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("all_formats_10k_events", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("dir"),
            |dir| {
                runtime
                    .block_on(switchboard::export::export(
                        fixture.store.as_ref(),
                        &files,
                        &key,
                        &request,
                        dir.path(),
                        &settings,
                    ))
                    .expect("export");
                dir
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(
    benches,
    store_insert,
    store_insert_over_rooms,
    room_list_unread,
    frames,
    audit_append,
    export_room
);
criterion_main!(benches);

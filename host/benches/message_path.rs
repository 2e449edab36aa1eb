//! Micro-benchmarks of the message path's building blocks: the store's insert path (one
//! transaction per message vs group commit), WebSocket frame decode/encode, and one audit
//! record appended to the hash chain.
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
    NewEvent::Message {
        room_id: f.room,
        sender_id: f.user,
        client_msg_id: format!("m-{n}"),
        body: BODY.into(),
        metadata: BTreeMap::new(),
        files: Vec::new(),
        thread: None,
        mentions: Default::default(),
    }
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
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|_| {
                            counter += 1;
                            message(&fixture, counter)
                        })
                        .collect::<Vec<_>>()
                },
                |events| {
                    runtime
                        .block_on(fixture.store.append_events(&events))
                        .expect("append")
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
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

criterion_group!(benches, store_insert, frames, audit_append, export_room);
criterion_main!(benches);

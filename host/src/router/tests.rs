//! The router on its own: a real (in-memory SQLite) store, the real group commit and hub,
//! and a scripted `Hooks` in place of the plugin runtime, so each rule of the message path
//! is checked without WebAssembly: what a plugin decides, what it is told, what is stored,
//! and what is refused before any plugin runs.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use super::Router;
use super::commit::{Committer, WriterTask};
use super::hooks::{Decision, HookKind, Hooks, PreSend, PreSendOutcome};
use crate::config::Limits;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::store::{Event, Metadata, NewUser, Store, StoreOptions, User};

/// What the scripted plugin layer does with a message.
#[derive(Debug, Clone)]
enum Script {
    Continue,
    /// Replace the body and add `fake.redacted = yes`.
    Redact(String),
    Reject,
}

#[derive(Default)]
struct Seen {
    pre_send: Vec<PreSend>,
    delivered: Vec<(i64, u32)>,
}

struct FakeHooks {
    script: Script,
    seen: Mutex<Seen>,
}

#[async_trait]
impl Hooks for FakeHooks {
    fn implements(&self, hook: HookKind) -> bool {
        matches!(hook, HookKind::MessagePreSend | HookKind::MessageDelivered)
    }
    async fn message_pre_send(&self, msg: PreSend) -> PreSendOutcome {
        self.seen.lock().unwrap().pre_send.push(msg.clone());
        match &self.script {
            Script::Continue => PreSendOutcome::Continue {
                body: msg.body,
                metadata: msg.metadata,
                modified: false,
                authors: BTreeMap::new(),
            },
            Script::Redact(body) => {
                let mut metadata = msg.metadata;
                metadata.insert("fake.redacted".into(), "yes".into());
                PreSendOutcome::Continue {
                    body: body.clone(),
                    metadata,
                    modified: true,
                    authors: BTreeMap::from([("fake.redacted".into(), "fake".into())]),
                }
            }
            Script::Reject => PreSendOutcome::Reject {
                plugin: "fake".into(),
                code: "fake.no".into(),
                reason: "not today".into(),
            },
        }
    }
    fn message_delivered(&self, event: &Event, depth: u32) {
        self.seen.lock().unwrap().delivered.push((event.id, depth));
    }
    async fn on_login(&self, _: &User) -> Decision {
        Decision::Allow
    }
    async fn on_connect(&self, _: &User, _: &str) -> Decision {
        Decision::Allow
    }
}

struct Fixture {
    router: Router,
    store: Arc<dyn Store>,
    hooks: Arc<FakeHooks>,
    alice: User,
    bob: User,
    room: i64,
    stop: watch::Sender<bool>,
    writer: WriterTask,
}

async fn fixture(script: Script) -> Fixture {
    let store: Arc<dyn Store> = Arc::new(
        crate::store::sqlite::SqliteStore::open("sqlite::memory:", &StoreOptions::default())
            .await
            .unwrap(),
    );
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let membership = Arc::new(Membership::new(store.clone()));
    let hub = Arc::new(Hub::new(membership.clone(), metrics.clone()));
    let (stop, stopped) = watch::channel(false);
    let (committer, writer) =
        Committer::start(store.clone(), hub.clone(), metrics, 64, 64, 16, stopped)
            .expect("the writer thread starts");
    let hooks = Arc::new(FakeHooks {
        script,
        seen: Mutex::default(),
    });
    let router = Router::new(
        store.clone(),
        membership,
        hub,
        hooks.clone(),
        committer,
        Limits::default(),
    );
    let user = |name: &str| NewUser {
        name: name.into(),
        display_name: name.into(),
        password_hash: None,
        is_admin: false,
        is_bot: false,
    };
    let alice = store.create_user(user("alice")).await.unwrap();
    let bob = store.create_user(user("bob")).await.unwrap();
    let room = router
        .create_group_room(&alice, "r".into(), None, vec![bob.id])
        .await
        .unwrap()
        .id;
    Fixture {
        router,
        store,
        hooks,
        alice,
        bob,
        room,
        stop,
        writer,
    }
}

fn code(err: &ApiError) -> &str {
    err.code()
}

#[tokio::test]
async fn concurrent_retries_are_each_answered_with_their_own_original() {
    let f = fixture(Script::Continue).await;
    let send = |cmid: String| {
        let (router, alice, room) = (&f.router, &f.alice, f.room);
        async move {
            router
                .send_message(alice, room, cmid, "hi".into(), Metadata::new(), 0)
                .await
                .unwrap()
        }
    };
    // Sent at once, the retry lookups share batches (15: within the default burst).
    let firsts = futures_util::future::join_all((0..15).map(|i| send(format!("c{i}")))).await;
    let retries =
        futures_util::future::join_all((0..15).rev().map(|i| send(format!("c{i}")))).await;
    for (first, retry) in firsts.iter().zip(retries.iter().rev()) {
        assert!(!first.duplicate && retry.duplicate);
        assert_eq!((retry.id, retry.seq), (first.id, first.seq));
    }
    // The chain saw each message once.
    assert_eq!(f.hooks.seen.lock().unwrap().pre_send.len(), 15);
}

/// The writer of an SQLite store runs on a thread and runtime of its own: once stopped, it
/// has answered every write it took, and what its store left running there has finished.
/// This store is in memory, so it lives only as long as the writer's connection: had that
/// connection been dropped with the writer's runtime, the reads below would find no tables.
#[tokio::test]
async fn a_stopped_writer_answered_every_write_it_took_and_its_store_stays_open() {
    use futures_util::StreamExt as _;

    let f = fixture(Script::Continue).await;
    let mut sends: futures_util::stream::FuturesUnordered<_> = (0..15)
        .map(|i| {
            f.router.send_message(
                &f.alice,
                f.room,
                format!("s{i}"),
                "bye".into(),
                Metadata::new(),
                0,
            )
        })
        .collect();
    // Stopped once the first is acknowledged: the others are then queued or being
    // committed, and the writer ends right after its last commit.
    let first = sends.next().await.expect("15 sends").expect("acknowledged");
    f.stop.send(true).expect("the writer is listening");
    let mut acks = vec![first];
    while let Some(result) = sends.next().await {
        match result {
            Ok(ack) => acks.push(ack),
            Err(err) => assert_eq!(code(&err), "shutting_down"),
        }
    }
    f.writer.stopped().await.expect("the writer stops cleanly");
    for ack in acks {
        let stored = f.store.event(ack.id).await.expect("the store is open");
        assert_eq!(stored.map(|event| event.id), Some(ack.id));
    }
}

#[tokio::test]
async fn a_message_passes_the_chain_is_stored_and_observed_once() {
    let f = fixture(Script::Continue).await;
    let ack = f
        .router
        .send_message(
            &f.alice,
            f.room,
            "c1".into(),
            "hi".into(),
            Metadata::new(),
            0,
        )
        .await
        .unwrap();
    assert!(!ack.modified && !ack.duplicate);
    // A retry is answered from the store: the chain does not run twice.
    let again = f
        .router
        .send_message(
            &f.alice,
            f.room,
            "c1".into(),
            "hi".into(),
            Metadata::new(),
            0,
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, ack.id);
    let seen = f.hooks.seen.lock().unwrap();
    assert_eq!(seen.pre_send.len(), 1);
    let told = &seen.pre_send[0];
    assert_eq!(
        (told.sender_name.as_str(), told.body.as_str(), told.depth),
        ("alice", "hi", 0)
    );
    assert_eq!(told.max_body_bytes, Limits::default().max_message_bytes);
    assert_eq!(seen.delivered, vec![(ack.id, 0)]);
}

#[tokio::test]
async fn a_modification_is_stored_acked_as_modified_and_audited_under_its_author() {
    let f = fixture(Script::Redact("[redacted]".into())).await;
    let ack = f
        .router
        .send_message(
            &f.alice,
            f.room,
            "c1".into(),
            "4111 1111 1111 1111".into(),
            Metadata::new(),
            0,
        )
        .await
        .unwrap();
    assert!(ack.modified);
    assert_eq!(ack.body.as_deref(), Some("[redacted]"));
    let stored = f.store.event(ack.id).await.unwrap().unwrap();
    assert_eq!(stored.body.as_deref(), Some("[redacted]"));
    assert_eq!(
        stored.metadata.get("fake.redacted").map(String::as_str),
        Some("yes")
    );
    let audit = f.store.recent_audit(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.action == "plugin.redact" && r.actor == "plugin:fake"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_rejection_stores_nothing_and_is_audited() {
    let f = fixture(Script::Reject).await;
    let err = f
        .router
        .send_message(&f.bob, f.room, "c1".into(), "hi".into(), Metadata::new(), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Rejected { plugin, code, .. } if plugin == "fake" && code == "fake.no")
    );
    assert!(
        f.store
            .event_by_client_msg_id(f.bob.id, "c1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(f.hooks.seen.lock().unwrap().delivered.is_empty());
    let audit = f.store.recent_audit(10).await.unwrap();
    assert_eq!(audit[0].action, "plugin.reject");
    assert_eq!(audit[0].detail["code"], "fake.no");
}

#[tokio::test]
async fn bad_input_is_refused_before_any_plugin_runs() {
    let f = fixture(Script::Continue).await;
    let send = |id: &str, body: &str, metadata: Metadata| {
        f.router
            .send_message(&f.alice, f.room, id.into(), body.into(), metadata, 0)
    };
    let reserved = Metadata::from([("dlp.redacted".to_string(), "no".to_string())]);
    assert_eq!(
        code(&send("c1", "hi", reserved).await.unwrap_err()),
        "reserved_metadata"
    );
    assert_eq!(
        code(&send("c2", " \u{200b} ", Metadata::new()).await.unwrap_err()),
        "empty_body"
    );
    assert_eq!(
        code(&send("has space", "hi", Metadata::new()).await.unwrap_err()),
        "invalid_client_msg_id"
    );
    let outsider = f
        .store
        .create_user(NewUser {
            name: "eve".into(),
            display_name: "eve".into(),
            password_hash: None,
            is_admin: false,
            is_bot: false,
        })
        .await
        .unwrap();
    let err = f
        .router
        .send_message(
            &outsider,
            f.room,
            "c3".into(),
            "hi".into(),
            Metadata::new(),
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "room_not_found");
    assert!(f.hooks.seen.lock().unwrap().pre_send.is_empty());
}

#[tokio::test]
async fn edits_pass_the_chain_too_and_only_the_author_may_edit() {
    let f = fixture(Script::Continue).await;
    let ack = f
        .router
        .send_message(
            &f.alice,
            f.room,
            "c1".into(),
            "first".into(),
            Metadata::new(),
            0,
        )
        .await
        .unwrap();
    let err = f
        .router
        .edit_message(&f.bob, f.room, ack.id, "mine now".into())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not_author");
    f.router
        .edit_message(&f.alice, f.room, ack.id, "second".into())
        .await
        .unwrap();
    let seen = f.hooks.seen.lock().unwrap();
    assert_eq!(seen.pre_send.len(), 2);
    assert_eq!(seen.pre_send[1].editing, Some(ack.id));
    assert_eq!(seen.pre_send[1].body, "second");
}

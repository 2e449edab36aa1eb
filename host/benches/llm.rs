//! The language model's per-call host overhead: everything `Llm::chat` does around the
//! model (budget reads, context read as the person, DLP on the way out and back, the
//! request, parsing the answer, usage and audit writes), next to a bare HTTP round trip to
//! the same instant "model" (an in-process server that answers at once). The difference
//! is the governance's cost; no real model runs here.
//!
//! `cargo bench -p switchboard --bench llm`

#[path = "../../tests/e2e/plugins_runtime/memory_store.rs"]
#[allow(dead_code)]
mod memory_store;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard::config::{Limits, LlmConfig};
use switchboard::llm::{Call, ChatMessage, ContextSource, Llm, Role};
use switchboard::store::{Metadata, NewEvent, NewRoom, NewUser, Role as MemberRole, RoomKind};

/// A one-paragraph answer, as an OpenAI-compatible server sends it whole.
fn completion() -> Value {
    json!({
        "id": "bench", "object": "chat.completion", "created": 0, "model": "bench",
        "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant",
            "content": "The release moved to Tuesday; Ana owns the rollout and Bo the notes. \
                        Nobody has raised a blocker since the last build passed." } }],
        "usage": { "prompt_tokens": 600, "completion_tokens": 40, "total_tokens": 640 }
    })
}

/// The instant model: answers every request with the same completion.
async fn instant_model() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|_body: axum::body::Bytes| async { axum::Json(completion()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (llm, call, base) = rt.block_on(async {
        let base = instant_model().await;
        let store = memory_store::memory_store().await;
        let alice = store
            .create_user(NewUser {
                name: "alice".into(),
                display_name: "Alice".into(),
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
                    name: Some("release".into()),
                    topic: None,
                    created_by: alice.id,
                },
                &[(alice.id, MemberRole::Owner)],
            )
            .await
            .expect("room");
        // Twenty messages of context, one with a card number the egress must redact.
        let events: Vec<NewEvent> = (0..20)
            .map(|i| NewEvent::Message {
                room_id: room.id,
                sender_id: alice.id,
                client_msg_id: format!("c{i}"),
                body: if i == 7 {
                    "the test card is 4111 1111 1111 1111, use it in staging".into()
                } else {
                    format!("message {i}: the release moved to 2024-05-14, build 4.12.{i} passed")
                },
                metadata: Metadata::new(),
                files: Vec::new(),
                thread: None,
                mentions: Default::default(),
            })
            .collect();
        for result in store.append_events(&events).await.expect("append") {
            result.expect("stored");
        }
        let config = LlmConfig {
            base_url: base.clone(),
            model: "bench".into(),
            stream: false,
            // The bench calls many times a second: no budget in the way.
            user_daily_tokens: 0,
            room_daily_tokens: 0,
            ..LlmConfig::default()
        };
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = switchboard::metrics::Metrics::register(&mut registry);
        let llm = Llm::new(config, store, Limits::default(), metrics).expect("llm");
        let call = Call {
            plugin: "bench".into(),
            user: alice,
            room: Some(room.id),
            messages: vec![
                ChatMessage {
                    role: Role::System,
                    content: "You are a helpful assistant.".into(),
                },
                ChatMessage {
                    role: Role::User,
                    content: "What changed about the release?".into(),
                },
            ],
            context: vec![ContextSource {
                room: room.id,
                thread_root: None,
                limit: 20,
                since: None,
            }],
            max_tokens: None,
            tools: false,
            interactive: false,
        };
        (llm, call, base)
    });

    let mut group = c.benchmark_group("llm");
    group.bench_function("chat_governed", |b| {
        b.to_async(&rt).iter(|| async {
            let answer = llm.chat(&call, None).await.expect("answer");
            assert_eq!(answer.outcome, "ok");
        });
    });
    // The same exchange without the governance: one POST of a prompt of the same size.
    let http = reqwest::Client::new();
    let url = format!("{base}/chat/completions");
    let body = json!({
        "model": "bench",
        "messages": [{ "role": "system", "content": "x".repeat(1500) },
                     { "role": "user", "content": "What changed about the release?" }],
    });
    group.bench_function("bare_round_trip", |b| {
        b.to_async(&rt).iter(|| async {
            let answer: Value = http
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            assert!(answer["choices"].is_array());
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The governed language model (`llm` capability) and the shipped `assistant` plugin,
//! against an OpenAI-compatible test server standing in for a real model
//! ([`crate::model_server`]): what reaches the model (redaction tokens, never the values;
//! only rooms the person is in), what people see (masked while streaming and after), the
//! tool policy, budgets, the audit record, and hostile answers contained.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::model_server::{ModelServer, Reply};
use crate::plugins_bots::{bot_id, wait_metric};
use crate::plugins_runtime::harness::{Spec, server_tweaked};
use crate::support::{Client, TestServer, Ws};

const CARD: &str = "4111 1111 1111 1111";
const SSN: &str = "123-45-6789";

fn assistant() -> Spec {
    Spec::new("assistant", "assistant")
        .caps(&["bot", "config", "log", "llm"])
        .top("commands = [\"ask\", \"summarize\", \"approve\", \"deny\"]\n")
        .bot("name = \"assistant\"")
}

/// A server with the assistant plugin and `[llm]` pointing at `model`.
async fn server(
    model: &ModelServer,
    tweak: impl FnOnce(&mut switchboard::config::LlmConfig),
) -> (TestServer, tempfile::TempDir) {
    let base_url = model.base_url();
    server_tweaked(vec![assistant()], move |c| {
        c.llm.base_url = base_url;
        c.llm.model = "test-model".into();
        c.llm.api_key = Some(switchboard::config::Secret("sk-test".into()));
        c.llm.stream_edit_interval_ms = 20;
        tweak(&mut c.llm);
    })
    .await
}

/// Alice, and a room `name` with her and the assistant's bot in it.
async fn alice_with_room(server: &TestServer, name: &str) -> (Client, i64) {
    let alice = server.user("alice").await;
    let bot = bot_id(&alice, "assistant").await;
    let room = alice.group(name, &[bot]).await;
    (alice, room)
}

/// The next notice on `ws` (private answers and errors come as notices).
async fn notice(ws: &mut Ws) -> String {
    let frame = ws.recv_type("notice").await;
    frame["body"].as_str().unwrap_or_default().to_string()
}

async fn command(client: &Client, room: i64, id: &str, text: &str) {
    let (status, ack) = client.send_http(room, id, text).await;
    assert!(status.is_success(), "{status} {ack}");
    assert!(
        ack["command"].is_string(),
        "a command, not a message: {ack}"
    );
}

/// Every text a request sent to the model holds, joined.
fn prompt_text(request: &Value) -> String {
    request["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The newest `llm.call` audit records, newest first.
async fn llm_audit(server: &TestServer) -> Vec<Value> {
    let (status, records) = server
        .admin()
        .await
        .get("/api/v1/admin/audit?limit=200")
        .await;
    assert_eq!(status, StatusCode::OK, "{records}");
    records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "llm.call")
        .cloned()
        .collect()
}

#[tokio::test]
async fn answers_stream_into_the_room_masked_and_the_prompt_leaves_with_tokens() {
    let model = ModelServer::start().await;
    model.script([Reply::Slow {
        text: format!(
            "Noted. The SSN on file is {SSN}, and the card ends in 1111. Let me know if \
             anything else about the payment setup needs a look today. All good."
        ),
        delay: Duration::from_millis(25),
    }]);
    let (server, _plugins) = server(&model, |_| {}).await;
    let (alice, room) = alice_with_room(&server, "payments").await;
    let (status, _) = alice
        .send_http(room, "m1", &format!("my card is {CARD}"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut ws = alice.ws(&server).await;
    command(&alice, room, "ask1", &format!("/ask is {CARD} on file?")).await;

    // The model got the question and the room's context, the card as a token in both.
    let requests = model.wait_for_requests(1).await;
    let prompt = prompt_text(&requests[0]);
    assert!(
        !prompt.contains(CARD),
        "the card left for the model: {prompt}"
    );
    assert_eq!(prompt.matches("[CARD_1]").count(), 2, "{prompt}");
    assert!(prompt.contains("Recent messages of payments"), "{prompt}");
    assert_eq!(requests[0]["stream"], true);
    assert_eq!(requests[0]["model"], "test-model");
    assert_eq!(model.authorizations()[0].as_deref(), Some("Bearer sk-test"));

    // The answer streams in as edits of the bot's message; no frame ever shows the SSN.
    let mut bodies = Vec::new();
    let final_body = loop {
        let frame = ws.recv_type("event").await;
        let body = frame["body"].as_str().unwrap_or_default().to_string();
        assert!(!body.contains(SSN), "the SSN was shown: {frame}");
        bodies.push(body.clone());
        let streaming = frame["metadata"]["assistant.streaming"] == "1";
        if frame["kind"] == "edit" && !streaming {
            break body;
        }
    };
    assert!(
        bodies.len() >= 3,
        "placeholder, partial edits, final: {bodies:?}"
    );
    assert!(
        final_body.starts_with("**"),
        "the question as preface: {final_body}"
    );
    assert!(final_body.contains("***-**-6789"), "{final_body}");
    assert!(final_body.contains("All good."), "{final_body}");
    let history = alice.history(room, "").await;
    let answer = history
        .iter()
        .rev()
        .find(|e| e["kind"] == "message")
        .unwrap();
    assert_eq!(answer["body"].as_str().unwrap(), final_body);
    assert!(
        answer["metadata"].get("assistant.streaming").is_none(),
        "{answer}"
    );

    // One audit record: the prompt's digest and counts, no text of it.
    let records = llm_audit(&server).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let detail = &records[0]["detail"];
    assert_eq!(detail["outcome"], "ok", "{detail}");
    assert_eq!(detail["plugin"], "assistant");
    assert_eq!(detail["redactions"]["card"], 2, "{detail}");
    assert_eq!(detail["reply_redactions"]["ssn"], 1, "{detail}");
    assert_eq!(detail["prompt_sha256"].as_str().unwrap().len(), 64);
    assert!(detail["tokens_in"].as_u64().unwrap() > 0, "{detail}");
    assert!(
        detail.get("prompt").is_none(),
        "prompt_log = none: {detail}"
    );
    assert!(
        !crate::support::audit_words(&records[0]).contains("4111"),
        "{}",
        records[0]
    );
    wait_metric(
        &server,
        "switchboard_llm_calls_total{plugin=\"assistant\",outcome=\"ok\"}",
        1,
    )
    .await;
}

#[tokio::test]
async fn tools_run_with_the_persons_permissions_under_the_operators_policy() {
    let model = ModelServer::start().await;
    let (server, _plugins) = server(&model, |_| {}).await;
    let (alice, room) = alice_with_room(&server, "general").await;
    // Bob's room, which Alice is not in.
    let bob = server.user("bob").await;
    let secret = bob.group("secret", &[]).await;
    let (status, _) = bob
        .send_http(secret, "s1", "the merger closes friday")
        .await;
    assert_eq!(status, StatusCode::CREATED);

    model.script([
        Reply::ToolCall {
            name: "search".into(),
            arguments: "{not json".into(),
        },
        Reply::ToolCall {
            name: "read_room".into(),
            arguments: "{\"room\": \"secret\"}".into(),
        },
        Reply::ToolCall {
            name: "post".into(),
            arguments: "{\"room\": \"general\", \"text\": \"hello from the model\"}".into(),
        },
        Reply::Text("done".into()),
    ]);
    let mut ws = alice.ws(&server).await;
    command(&alice, room, "ask1", "/ask what is new?").await;

    // `post` is `ask` by default: Alice is asked, and approves.
    let asked = notice(&mut ws).await;
    let code = asked
        .split("/approve ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no code in {asked:?}"))
        .to_string();
    assert!(asked.contains("hello from the model"), "{asked}");
    // Bob cannot approve Alice's tool call.
    let bob_in_general = {
        let bob_id = bot_id_or_user(&alice, "bob").await;
        let (status, body) = alice
            .post(
                &format!("/api/v1/rooms/{room}/members"),
                serde_json::json!({ "user": bob_id }),
            )
            .await;
        assert!(status.is_success(), "{body}");
        room
    };
    let mut bob_ws = bob.ws(&server).await;
    command(&bob, bob_in_general, "b1", &format!("/approve {code}")).await;
    let refused = notice(&mut bob_ws).await;
    assert!(refused.contains("no tool call of yours"), "{refused}");
    command(&alice, room, "a1", &format!("/approve {code}")).await;

    let requests = model.wait_for_requests(4).await;
    let tool_result = |request: &Value| -> String {
        request["messages"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert!(
        tool_result(&requests[1]).contains("not a JSON object"),
        "{}",
        requests[1]
    );
    let denied = tool_result(&requests[2]);
    assert!(denied.contains("not a member"), "{denied}");
    assert!(
        !prompt_text(&requests[2]).contains("merger"),
        "{}",
        requests[2]
    );
    assert!(
        tool_result(&requests[3]).contains("posted as message"),
        "{}",
        requests[3]
    );

    // The approved post is Alice's, through the ordinary send path; the answer follows.
    let mut posted = false;
    for _ in 0..20 {
        let history = alice.history(room, "").await;
        posted = history
            .iter()
            .any(|e| e["body"] == "hello from the model" && e["sender_id"] == alice.id);
        let answered = history.iter().any(|e| {
            e["body"].as_str().is_some_and(|b| b.ends_with("done"))
                && e["metadata"].get("assistant.streaming").is_none()
        });
        if posted && answered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(posted, "the approved post is in the room");
    let records = llm_audit(&server).await;
    let tools = &records[0]["detail"]["tools"];
    let decisions: Vec<(String, String)> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tool"].as_str().unwrap().to_string(),
                t["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("search".to_string(), "invalid".to_string()),
            ("read_room".to_string(), "denied".to_string()),
            ("post".to_string(), "approved".to_string()),
        ]
    );
}

/// A user's id as others see it in the user list.
async fn bot_id_or_user(client: &Client, name: &str) -> i64 {
    let (_, users) = client.get("/api/v1/users").await;
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .and_then(|u| u["id"].as_i64())
        .unwrap()
}

#[tokio::test]
async fn budgets_blocks_and_private_answers() {
    let model = ModelServer::start().await;
    let (server, _plugins) = server(&model, |llm| llm.user_daily_tokens = 40).await;
    let (alice, room) = alice_with_room(&server, "private").await;
    let mut ws = alice.ws(&server).await;

    // A secret blocks the call: nothing leaves.
    command(&alice, room, "p1", "/ask -p my key is AKIAIOSFODNN7EXAMPL3").await;
    let blocked = notice(&mut ws).await;
    assert!(blocked.contains("may not leave"), "{blocked}");

    // A private answer: the model saw a token, Alice gets her own value back.
    command(&alice, room, "p2", &format!("/ask -p repeat {CARD}")).await;
    let answer = notice(&mut ws).await;
    assert!(answer.contains(CARD), "restored for her eyes: {answer}");
    let requests = model.wait_for_requests(1).await;
    assert!(!prompt_text(&requests[0]).contains(CARD));
    assert!(prompt_text(&requests[0]).contains("[CARD_1]"));

    // The budget: the first call spent it; the next is refused with a clear message, and
    // the model is not called.
    command(&alice, room, "p3", "/ask -p one more").await;
    let refused = notice(&mut ws).await;
    assert!(refused.contains("budget"), "{refused}");
    assert_eq!(
        model.requests().len(),
        1,
        "blocked and over-budget calls stay here"
    );
    let records = llm_audit(&server).await;
    assert!(
        records
            .iter()
            .any(|r| r["detail"]["outcome"] == "prompt_blocked"),
        "{records:?}"
    );
}

#[tokio::test]
async fn hostile_model_answers_are_contained() {
    let model = ModelServer::start().await;
    let (server, _plugins) = server(&model, |llm| {
        llm.max_reply_bytes = 4096;
        llm.timeout_secs = 3;
        llm.idle_timeout_secs = 1;
    })
    .await;
    let (alice, room) = alice_with_room(&server, "hostile").await;
    let mut ws = alice.ws(&server).await;
    let cases = [
        (Reply::InvalidJson, "could not be read"),
        (
            Reply::Error {
                status: 500,
                message: "boom".into(),
            },
            "HTTP status 500",
        ),
        (Reply::Truncated("partial answer".into()), "incomplete"),
        (Reply::Huge(100_000), "longer than this server allows"),
        (Reply::Stall, "did not answer in time"),
        (Reply::Endless, "took too long"),
    ];
    for (i, (reply, expected)) in cases.into_iter().enumerate() {
        model.script([reply]);
        command(&alice, room, &format!("h{i}"), "/ask -p hello").await;
        let text = notice(&mut ws).await;
        assert!(text.contains(expected), "case {i}: {text}");
        assert!(text.len() < 8 * 1024, "case {i}: bounded");
    }
    // The server is fine afterwards.
    command(&alice, room, "ok", "/ask -p still there?").await;
    let text = notice(&mut ws).await;
    assert!(text.contains("echo: still there?"), "{text}");
}

#[tokio::test]
async fn mentions_answer_in_the_thread_and_summaries_read_the_room() {
    let model = ModelServer::start().await;
    let (server, _plugins) = server(&model, |_| {}).await;
    let (alice, room) = alice_with_room(&server, "deploys").await;
    let (status, _) = alice.send_http(room, "m1", "the deploy is at noon").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, ack) = alice
        .send_http(room, "m2", "@assistant when is the deploy?")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let root = ack["id"].as_i64().unwrap();

    // The answer is a reply in the mention's thread, from the context of the room.
    let requests = model.wait_for_requests(1).await;
    let prompt = prompt_text(&requests[0]);
    assert!(prompt.contains("the deploy is at noon"), "{prompt}");
    let mut reply = Value::Null;
    for _ in 0..100 {
        let (status, thread) = alice
            .get(&format!("/api/v1/rooms/{room}/threads/{root}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{thread}");
        if let Some(done) = thread["replies"].as_array().and_then(|r| {
            r.iter()
                .find(|e| e["metadata"].get("assistant.streaming").is_none())
                .cloned()
        }) {
            reply = done;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = reply["body"].as_str().unwrap_or_default();
    assert!(body.contains("echo: when is the deploy?"), "{reply}");

    // A summary of the room since a date; bad arguments get the usage, privately.
    let mut ws = alice.ws(&server).await;
    command(&alice, room, "s1", "/summarize since:2026-13-01").await;
    assert!(notice(&mut ws).await.starts_with("usage: /summarize"));
    command(&alice, room, "s2", "/summarize since:2020-01-01").await;
    let requests = model.wait_for_requests(2).await;
    let prompt = prompt_text(&requests[1]);
    assert!(prompt.contains("the deploy is at noon"), "{prompt}");
    assert!(prompt.contains("Summarize the conversation"), "{prompt}");

    // The operator's governance: changed through the API, applied, audited, reset.
    let admin = server.admin().await;
    let (status, settings) = admin.get("/api/v1/admin/llm").await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["configured"], true);
    assert_eq!(settings["api_key_set"], true);
    assert!(
        !settings.to_string().contains("sk-test"),
        "the key never shows"
    );
    let mut governance = settings["governance"].clone();
    governance["tools"]["read_room"] = "sometimes".into();
    let (status, body) = admin
        .put_json("/api/v1/admin/llm/governance", governance.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_governance");
    governance["tools"]["read_room"] = "deny".into();
    governance["user_daily_tokens"] = 1.into();
    let (status, body) = admin
        .put_json("/api/v1/admin/llm/governance", governance)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Alice has used more than 1 token today: the next call is refused.
    command(&alice, room, "s3", "/ask -p again?").await;
    let refused = loop {
        let text = notice(&mut ws).await;
        if !text.starts_with("usage") {
            break text;
        }
    };
    assert!(refused.contains("budget"), "{refused}");
    let (status, usage) = alice.get("/api/v1/llm/usage").await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["daily_limit"], 1);
    assert!(usage["used_today"].as_u64().unwrap() > 1, "{usage}");
    let (status, _) = admin.delete("/api/v1/admin/llm/governance").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, settings) = admin.get("/api/v1/admin/llm").await;
    assert_eq!(settings["governance_changed"], false, "{settings}");
}

/// `llm.complete` from a hook: the reply comes back to the plugin (masked, tokens counted),
/// the context is the sender's rooms only, and a plugin not granted `llm` gets
/// `not-granted`.
#[tokio::test]
async fn complete_returns_the_governed_reply_to_the_plugin() {
    let model = ModelServer::start().await;
    let base_url = model.base_url();
    let probe = Spec::new("probe", "fixture-probe").caps(&["llm", "config", "kv", "log"]);
    let (server, _plugins) = server_tweaked(vec![probe], move |c| {
        c.llm.base_url = base_url;
        c.llm.model = "test-model".into();
        // As for OpenAI's reasoning models.
        c.llm.max_tokens_field = switchboard::config::MaxTokensField::MaxCompletionTokens;
    })
    .await;
    let alice = server.user("alice").await;
    let room = alice.group("probing", &[]).await;
    let bob = server.user("bob").await;
    let bobs = bob.group("bobs", &[]).await;

    let (status, _) = alice
        .send_http(room, "q1", &format!("probe-llm is {CARD} valid?"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let history = alice.history(room, "").await;
    let answer = history.last().unwrap()["metadata"]["probe.llm"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        answer.starts_with("text:echo: is [CARD_1] valid?"),
        "{answer}"
    );
    assert!(!answer.contains(CARD), "{answer}");
    assert!(!answer.contains(" in:0 "), "tokens counted: {answer}");
    assert_eq!(model.requests()[0]["max_completion_tokens"], 64);
    assert!(model.requests()[0].get("max_tokens").is_none());

    // Bob's room is not Alice's to give the model.
    let (status, _) = alice
        .send_http(
            room,
            "q2",
            &format!("probe-llm-room {bobs} what is in there?"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let history = alice.history(room, "").await;
    let refused = history.last().unwrap()["metadata"]["probe.llm"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        refused.starts_with("denied:") && refused.contains("not a member"),
        "{refused}"
    );
    assert_eq!(model.requests().len(), 1, "a refused call sends nothing");
    let records = llm_audit(&server).await;
    assert_eq!(records.len(), 2, "both on the record: {records:?}");
    assert!(records.iter().any(|r| r["detail"]["outcome"] == "denied"));
}

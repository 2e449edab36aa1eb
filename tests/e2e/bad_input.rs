//! Every bad input gets a stable code and the right status (or an error frame), and
//! changes nothing.

use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::TestServer;

#[tokio::test]
async fn bad_http_bodies_are_refused_with_stable_codes_and_store_nothing() {
    let server = TestServer::start_with(|c| {
        c.limits.max_body_bytes = 4096;
        c.limits.max_message_bytes = 1000;
    })
    .await;
    let alice = server.user("alice").await;
    let room = alice.group("inputs", &[]).await;
    let path = format!("/api/v1/rooms/{room}/messages");
    let json_ct = "application/json";

    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "malformed",
            json_ct,
            b"{\"client_msg_id\": \"a\", ".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "invalid utf-8",
            json_ct,
            b"{\"client_msg_id\":\"a\",\"body\":\"\xff\xfe\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
        ),
        (
            "unknown field",
            json_ct,
            br#"{"client_msg_id":"a","body":"x","bodyy":"typo"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "missing field",
            json_ct,
            br#"{"client_msg_id":"a"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "wrong type",
            json_ct,
            br#"{"client_msg_id":7,"body":"x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "not json",
            "text/plain",
            b"hello".to_vec(),
            StatusCode::BAD_REQUEST,
            "unsupported_media_type",
        ),
        (
            "oversized body",
            json_ct,
            format!(r#"{{"client_msg_id":"a","body":"{}"}}"#, "x".repeat(5000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "message too large",
            json_ct,
            format!(r#"{{"client_msg_id":"a","body":"{}"}}"#, "x".repeat(1500)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
        ),
        (
            "empty body",
            json_ct,
            br#"{"client_msg_id":"a","body":"   "}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "empty_body",
        ),
        (
            "NUL in body",
            json_ct,
            br#"{"client_msg_id":"a","body":"a\u0000b"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_text",
        ),
        (
            "bad client_msg_id",
            json_ct,
            br#"{"client_msg_id":"has space","body":"x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_client_msg_id",
        ),
    ];
    for (what, ct, body, status, code) in cases {
        let (got_status, got) = alice.post_raw(&path, ct, body).await;
        assert_eq!(
            (got_status, got["code"].as_str()),
            (status, Some(code)),
            "{what}: {got}"
        );
        assert!(
            got["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: a human message"
        );
    }
    assert!(alice.history(room, "").await.is_empty(), "nothing stored");

    // Unknown rooms, messages and paths.
    let (status, err) = alice.send_http(999_999, "z", "x").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("room_not_found"))
    );
    let (status, err) = alice.get("/api/v1/rooms/not-a-number/messages").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_path"))
    );
    let (status, err) = alice
        .patch(
            &format!("/api/v1/rooms/{room}/messages/424242"),
            json!({ "body": "x" }),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("message_not_found"))
    );
    let (status, err) = alice.get("/api/v1/nothing-here").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_route"))
    );
    let (status, err) = alice
        .get(&format!("/api/v1/rooms/{room}/messages?before=5&after=1"))
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let (status, err) = alice
        .post("/api/v1/rooms", json!({ "kind": "group", "name": "" }))
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_room_name"))
    );
    let (status, err) = alice
        .post(
            "/api/v1/rooms",
            json!({ "kind": "direct", "user": 999_999 }),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("user_not_found"))
    );
}

#[tokio::test]
async fn sending_too_fast_is_rate_limited() {
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 2;
        c.limits.message_burst = 3;
    })
    .await;
    let alice = server.user("alice").await;
    let room = alice.group("rate", &[]).await;
    let mut limited = None;
    for i in 0..10 {
        let (status, body) = alice.send_http(room, &format!("r{i}"), "spam").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((i, body));
            break;
        }
    }
    let (i, body) = limited.expect("rate limited within 10 sends");
    assert!(i >= 3, "the burst is honoured");
    assert_eq!(body["code"], "rate_limited");
    assert!(body["retry_after_ms"].as_u64().is_some());
    assert_eq!(alice.history(room, "").await.len(), i);
}

#[tokio::test]
async fn bad_websocket_frames_get_error_frames_and_oversized_ones_close() {
    let server = TestServer::start_with(|c| c.limits.max_frame_bytes = 2048).await;
    let alice = server.user("alice").await;
    let room = alice.group("frames", &[]).await;
    let mut ws = alice.ws(&server).await;

    ws.send_raw(Message::Text("{not json".into())).await;
    assert_eq!(ws.recv().await["code"], "malformed_json");
    ws.send(json!({ "type": "shout", "room": room })).await;
    assert_eq!(ws.recv().await["code"], "invalid_body");
    ws.send(
        json!({ "type": "send", "room": room, "client_msg_id": "a", "body": "x", "sneaky": 1 }),
    )
    .await;
    assert_eq!(ws.recv().await["code"], "invalid_body");
    ws.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(ws.recv().await["code"], "unsupported_frame");
    ws.send(
        json!({ "type": "send", "req": "r9", "room": room, "client_msg_id": "ok", "body": "fine" }),
    )
    .await;
    let ack = ws.recv_type("ack").await;
    assert_eq!(ack["req"], "r9");

    ws.send_raw(Message::Text("x".repeat(10_000).into())).await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!((code, reason.as_str()), (1009, "frame_too_large"));
    assert_eq!(
        alice.history(room, "").await.len(),
        1,
        "only the valid message stored"
    );
}

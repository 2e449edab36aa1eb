//! Slow and idle connections are closed, the connection count is capped with a clear
//! refusal, and an oversized WebSocket frame gets the documented `1009` close rather than a
//! reset.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::TestServer;

/// Read until the server closes the connection (EOF or reset); returns what was read.
async fn read_to_close(tcp: &mut TcpStream, within: Duration) -> Option<String> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&all).into_owned()),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_dripping_headers_is_cut_off_at_the_header_timeout() {
    let server = TestServer::start_with(|c| c.http.header_read_timeout_ms = 800).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // One header line every 200 ms, forever: before, this held the connection open.
    let mut closed = false;
    for i in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if tcp
            .write_all(format!("X-Drip-{i}: x\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the server never closed a dripping connection");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let server = TestServer::start_with(|c| c.http.header_read_timeout_ms = 800).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut tcp, Duration::from_secs(10))
        .await
        .expect("closed within 10 s");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_refused_with_408() {
    let server = TestServer::start_with(|c| c.http.body_read_timeout_ms = 700).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 200\r\n\r\n{\"username\":",
    )
    .await
    .unwrap();
    // A byte every 100 ms would take 20 s: the total deadline, not a per-read one, ends it.
    let dripping = async {
        for _ in 0..150 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tcp.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), dripping).await;
    let answer = read_to_close(&mut tcp, Duration::from_secs(10))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_503_and_capacity_comes_back() {
    let server = TestServer::start_with(|c| c.http.max_connections = 4).await;
    let mut open = Vec::new();
    let mut refusal = None;
    for _ in 0..8 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        if head.starts_with("HTTP/1.1 200") {
            open.push(tcp); // kept alive: it keeps its slot
            continue;
        }
        refusal = Some(head);
        break;
    }
    let refusal = refusal.expect("the cap was reached");
    assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
    assert!(refusal.contains("too_many_connections"), "{refusal}");
    // The test's own HTTP client may hold one slot; the raw connections got the rest.
    assert!((3..=4).contains(&open.len()), "{}", open.len());

    // A closed connection gives its slot back.
    drop(open.pop());
    let mut served = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut tcp, Duration::from_secs(5))
            .await
            .unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
    }
    assert!(served, "capacity came back after a connection closed");
}

#[tokio::test]
async fn websocket_sessions_count_against_the_cap() {
    let server = TestServer::start_with(|c| c.http.max_connections = 3).await;
    let alice = server.user("alice").await;
    let mut sockets = Vec::new();
    let mut refused = false;
    for _ in 0..5 {
        match tokio_tungstenite::connect_async(server.ws_url(&alice.token)).await {
            Ok((ws, _)) => sockets.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 503);
                refused = true;
                break;
            }
            Err(err) => panic!("unexpected: {err}"),
        }
    }
    assert!(refused, "upgraded sockets hold their slots");
    assert!(sockets.len() <= 3);
}

#[tokio::test]
async fn an_oversized_websocket_frame_gets_a_1009_close_not_a_reset() {
    let server = TestServer::start_with(|c| c.limits.max_frame_bytes = 1024).await;
    let alice = server.user("alice").await;
    for size in [4 * 1024, 1024 * 1024] {
        let mut ws = alice.ws(&server).await;
        ws.send_raw(Message::text("x".repeat(size))).await;
        let (code, reason) = ws.expect_close().await;
        assert_eq!(
            (code, reason.as_str()),
            (1009, "frame_too_large"),
            "{size} bytes"
        );
    }
}

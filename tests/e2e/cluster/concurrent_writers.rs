//! The seq contract across real processes: many senders through two nodes at once, one room.

use futures_util::future::join_all;

use super::{NodeConfig, PgDb, assert_one_to_n, full_history, on, system_nats_url, two_nodes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_two_nodes_get_unique_gap_free_seqs() {
    const USERS: usize = 4;
    const PER_SENDER: usize = 25;
    let db = PgDb::create().await;
    let config = NodeConfig::new(&db, system_nats_url());
    let (a, b) = two_nodes(&config).await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(a.user(&format!("writer{i}")).await);
    }
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let room = users[0].group("contended", &ids[1..]).await;

    // Every user sends through both nodes at once: 2 × USERS concurrent senders.
    let mut senders = Vec::new();
    for user in &users {
        for node in [&a, &b] {
            let client = on(node, user);
            let tag = format!("{}-{}", user.name, node.name);
            senders.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..PER_SENDER {
                    let (status, body) = client
                        .send_http(room, &format!("{tag}-{i}"), "contended")
                        .await;
                    assert!(status.is_success(), "{status} {body}");
                    seqs.push(body["seq"].as_i64().unwrap());
                }
                seqs
            }));
        }
    }
    let results = tokio::time::timeout(std::time::Duration::from_secs(90), join_all(senders))
        .await
        .expect("senders finish");
    let mut acked: Vec<i64> = results.into_iter().flat_map(|r| r.unwrap()).collect();
    acked.sort_unstable();
    assert_one_to_n(&acked, "acknowledged seqs");

    let history = full_history(&users[0], room).await;
    let stored: Vec<i64> = history.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(stored, acked, "the log holds exactly the acknowledged seqs");
    assert_eq!(history.len(), USERS * 2 * PER_SENDER);
}

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

/// Reactions and pins raced through two nodes on one PostgreSQL: identical ones are one event
/// and duplicates (not a unique violation's 503), new emoji racing for the last place get one
/// place, and the log stays gap-free. Each node commits on its own connections, so only the
/// room's lock that the check holds keeps the two from acting on what they read before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_and_pins_raced_through_two_nodes_are_one_each_and_the_limit_is_exact() {
    const ROUNDS: usize = 5;
    let db = PgDb::create().await;
    let config = NodeConfig::new(&db, system_nats_url());
    let (a, b) = two_nodes(&config).await;
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let room = alice.group("race", &[bob.id]).await;
    let path = |message: i64, emoji: &str| crate::support::reaction_path(room, message, emoji);
    // Six clients of one user, every other one through the other node.
    let through_both = |user: &crate::support::Client| -> Vec<crate::support::Client> {
        (0..6)
            .map(|i| on(if i % 2 == 0 { &a } else { &b }, user))
            .collect()
    };

    for round in 0..ROUNDS {
        let (_, sent) = alice.send_http(room, &format!("m{round}"), "race me").await;
        let message = sent["id"].as_i64().unwrap();

        // Bob's 👍 through both nodes at once, three times each.
        let thumbs = path(message, "👍");
        let clients = through_both(&bob);
        let answers = join_all(clients.iter().map(|c| c.put(&thumbs))).await;
        let created = answers.iter().filter(|(s, _)| s.as_u16() == 201).count();
        assert_eq!(created, 1, "round {round}: one reaction: {answers:?}");
        assert!(
            answers
                .iter()
                .all(|(s, a)| s.as_u16() == 201 || (s.as_u16() == 200 && a["duplicate"] == true)),
            "round {round}: the rest are duplicates: {answers:?}"
        );

        // 18 more emoji by alice leave one place of the 20; six new ones race for it.
        for (i, emoji) in EMOJI[..18].iter().enumerate() {
            let (status, body) = alice.put(&path(message, emoji)).await;
            assert_eq!(status.as_u16(), 201, "emoji {i}: {body}");
        }
        let clients = through_both(&alice);
        let racing: Vec<String> = EMOJI[18..24].iter().map(|e| path(message, e)).collect();
        let answers = join_all(clients.iter().zip(&racing).map(|(c, p)| c.put(p))).await;
        let created = answers.iter().filter(|(s, _)| s.as_u16() == 201).count();
        assert_eq!(created, 1, "round {round}: one place left: {answers:?}");
        assert!(
            answers.iter().all(|(s, a)| s.as_u16() == 201
                || (s.as_u16() == 409 && a["code"] == "too_many_reactions")),
            "round {round}: {answers:?}"
        );

        // One pin, asked for through both nodes at once.
        let pin = format!("/api/v1/rooms/{room}/pins/{message}");
        let answers = join_all(clients.iter().map(|c| c.put(&pin))).await;
        let created = answers.iter().filter(|(s, _)| s.as_u16() == 201).count();
        assert_eq!(created, 1, "round {round}: one pin: {answers:?}");
        assert!(
            answers
                .iter()
                .all(|(s, _)| s.as_u16() == 201 || s.as_u16() == 200),
            "round {round}: {answers:?}"
        );
    }

    let history = full_history(&alice, room).await;
    let seqs: Vec<i64> = history.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_one_to_n(&seqs, "the room's log");
    let count = |kind: &str| history.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(
        (count("reaction"), count("pinned")),
        (ROUNDS * 20, ROUNDS),
        "every round: 20 reactions and one pin in the log"
    );
    let (_, reactors) = alice
        .get(&format!(
            "/api/v1/rooms/{room}/messages/{}/reactions",
            history.iter().find(|e| e["kind"] == "message").unwrap()["id"]
        ))
        .await;
    assert_eq!(reactors.as_array().map(Vec::len), Some(20), "{reactors}");
}

/// 24 different emoji.
const EMOJI: [&str; 24] = [
    "😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰", "😗",
    "😙", "🥲", "😚", "🙂", "🤗", "🤩", "🤔", "🫡",
];

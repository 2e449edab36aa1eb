//! Search in the store, the same on both backends: what people type finds what they expect
//! (golden cases), only rooms the reader is a member of are searched (a property over random
//! memberships, edits and deletes), edits and deletes count from the moment they are
//! stored, paging and filters, and the reindex of messages stored before search existed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use switchboard::store::search_text::fold;
use switchboard::store::{Metadata, NewEvent, Role, SearchQuery, Store, UserId};

use super::{Backend, append_ok, group, send, user};

fn words(query: &str) -> SearchQuery {
    SearchQuery {
        required: query.split_whitespace().map(fold).collect(),
        limit: 100,
        ..SearchQuery::default()
    }
}

/// The ids a search finds, in the order found.
async fn found_ids(store: &Arc<dyn Store>, query: &SearchQuery) -> Vec<i64> {
    let events = store.search_messages(query).await.expect("search");
    events.into_iter().map(|e| e.id).collect()
}

async fn found(store: &Arc<dyn Store>, query: &SearchQuery) -> Vec<String> {
    store
        .search_messages(query)
        .await
        .expect("search")
        .into_iter()
        .map(|e| e.body.unwrap_or_default())
        .collect()
}

/// (what is typed, the bodies it must find — newest first — among the golden messages).
const GOLDEN_MESSAGES: &[&str] = &[
    "Please review the follow-up plan",
    "Our e-mail server is down again",
    "Release on 2026-03-14 at 10:30 UTC",
    "Docs at https://example.com/path?q=1&lang=en",
    "The log is in /var/log/switchboard/server.log",
    "Write to jane.doe+ops@example.co.uk for access",
    "数据库迁移明天开始",
    "会議は東京で行います",
    "Le café de la crème brûlée",
    "ＦＵＬＬ width ｶﾀｶﾅ text",
    "100% sure, 50_50 chance",
    "the quick brown fox",
];

const GOLDEN_QUERIES: &[(&str, &[&str])] = &[
    // Partial words and hyphens: as typed.
    ("view", &["Please review the follow-up plan"]),
    ("follow-up", &["Please review the follow-up plan"]),
    ("e-mail", &["Our e-mail server is down again"]),
    ("EMAIL", &[]),
    // Dates and times.
    ("2026-03-14", &["Release on 2026-03-14 at 10:30 UTC"]),
    ("2026-03", &["Release on 2026-03-14 at 10:30 UTC"]),
    ("10:30", &["Release on 2026-03-14 at 10:30 UTC"]),
    // URLs, paths, addresses.
    (
        "example.com/path",
        &["Docs at https://example.com/path?q=1&lang=en"],
    ),
    (
        "q=1&lang",
        &["Docs at https://example.com/path?q=1&lang=en"],
    ),
    (
        "/var/log/switchboard",
        &["The log is in /var/log/switchboard/server.log"],
    ),
    (
        "server.log",
        &["The log is in /var/log/switchboard/server.log"],
    ),
    (
        "jane.doe+ops@example.co.uk",
        &["Write to jane.doe+ops@example.co.uk for access"],
    ),
    (
        "example.co",
        &[
            "Write to jane.doe+ops@example.co.uk for access",
            "Docs at https://example.com/path?q=1&lang=en",
        ],
    ),
    // Chinese and Japanese: no spaces between words.
    ("迁移", &["数据库迁移明天开始"]),
    ("数据库迁移", &["数据库迁移明天开始"]),
    ("東京", &["会議は東京で行います"]),
    ("会議", &["会議は東京で行います"]),
    ("カタカナ", &["ＦＵＬＬ width ｶﾀｶﾅ text"]),
    // Accents, case and width.
    ("cafe creme brulee", &["Le café de la crème brûlée"]),
    ("CAFÉ", &["Le café de la crème brûlée"]),
    ("full", &["ＦＵＬＬ width ｶﾀｶﾅ text"]),
    // Characters that are wildcards to SQL are plain text here.
    ("100%", &["100% sure, 50_50 chance"]),
    ("50_50", &["100% sure, 50_50 chance"]),
    ("%", &["100% sure, 50_50 chance"]),
    ("_", &["100% sure, 50_50 chance"]),
    // Short words (under three characters) work too.
    ("ox", &["the quick brown fox"]),
    (
        "q",
        &[
            "the quick brown fox",
            "Docs at https://example.com/path?q=1&lang=en",
        ],
    ),
    // Every word must occur.
    ("quick fox", &["the quick brown fox"]),
    ("quick cat", &[]),
];

pub(super) async fn search_finds_what_people_type(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    for (i, body) in GOLDEN_MESSAGES.iter().enumerate() {
        send(&store, room, alice, &format!("g{i}"), body).await;
    }
    for (typed, expected) in GOLDEN_QUERIES {
        assert_eq!(
            &found(&store, &words(typed)).await,
            expected,
            "query {typed:?}"
        );
    }
    // A phrase is one piece; exclusions leave out.
    let phrase = SearchQuery {
        required: vec![fold("Brown Fox")],
        ..words("")
    };
    assert_eq!(found(&store, &phrase).await, ["the quick brown fox"]);
    let mut excluding = words("example");
    excluding.excluded = vec![fold("path")];
    assert_eq!(
        found(&store, &excluding).await,
        ["Write to jane.doe+ops@example.co.uk for access"]
    );
    // A quote in a word does not break the query.
    assert!(found(&store, &words("\"quoted\" it's")).await.is_empty());
}

pub(super) async fn search_reflects_edits_and_deletes_when_stored(
    store: Arc<dyn Store>,
    _: Backend,
) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    let m = send(&store, room, alice, "c1", "budget draft for marketing").await;
    assert_eq!(found(&store, &words("marketing")).await.len(), 1);
    append_ok(
        &store,
        vec![NewEvent::Edit {
            room_id: room,
            sender_id: alice,
            target: m,
            body: "budget final for sales".into(),
            metadata: Metadata::new(),
            mentions: Default::default(),
        }],
    )
    .await;
    // The old text is not found the moment the edit is stored; the new one is, once (the
    // edit event itself is not a second result).
    assert!(found(&store, &words("marketing")).await.is_empty());
    assert_eq!(
        found(&store, &words("sales")).await,
        ["budget final for sales"]
    );
    append_ok(
        &store,
        vec![NewEvent::Delete {
            room_id: room,
            sender_id: alice,
            target: m,
        }],
    )
    .await;
    assert!(found(&store, &words("budget")).await.is_empty());
}

pub(super) async fn search_filters_and_pages(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let one = group(&store, alice, &[bob]).await;
    let two = group(&store, alice, &[bob]).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let (room, sender) = if i % 2 == 0 { (one, alice) } else { (two, bob) };
        ids.push(
            send(
                &store,
                room,
                sender,
                &format!("p{i}"),
                &format!("report number {i}"),
            )
            .await,
        );
    }
    // Newest first, in pages, without repeats or holes.
    let mut seen = Vec::new();
    let mut query = SearchQuery {
        reader: Some(alice),
        limit: 10,
        ..words("report")
    };
    loop {
        let page = store.search_messages(&query).await.expect("page");
        if page.is_empty() {
            break;
        }
        query.before_id = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| e.id));
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let only = |q: SearchQuery| {
        let store = store.clone();
        async move {
            store
                .search_messages(&q)
                .await
                .expect("search")
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    let from_bob = only(SearchQuery {
        senders: vec![bob],
        ..words("report")
    })
    .await;
    assert_eq!(from_bob.len(), 12);
    // Walking bob's messages instead of the word index (he wrote 12: within a cap of 12,
    // not of 11) gives the same results, pages included; the largest cap configurable too.
    for sender_scan_max in [11, 12, 1_000, u64::MAX] {
        assert_eq!(
            only(SearchQuery {
                senders: vec![bob],
                sender_scan_max,
                ..words("report")
            })
            .await,
            from_bob,
            "sender_scan_max {sender_scan_max}"
        );
        let second_page = only(SearchQuery {
            senders: vec![bob, alice],
            sender_scan_max,
            before_id: Some(from_bob[4]),
            limit: 3,
            ..words("report number")
        })
        .await;
        assert_eq!(
            second_page,
            newest_first
                .iter()
                .copied()
                .filter(|&id| id < from_bob[4])
                .take(3)
                .collect::<Vec<_>>(),
            "sender_scan_max {sender_scan_max}"
        );
    }
    let in_one = only(SearchQuery {
        rooms: vec![one],
        ..words("report")
    })
    .await;
    assert_eq!(in_one.len(), 13);
    let nothing = only(SearchQuery {
        rooms: vec![one],
        senders: vec![bob],
        ..words("report")
    })
    .await;
    assert!(nothing.is_empty());
    // Time range: everything was sent now.
    let now = switchboard::store::now_millis();
    assert_eq!(
        only(SearchQuery {
            since: Some(now - 60_000),
            until: Some(now + 60_000),
            ..words("report")
        })
        .await
        .len(),
        25
    );
    assert!(
        only(SearchQuery {
            until: Some(now - 60_000),
            ..words("report")
        })
        .await
        .is_empty()
    );
    // Filters alone (no text) are a search too.
    assert_eq!(
        only(SearchQuery {
            senders: vec![alice],
            ..words("")
        })
        .await
        .len(),
        13
    );
}

#[derive(Debug, Clone)]
enum Op {
    /// Sender (index into users), room (index), word.
    Post(usize, usize, usize),
    Join(usize, usize),
    Leave(usize, usize),
    Edit(usize, usize),
    Delete(usize),
}

const WORDS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3, 0usize..3, 0usize..4).prop_map(|(u, r, w)| Op::Post(u, r, w)),
        2 => (0usize..3, 0usize..3).prop_map(|(u, r)| Op::Join(u, r)),
        2 => (0usize..3, 0usize..3).prop_map(|(u, r)| Op::Leave(u, r)),
        1 => (0usize..64, 0usize..4).prop_map(|(m, w)| Op::Edit(m, w)),
        1 => (0usize..64).prop_map(Op::Delete),
    ]
}

/// For random histories of posts, joins, leaves, edits and deletes in three rooms, every
/// user's search for every word returns exactly the live messages with that word in the
/// rooms they are a member of now — never one from a room they left or never joined,
/// never a deleted one, never an old text.
pub(super) async fn search_sees_only_rooms_the_reader_is_in(store: Arc<dyn Store>, _: Backend) {
    let owner = user(&store, "owner").await;
    let mut users: Vec<UserId> = Vec::new();
    for name in ["ann", "ben", "cat"] {
        users.push(user(&store, name).await);
    }
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let histories = proptest::collection::vec(op(), 1..40);
    for history in 0..12 {
        // Fresh rooms per history; the owner stays in all of them (and posts nothing).
        let rooms: Vec<i64> = [
            group(&store, owner, &[]).await,
            group(&store, owner, &[]).await,
            group(&store, owner, &[]).await,
        ]
        .to_vec();
        let mut members: BTreeSet<(usize, usize)> = BTreeSet::new();
        // Message id -> (room index, sender index, current text, live).
        let mut messages: BTreeMap<i64, (usize, usize, String, bool)> = BTreeMap::new();
        let ops = histories.new_tree(&mut runner).expect("case").current();
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Post(u, r, w) => {
                    if !members.contains(&(u, r)) {
                        continue;
                    }
                    let text = format!("h{history} {} s{step}", WORDS[w]);
                    let id = send(
                        &store,
                        rooms[r],
                        users[u],
                        &format!("h{history}-{step}"),
                        &text,
                    )
                    .await;
                    messages.insert(id, (r, u, text, true));
                }
                Op::Join(u, r) => {
                    if members.insert((u, r)) {
                        append_ok(
                            &store,
                            vec![NewEvent::Join {
                                room_id: rooms[r],
                                actor_id: owner,
                                user_id: users[u],
                                role: Role::Member,
                            }],
                        )
                        .await;
                    }
                }
                Op::Leave(u, r) => {
                    if members.remove(&(u, r)) {
                        append_ok(
                            &store,
                            vec![NewEvent::Leave {
                                room_id: rooms[r],
                                actor_id: owner,
                                user_id: users[u],
                            }],
                        )
                        .await;
                    }
                }
                Op::Edit(m, w) => {
                    let live: Vec<i64> = messages
                        .iter()
                        .filter(|(_, (_, _, _, live))| *live)
                        .map(|(id, _)| *id)
                        .collect();
                    let Some(&id) = live.get(m % live.len().max(1)) else {
                        continue;
                    };
                    let (r, u, _, _) = messages[&id].clone();
                    let text = format!("h{history} {} edited{step}", WORDS[w]);
                    append_ok(
                        &store,
                        vec![NewEvent::Edit {
                            room_id: rooms[r],
                            sender_id: users[u],
                            target: id,
                            body: text.clone(),
                            metadata: Metadata::new(),
                            mentions: Default::default(),
                        }],
                    )
                    .await;
                    messages.insert(id, (r, u, text, true));
                }
                Op::Delete(m) => {
                    let live: Vec<i64> = messages
                        .iter()
                        .filter(|(_, (_, _, _, live))| *live)
                        .map(|(id, _)| *id)
                        .collect();
                    let Some(&id) = live.get(m % live.len().max(1)) else {
                        continue;
                    };
                    let (r, _, _, _) = messages[&id];
                    append_ok(
                        &store,
                        vec![NewEvent::Delete {
                            room_id: rooms[r],
                            sender_id: owner,
                            target: id,
                        }],
                    )
                    .await;
                    if let Some(entry) = messages.get_mut(&id) {
                        entry.3 = false;
                    }
                }
            }
        }
        for (u, &reader) in users.iter().enumerate() {
            for word in WORDS {
                let query = SearchQuery {
                    reader: Some(reader),
                    required: vec![fold(&format!("h{history} {word}"))],
                    limit: 1000,
                    ..SearchQuery::default()
                };
                let got = found_ids(&store, &query).await;
                let expected: Vec<i64> = messages
                    .iter()
                    .rev()
                    .filter(|(_, (r, _, text, live))| {
                        *live && members.contains(&(u, *r)) && text.contains(word)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                assert_eq!(
                    got, expected,
                    "history {history}, user {u}, word {word}: {ops:?}"
                );
                // `from:` each user, through the word index and through the sender's
                // messages: the same page either way.
                for (s, &sender) in users.iter().enumerate() {
                    let from_sender: Vec<i64> = expected
                        .iter()
                        .copied()
                        .filter(|id| messages[id].1 == s)
                        .collect();
                    for sender_scan_max in [0, 1_000_000] {
                        let query = SearchQuery {
                            senders: vec![sender],
                            sender_scan_max,
                            ..query.clone()
                        };
                        let got = found_ids(&store, &query).await;
                        assert_eq!(
                            got, from_sender,
                            "history {history}, user {u}, word {word}, from {s}, \
                             sender_scan_max {sender_scan_max}: {ops:?}"
                        );
                    }
                }
            }
        }
    }
}

/// Messages stored before search existed have no search text; the reindex gives it to them
/// (and a full reindex repairs a wrong one).
pub(super) async fn reindex_fills_in_what_is_missing(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    for i in 0..7 {
        send(
            &store,
            room,
            alice,
            &format!("r{i}"),
            &format!("older message {i}"),
        )
        .await;
    }
    // As after the upgrade: no search text (and a wrong one for one message).
    let clear = "UPDATE events SET search_text = NULL WHERE kind = 'message'";
    let wrong = "UPDATE events SET search_text = 'garbage' WHERE id = (SELECT min(id) FROM events WHERE kind = 'message')";
    backend.execute(clear).await;
    assert!(found(&store, &words("older")).await.is_empty());
    assert_eq!(store.messages_to_index(true).await.expect("count"), 7);
    let mut after = 0;
    let mut written = 0;
    loop {
        let step = store.reindex_messages(after, 3, true).await.expect("step");
        written += step.written;
        match step.last {
            Some(last) if step.visited == 3 => after = last,
            _ => break,
        }
    }
    assert_eq!(written, 7);
    assert_eq!(store.messages_to_index(true).await.expect("count"), 0);
    assert_eq!(found(&store, &words("older")).await.len(), 7);

    backend.execute(wrong).await;
    assert_eq!(found(&store, &words("older")).await.len(), 6);
    let step = store.reindex_messages(0, 100, false).await.expect("full");
    assert_eq!((step.visited, step.written), (7, 1));
    assert_eq!(found(&store, &words("older")).await.len(), 7);
}

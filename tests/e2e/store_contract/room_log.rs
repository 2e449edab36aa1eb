//! The room log: ordering, idempotency, edits and deletes, per-item failure, paging.

use super::*;

pub(super) async fn append_is_ordered_and_gap_free(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let r1 = group(&store, alice, &[]).await;
    let r2 = group(&store, alice, &[]).await;

    // One batch interleaving two rooms: each room counts on its own.
    let batch: Vec<NewEvent> = (0..20)
        .map(|i| {
            msg(
                if i % 2 == 0 { r1 } else { r2 },
                alice,
                &format!("b{i}"),
                &format!("m{i}"),
            )
        })
        .collect();
    let done = append_ok(&store, batch).await;
    let got: Vec<(i64, i64)> = done
        .iter()
        .map(|a| (a.event.room_id, a.event.seq))
        .collect();
    let want: Vec<(i64, i64)> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                (r1, i / 2 + 1)
            } else {
                (r2, i / 2 + 1)
            }
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        done.iter()
            .all(|a| !a.duplicate && a.event.kind == EventKind::Message)
    );
    assert_eq!(done[4].event.body.as_deref(), Some("m4"));
    assert_eq!(done[4].event.client_msg_id.as_deref(), Some("b4"));
    assert_eq!(
        store.event(done[4].event.id).await.expect("event"),
        Some(done[4].event.clone())
    );

    // Many concurrent writers on the same room.
    let writers = (0..8).map(|w| {
        let store = store.clone();
        async move {
            for i in 0..10 {
                append_ok(&store, vec![msg(r1, alice, &format!("w{w}-{i}"), "x")]).await;
            }
        }
    });
    join_all(writers).await;
    assert_eq!(seqs(&store, r1).await, one_to(90));
    assert_eq!(seqs(&store, r2).await, one_to(10));
    assert_eq!(
        store.room(r1).await.expect("room").expect("r1").last_seq,
        90
    );
    assert_eq!(
        store
            .events(r1, Page::After(0), 10_000)
            .await
            .expect("events")
            .len(),
        90
    );
}

pub(super) async fn idempotent_retry(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;

    // The same send twice in one batch, plus another sender reusing the id (not a duplicate).
    let done = append_ok(
        &store,
        vec![
            msg(room, alice, "c1", "hello"),
            msg(room, alice, "c1", "hello (retry)"),
            msg(room, bob, "c1", "bob's own c1"),
        ],
    )
    .await;
    assert!(!done[0].duplicate && done[1].duplicate && !done[2].duplicate);
    assert_eq!(done[1].event, done[0].event);
    assert_eq!(done[1].event.body.as_deref(), Some("hello"));
    assert_eq!((done[0].event.seq, done[2].event.seq), (1, 2));

    // A retry in a later batch.
    let retry = append_ok(&store, vec![msg(room, alice, "c1", "hello")]).await;
    assert!(retry[0].duplicate);
    assert_eq!(retry[0].event, done[0].event);
    assert_eq!(seqs(&store, room).await, one_to(2));
    assert_eq!(
        store
            .room(room)
            .await
            .expect("room")
            .expect("room")
            .last_seq,
        2
    );

    let found = store
        .event_by_client_msg_id(alice, "c1")
        .await
        .expect("lookup");
    assert_eq!(found, Some(done[0].event.clone()));
    assert_eq!(
        store
            .event_by_client_msg_id(alice, "c2")
            .await
            .expect("lookup"),
        None
    );
    // The next new send takes the next seq: the retries burnt none.
    assert_eq!(
        append_ok(&store, vec![msg(room, alice, "c2", "next")]).await[0]
            .event
            .seq,
        3
    );
}

/// The bulk form of `event_by_client_msg_id`, which the router batches retry lookups with:
/// every stored key found once, unknown keys and other senders' ids not, at every count
/// (statement shapes of 1, 2, 4 … 32 keys, padded; more than 32 take several statements).
pub(super) async fn retries_are_found_in_bulk(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;
    let batch: Vec<NewEvent> = (0..40)
        .map(|i| msg(room, alice, &format!("a{i}"), &format!("text {i}")))
        .chain([msg(room, bob, "b0", "bob's")])
        .collect();
    let stored = append_ok(&store, batch).await;

    for count in [0, 1, 2, 3, 5, 31, 32, 33, 40, 70] {
        // Alternate stored and unknown keys (and bob's id under alice's name).
        let names: Vec<(UserId, String)> = (0..count)
            .map(|i| match i % 3 {
                0 => (alice, format!("a{}", i % 40)),
                1 => (alice, format!("unknown{i}")),
                _ => (alice, "b0".to_string()),
            })
            .collect();
        let keys: Vec<(UserId, &str)> = names.iter().map(|(u, c)| (*u, c.as_str())).collect();
        let mut found = store
            .events_by_client_msg_ids(&keys)
            .await
            .expect("bulk lookup");
        found.sort_by_key(|e| e.id);
        let mut expected: Vec<Event> = (0..count)
            .filter(|i| i % 3 == 0)
            .map(|i| stored[i % 40].event.clone())
            .collect();
        expected.sort_by_key(|e| e.id);
        expected.dedup();
        assert_eq!(found, expected, "{count} keys");
    }
    // The same key twice, and keys of two senders in one lookup.
    let found = store
        .events_by_client_msg_ids(&[(alice, "a1"), (alice, "a1"), (bob, "b0")])
        .await
        .expect("bulk lookup");
    assert_eq!(found.len(), 2);
    assert!(found.contains(&stored[1].event) && found.contains(&stored[40].event));
}

/// The router's "may this send be a retry?" before the plugins run: a stored key is never
/// answered new, before SQLite's filter is filled, once it is, for keys of every write path
/// (the one-statement run, a mention through a savepoint, a retry) and after a reopen. On
/// SQLite a key never stored is answered new once the filter is filled (that saves the
/// lookup); PostgreSQL, where other nodes write too, answers "may be" to everything.
pub(super) async fn stored_sends_are_never_answered_new(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;
    let first: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
    append_ok(
        &store,
        first.iter().map(|c| msg(room, alice, c, "hello")).collect(),
    )
    .await;
    let all_held = |store: &Arc<dyn Store>, keys: &[(UserId, String)]| {
        keys.iter()
            .filter(|(u, c)| !store.may_hold_client_msg_id(*u, c))
            .map(|(u, c)| format!("{u}/{c}"))
            .collect::<Vec<_>>()
    };
    let mut stored: Vec<(UserId, String)> = first.iter().map(|c| (alice, c.clone())).collect();
    assert_eq!(all_held(&store, &stored), Vec::<String>::new());

    // Until the scan the first question started is done, no key is known new; a new one
    // then is (the sentinel; on PostgreSQL, checked once).
    let fresh = |store: &Arc<dyn Store>| {
        (0..100)
            .filter(|i| !store.may_hold_client_msg_id(bob, &format!("new{i}")))
            .count()
    };
    let filled = |store: Arc<dyn Store>| async move {
        if backend.kind == Kind::Postgres {
            assert_eq!(fresh(&store), 0, "PostgreSQL cannot know a key is new");
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while fresh(&store) < 90 {
            assert!(
                std::time::Instant::now() < deadline,
                "the filter never filled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    filled(Arc::clone(&store)).await;
    assert_eq!(all_held(&store, &stored), Vec::<String>::new());

    // A batch of every path: held as soon as it returns.
    let mut mentioning = msg(room, bob, "m1", "hi @alice");
    if let NewEvent::Message { mentions, .. } = &mut mentioning {
        mentions.users.push(alice);
    }
    let batch = vec![
        msg(room, bob, "r1", "run"),
        mentioning,
        msg(room, bob, "r2", "run"),
        msg(room, alice, "s0", "hello"),
    ];
    let outcomes = append_ok(&store, batch).await;
    assert!(outcomes[3].duplicate);
    stored.extend(["r1", "m1", "r2"].map(|c| (bob, c.to_string())));
    assert_eq!(all_held(&store, &stored), Vec::<String>::new());

    // Another store on the file fills its own filter from what is stored.
    drop(store);
    let store = backend.open().await;
    assert_eq!(all_held(&store, &stored), Vec::<String>::new());
    filled(Arc::clone(&store)).await;
    assert_eq!(all_held(&store, &stored), Vec::<String>::new());
}

pub(super) async fn edit_and_delete(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;
    let other_room = group(&store, alice, &[]).await;
    let m = send(&store, room, alice, "c1", "first draft").await;

    let meta = Metadata::from([("dlp".to_string(), "clean".to_string())]);
    let edited = append_ok(
        &store,
        vec![NewEvent::Edit {
            room_id: room,
            sender_id: alice,
            target: m,
            body: "final text".into(),
            metadata: meta.clone(),
            mentions: Default::default(),
        }],
    )
    .await;
    let edit = &edited[0].event;
    assert_eq!(
        (edit.kind, edit.seq, edit.target),
        (EventKind::Edit, 2, Some(m))
    );
    assert_eq!(edit.body.as_deref(), Some("final text"));
    assert_eq!(edit.metadata, meta);
    let original = store.event(m).await.expect("get").expect("message");
    assert_eq!(original.body.as_deref(), Some("final text"));
    assert_eq!(original.metadata, meta);
    assert!(original.edited_at.is_some());
    assert_eq!(original.seq, 1, "an edit does not move the message");

    // Rejected edits and deletes, each positional, none burning a seq.
    let edit_by = |sender, target, room_id| NewEvent::Edit {
        room_id,
        sender_id: sender,
        target,
        body: "nope".into(),
        metadata: Metadata::new(),
        mentions: Default::default(),
    };
    let results = store
        .append_events(&[
            edit_by(bob, m, room),         // not the author
            edit_by(alice, edit.id, room), // an edit is not a message
            edit_by(alice, 99_999, room),  // no such event
            edit_by(alice, m, other_room), // wrong room
            NewEvent::Delete {
                room_id: other_room,
                sender_id: alice,
                target: m,
            },
        ])
        .await
        .expect("batch");
    assert_conflict(results[0].clone_result(), "not_author");
    assert_conflict(results[1].clone_result(), "not_a_message");
    assert_not_found(results[2].clone_result());
    assert_not_found(results[3].clone_result());
    assert_not_found(results[4].clone_result());
    assert_eq!(
        store
            .event(m)
            .await
            .expect("get")
            .expect("m")
            .body
            .as_deref(),
        Some("final text")
    );

    // Delete (a moderator may: the store does not check authorship).
    let deleted = append_ok(
        &store,
        vec![NewEvent::Delete {
            room_id: room,
            sender_id: bob,
            target: m,
        }],
    )
    .await;
    let del = &deleted[0].event;
    assert_eq!(
        (del.kind, del.seq, del.target, del.sender_id),
        (EventKind::Delete, 3, Some(m), bob)
    );
    assert_eq!(del.body, None);
    let gone = store.event(m).await.expect("get").expect("m");
    assert!(gone.deleted);
    assert_eq!((gone.body, gone.metadata.len()), (None, 0));
    let edit_now = store.event(edit.id).await.expect("get").expect("edit");
    assert_eq!(edit_now.body, None, "the edit's text goes with the message");

    // A deleted message can be neither edited nor deleted again.
    let results = store
        .append_events(&[
            edit_by(alice, m, room),
            NewEvent::Delete {
                room_id: room,
                sender_id: alice,
                target: m,
            },
        ])
        .await
        .expect("batch");
    assert_conflict(results[0].clone_result(), "message_deleted");
    assert_conflict(results[1].clone_result(), "message_deleted");
    assert_eq!(seqs(&store, room).await, one_to(3));

    // History shows the log: message (erased), edit (erased), delete.
    let kinds: Vec<EventKind> = store
        .events(room, Page::After(0), 10)
        .await
        .expect("events")
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [EventKind::Message, EventKind::Edit, EventKind::Delete]
    );
}

pub(super) async fn deleted_text_is_erased_from_storage(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    let m = store
        .append_events(&[NewEvent::Message {
            room_id: room,
            sender_id: alice,
            client_msg_id: "c1".into(),
            body: "password is hunter2".into(),
            metadata: Metadata::from([("preview".to_string(), "hunter2".to_string())]),
            files: Vec::new(),
            thread: None,
            mentions: Default::default(),
        }])
        .await
        .expect("batch")
        .remove(0)
        .expect("sent")
        .event
        .id;
    append_ok(
        &store,
        vec![NewEvent::Edit {
            room_id: room,
            sender_id: alice,
            target: m,
            // Long enough to spill into overflow pages, which a delete frees whole.
            body: format!("password is hunter3 {}", "padding ".repeat(2_000)),
            metadata: Metadata::new(),
            mentions: Default::default(),
        }],
    )
    .await;
    let kept = send(&store, room, alice, "c2", "unrelated hunter note").await;
    assert_eq!(backend.events_mentioning("hunter").await, 3);
    if backend.kind == Kind::Sqlite {
        // The probe can see the text while it is stored...
        assert!(backend.sqlite_files_contain("hunter3").await);
    }

    append_ok(
        &store,
        vec![NewEvent::Delete {
            room_id: room,
            sender_id: alice,
            target: m,
        }],
    )
    .await;
    assert_eq!(backend.events_mentioning("hunter2").await, 0);
    assert_eq!(backend.events_mentioning("hunter3").await, 0);
    // Only the unrelated message still holds the word.
    assert_eq!(backend.events_mentioning("hunter").await, 1);
    if backend.kind == Kind::Sqlite {
        // ...and not in freed space or old page images afterwards (secure_delete).
        assert!(!backend.sqlite_files_contain("hunter2").await);
        assert!(!backend.sqlite_files_contain("hunter3").await);
    }
    assert!(
        store
            .event(kept)
            .await
            .expect("get")
            .expect("kept")
            .body
            .is_some()
    );
}

pub(super) async fn failed_items_burn_no_seq(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let room = group(&store, alice, &[bob]).await;
    let results = store
        .append_events(&[
            msg(room, alice, "a", "one"),
            NewEvent::Edit {
                room_id: room,
                sender_id: alice,
                target: 77_777,
                body: "x".into(),
                metadata: Metadata::new(),
                mentions: Default::default(),
            },
            msg(room, alice, "b", "two"),
            NewEvent::Join {
                room_id: room,
                actor_id: alice,
                user_id: bob,
                role: Role::Member,
            },
            NewEvent::Leave {
                room_id: room,
                actor_id: alice,
                user_id: carol,
            },
            msg(55_555, alice, "c", "no such room"),
            msg(room, 88_888, "d", "no such sender"),
            msg(room, alice, "e", "three"),
        ])
        .await
        .expect("batch");
    assert_eq!(results.len(), 8);
    let seq_of = |i: usize| results[i].as_ref().map(|a| a.event.seq).ok();
    assert_eq!(
        (seq_of(0), seq_of(2), seq_of(7)),
        (Some(1), Some(2), Some(3))
    );
    assert_not_found(results[1].clone_result());
    assert_conflict(results[3].clone_result(), "already_member");
    assert_not_found(results[4].clone_result());
    assert_not_found(results[5].clone_result());
    assert_not_found(results[6].clone_result());

    // Nothing of the failed items was left behind.
    assert_eq!(seqs(&store, room).await, one_to(3));
    assert_eq!(
        store
            .room(room)
            .await
            .expect("room")
            .expect("room")
            .last_seq,
        3
    );
    assert_eq!(
        store
            .event_by_client_msg_id(alice, "c")
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(store.member(room, carol).await.expect("member"), None);
    assert_eq!(store.room_members(room).await.expect("members").len(), 2);
}

/// A long run of new messages (the stores' fast paths: one hand-off per run on SQLite, one
/// statement on PostgreSQL) with retries, unknown rooms and unknown senders mixed in: every
/// item gets its own answer and the rooms stay gap-free. Once as a batch of new messages
/// only, and once with an edit after the run (on SQLite, a batch of messages only is also
/// begun and committed in that hand-off; a mixed one runs in the store's own transaction).
pub(super) async fn long_runs_of_messages(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    long_run_of_messages(&store, alice, bob, "").await;
    long_run_of_messages(&store, alice, bob, "edited-").await;
}

async fn long_run_of_messages(store: &Arc<dyn Store>, alice: UserId, bob: UserId, prefix: &str) {
    let then_edit = !prefix.is_empty();
    let rooms = [
        group(store, alice, &[bob]).await,
        group(store, alice, &[bob]).await,
        group(store, bob, &[alice]).await,
    ];
    // Stored before the batch, so its retry in the batch is a duplicate.
    let earlier = append_ok(
        store,
        vec![msg(rooms[0], alice, &format!("{prefix}m-early"), "early")],
    )
    .await;

    let mut batch = Vec::new();
    let mut expect = Vec::new(); // per item: Some(room index) if it must be stored
    for i in 0..100usize {
        let room = i % 3;
        let sender = if i % 2 == 0 { alice } else { bob };
        let (item, stored) = match i {
            33 | 70 => (
                msg(rooms[room], 99_999, &format!("{prefix}m{i}"), "nobody"),
                None,
            ),
            64 => (
                msg(77_777, alice, &format!("{prefix}m{i}"), "nowhere"),
                None,
            ),
            40 => (
                msg(
                    rooms[0],
                    alice,
                    &format!("{prefix}m-early"),
                    "retry of an earlier send",
                ),
                None,
            ),
            // A retry of item 10 within the same batch.
            80 => (
                msg(
                    rooms[1],
                    alice,
                    &format!("{prefix}m10"),
                    "retry in the batch",
                ),
                None,
            ),
            _ => (
                msg(
                    rooms[room],
                    sender,
                    &format!("{prefix}m{i}"),
                    &format!("body {i}"),
                ),
                Some(room),
            ),
        };
        batch.push(item);
        expect.push(stored);
    }
    if then_edit {
        batch.push(NewEvent::Edit {
            room_id: rooms[0],
            sender_id: alice,
            target: earlier[0].event.id,
            body: "edited after the run".into(),
            metadata: Metadata::new(),
            mentions: Default::default(),
        });
    }
    let results = store.append_events(&batch).await.expect("batch");
    assert_eq!(results.len(), 100 + usize::from(then_edit));
    let (results, edit) = results.split_at(100);
    let mut next_seq = [2, 1, 1]; // room 0 already holds "early"
    for (i, (result, stored)) in results.iter().zip(&expect).enumerate() {
        match (i, stored) {
            (_, Some(room)) => {
                let appended = result.as_ref().unwrap_or_else(|e| panic!("item {i}: {e}"));
                assert!(!appended.duplicate, "item {i}");
                assert_eq!(appended.event.room_id, rooms[*room], "item {i}");
                assert_eq!(appended.event.seq, next_seq[*room], "item {i}");
                assert_eq!(
                    appended.event.body.as_deref(),
                    Some(format!("body {i}").as_str())
                );
                next_seq[*room] += 1;
            }
            (40, None) => {
                let appended = result.as_ref().expect("a retry is answered");
                assert!(appended.duplicate);
                assert_eq!(appended.event, earlier[0].event);
            }
            (80, None) => {
                let appended = result.as_ref().expect("a retry is answered");
                assert!(appended.duplicate);
                assert_eq!(appended.event, results[10].as_ref().expect("item 10").event);
            }
            (_, None) => assert_not_found(result.clone_result()),
        }
    }
    if let [edit] = edit {
        let edit = edit.as_ref().expect("the edit after the run");
        assert_eq!(edit.event.kind, EventKind::Edit);
        assert_eq!(
            edit.event.seq, next_seq[0],
            "the seq after the run's in room 0"
        );
        next_seq[0] += 1;
    }
    for (room, next) in rooms.iter().zip(next_seq) {
        assert_eq!(seqs(store, *room).await, one_to(next - 1));
        assert_eq!(
            store
                .room(*room)
                .await
                .expect("room")
                .expect("room")
                .last_seq,
            next - 1
        );
    }
}

pub(super) async fn paging(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    let other = group(&store, alice, &[]).await;
    let batch: Vec<NewEvent> = (1..=30)
        .map(|i| msg(room, alice, &format!("c{i}"), &format!("{i}")))
        .collect();
    append_ok(&store, batch).await;
    send(&store, other, alice, "other", "elsewhere").await;

    let page = |p, n| {
        let store = store.clone();
        async move {
            store
                .events(room, p, n)
                .await
                .expect("page")
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(Page::After(0), 10).await, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        page(Page::After(10), 10).await,
        (11..=20).collect::<Vec<_>>()
    );
    assert_eq!(
        page(Page::After(25), 10).await,
        (26..=30).collect::<Vec<_>>()
    );
    assert_eq!(page(Page::After(30), 10).await, Vec::<i64>::new());
    assert_eq!(
        page(Page::Before(31), 10).await,
        (21..=30).collect::<Vec<_>>()
    );
    assert_eq!(page(Page::Before(i64::MAX), 3).await, [28, 29, 30]);
    assert_eq!(
        page(Page::Before(21), 10).await,
        (11..=20).collect::<Vec<_>>()
    );
    assert_eq!(page(Page::Before(5), 10).await, [1, 2, 3, 4]);
    assert_eq!(page(Page::Before(1), 10).await, Vec::<i64>::new());
    assert_eq!(page(Page::After(0), 0).await, Vec::<i64>::new());
    let bodies: Vec<String> = store
        .events(room, Page::After(0), 3)
        .await
        .expect("page")
        .into_iter()
        .filter_map(|e| e.body)
        .collect();
    assert_eq!(bodies, ["1", "2", "3"]);
    assert!(
        store
            .events(9_999, Page::After(0), 10)
            .await
            .expect("page")
            .is_empty()
    );

    // Property: for any cursor and page size, a page is exactly what filtering the whole
    // log says (the oldest `n` after a cursor, the newest `n` before one, in seq order).
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let cursors = proptest::prelude::prop_oneof![
        (-3i64..40),
        proptest::prelude::Just(i64::MAX),
        proptest::prelude::Just(i64::MIN)
    ];
    let queries = (proptest::prelude::any::<bool>(), cursors, 0u32..40);
    for _ in 0..64 {
        let (after, cursor, n) = proptest::strategy::ValueTree::current(
            &proptest::strategy::Strategy::new_tree(&queries, &mut runner).expect("case"),
        );
        let all = 1..=30i64;
        let want: Vec<i64> = if after {
            all.filter(|s| *s > cursor).take(n as usize).collect()
        } else {
            let before: Vec<i64> = all.filter(|s| *s < cursor).collect();
            before[before.len().saturating_sub(n as usize)..].to_vec()
        };
        let p = if after {
            Page::After(cursor)
        } else {
            Page::Before(cursor)
        };
        assert_eq!(
            page(p, n).await,
            want,
            "after={after} cursor={cursor} n={n}"
        );
    }
}

pub(super) async fn reopen_keeps_everything(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    let sent = append_ok(
        &store,
        vec![
            msg(room, alice, "c1", "kept"),
            msg(room, alice, "c2", "too"),
        ],
    )
    .await;
    store.kv_put("p", "k", b"v").await.expect("put");
    drop(store);

    // Migrations run again on open and must be a no-op.
    let reopened = backend.open().await;
    assert_eq!(reopened.count_users().await.expect("count"), 1);
    let events = reopened
        .events(room, Page::After(0), 10)
        .await
        .expect("events");
    assert_eq!(events, [sent[0].event.clone(), sent[1].event.clone()]);
    assert_eq!(
        reopened.kv_get("p", "k").await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        append_ok(&reopened, vec![msg(room, alice, "c3", "more")]).await[0]
            .event
            .seq,
        3
    );
}

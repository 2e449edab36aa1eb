//! Rooms, membership, direct rooms and read cursors.

use super::*;

pub(super) async fn group_rooms(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let room = store
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: Some("ops".into()),
                topic: Some("on call".into()),
                created_by: alice,
            },
            // The creator listed again (as member) stays owner; bob listed twice keeps his
            // first role.
            &[
                (bob, Role::Admin),
                (alice, Role::Member),
                (carol, Role::Member),
                (bob, Role::Member),
            ],
        )
        .await
        .expect("create");
    assert_eq!(room.kind, RoomKind::Group);
    assert_eq!(
        (room.name.as_deref(), room.topic.as_deref()),
        (Some("ops"), Some("on call"))
    );
    assert_eq!((room.created_by, room.last_seq), (alice, 0));
    assert_eq!(store.room(room.id).await.expect("room"), Some(room.clone()));
    assert_eq!(store.room(room.id + 100).await.expect("room"), None);

    let members: Vec<(UserId, Role)> = store
        .room_members(room.id)
        .await
        .expect("members")
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert_eq!(
        members,
        [
            (alice, Role::Owner),
            (bob, Role::Admin),
            (carol, Role::Member)
        ]
    );
    let bob_m = store
        .member(room.id, bob)
        .await
        .expect("member")
        .expect("bob");
    assert_eq!((bob_m.room_id, bob_m.role), (room.id, Role::Admin));
    let dave = user(&store, "dave").await;
    assert_eq!(store.member(room.id, dave).await.expect("member"), None);

    let second = group(&store, bob, &[]).await;
    let ids: Vec<i64> = store
        .list_rooms()
        .await
        .expect("list")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [room.id, second]);

    // A member that does not exist fails the whole creation.
    let bad = store
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: None,
                topic: None,
                created_by: alice,
            },
            &[(424_242, Role::Member)],
        )
        .await;
    assert_not_found(bad);
    assert_eq!(store.list_rooms().await.expect("list").len(), 2);
}

pub(super) async fn direct_room_exactly_once(store: Arc<dyn Store>, backend: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let (room, created) = store.direct_room(alice, bob).await.expect("direct");
    assert!(created);
    assert_eq!((room.kind, room.name.clone()), (RoomKind::Direct, None));
    let (again, created) = store.direct_room(bob, alice).await.expect("direct again");
    assert!(!created);
    assert_eq!(again.id, room.id);
    let members: Vec<UserId> = store
        .room_members(room.id)
        .await
        .expect("members")
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(members, [alice.min(bob), alice.max(bob)]);

    // Both users ask at once, from several stores ("nodes"), many times over.
    let carol = user(&store, "carol").await;
    let nodes = [store.clone(), backend.open().await, backend.open().await];
    let asks = (0..12).map(|i| {
        let node = nodes[i % nodes.len()].clone();
        let (a, b) = if i % 2 == 0 {
            (alice, carol)
        } else {
            (carol, alice)
        };
        async move { node.direct_room(a, b).await.expect("concurrent direct") }
    });
    let answers = join_all(asks).await;
    let ids: BTreeSet<i64> = answers.iter().map(|(r, _)| r.id).collect();
    assert_eq!(ids.len(), 1, "one room for the pair: {answers:?}");
    assert_eq!(answers.iter().filter(|(_, created)| *created).count(), 1);
    let directs = store
        .list_rooms()
        .await
        .expect("list")
        .iter()
        .filter(|r| r.kind == RoomKind::Direct)
        .count();
    assert_eq!(directs, 2);

    // The room list names the peer.
    let summaries = store.rooms_for_user(carol).await.expect("rooms");
    assert_eq!(summaries.len(), 1);
    assert_eq!(
        (summaries[0].peer, summaries[0].role),
        (Some(alice), Role::Member)
    );
    let peers: BTreeSet<Option<UserId>> = store
        .rooms_for_user(alice)
        .await
        .expect("rooms")
        .iter()
        .map(|s| s.peer)
        .collect();
    assert_eq!(peers, BTreeSet::from([Some(bob), Some(carol)]));
}

pub(super) async fn join_and_leave(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[]).await;
    let joined = append_ok(
        &store,
        vec![NewEvent::Join {
            room_id: room,
            actor_id: alice,
            user_id: bob,
            role: Role::Admin,
        }],
    )
    .await;
    let e = &joined[0].event;
    assert_eq!(
        (e.kind, e.sender_id, e.target, e.seq),
        (EventKind::MemberJoined, alice, Some(bob), 1)
    );
    assert_eq!(
        store
            .member(room, bob)
            .await
            .expect("member")
            .expect("bob")
            .role,
        Role::Admin
    );

    let again = store
        .append_events(&[NewEvent::Join {
            room_id: room,
            actor_id: alice,
            user_id: bob,
            role: Role::Member,
        }])
        .await
        .expect("batch");
    assert_conflict(again[0].clone_result(), "already_member");

    let left = append_ok(
        &store,
        vec![NewEvent::Leave {
            room_id: room,
            actor_id: bob,
            user_id: bob,
        }],
    )
    .await;
    let e = &left[0].event;
    assert_eq!(
        (e.kind, e.sender_id, e.target, e.seq),
        (EventKind::MemberLeft, bob, Some(bob), 2)
    );
    assert_eq!(store.member(room, bob).await.expect("member"), None);
    assert!(store.rooms_for_user(bob).await.expect("rooms").is_empty());

    let twice = store
        .append_events(&[NewEvent::Leave {
            room_id: room,
            actor_id: bob,
            user_id: bob,
        }])
        .await
        .expect("batch");
    assert_not_found(twice[0].clone_result());
    // Rejoining works and continues the log.
    let back = append_ok(
        &store,
        vec![NewEvent::Join {
            room_id: room,
            actor_id: alice,
            user_id: bob,
            role: Role::Member,
        }],
    )
    .await;
    assert_eq!(back[0].event.seq, 3);
}

pub(super) async fn read_cursors_and_unread(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;
    let mut alice_msgs = Vec::new();
    for i in 0..5 {
        alice_msgs.push(send(&store, room, alice, &format!("a{i}"), "from alice").await);
    }
    send(&store, room, bob, "b0", "from bob").await;
    send(&store, room, bob, "b1", "from bob").await;

    let summary = |u| {
        let store = store.clone();
        async move {
            let mut all = store.rooms_for_user(u).await.expect("rooms");
            assert_eq!(all.len(), 1);
            all.remove(0)
        }
    };
    let bob_view = summary(bob).await;
    assert_eq!(
        (bob_view.room.id, bob_view.role, bob_view.peer),
        (room, Role::Member, None)
    );
    assert_eq!(
        (bob_view.read_seq, bob_view.unread, bob_view.room.last_seq),
        (0, 5, 7)
    );
    let alice_view = summary(alice).await;
    assert_eq!(
        (alice_view.role, alice_view.unread),
        (Role::Owner, 2),
        "own messages don't count"
    );

    assert_eq!(
        store.set_read_cursor(bob, room, 3).await.expect("cursor"),
        3
    );
    assert_eq!(
        (summary(bob).await.read_seq, summary(bob).await.unread),
        (3, 2)
    );
    // Never backwards.
    assert_eq!(
        store.set_read_cursor(bob, room, 1).await.expect("cursor"),
        3
    );
    assert_eq!(summary(bob).await.read_seq, 3);
    // A deleted message is no longer unread; edits, deletes and joins never count.
    append_ok(
        &store,
        vec![
            NewEvent::Delete {
                room_id: room,
                sender_id: alice,
                target: alice_msgs[4],
            },
            NewEvent::Edit {
                room_id: room,
                sender_id: alice,
                target: alice_msgs[3],
                body: "edited".into(),
                metadata: Metadata::new(),
                mentions: Default::default(),
            },
        ],
    )
    .await;
    assert_eq!(summary(bob).await.unread, 1);
    // Beyond the end is clamped to the room's last seq, so later messages still count.
    assert_eq!(
        store
            .set_read_cursor(bob, room, 1_000)
            .await
            .expect("cursor"),
        9
    );
    assert_eq!(summary(bob).await.unread, 0);
    send(&store, room, alice, "a9", "new").await;
    assert_eq!(summary(bob).await.unread, 1);
    assert_not_found(store.set_read_cursor(bob, 9_999, 1).await);
}

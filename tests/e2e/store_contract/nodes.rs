//! Several stores ("nodes") on one database writing at the same time.

use super::*;

pub(super) async fn nodes_append_concurrently_without_gaps(
    store: Arc<dyn Store>,
    backend: Backend,
) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = group(&store, alice, &[bob]).await;
    let quiet = group(&store, bob, &[]).await;
    let mut nodes = vec![store.clone()];
    for _ in 0..3 {
        nodes.push(backend.open().await);
    }
    // Four nodes, three writers each, batches that mix the busy room with a second one.
    let writers = (0..12).map(|w| {
        let node = nodes[w % nodes.len()].clone();
        async move {
            let mut stored = Vec::new();
            for b in 0..5 {
                let mut batch: Vec<NewEvent> = (0..4)
                    .map(|i| {
                        msg(
                            room,
                            if i % 2 == 0 { alice } else { bob },
                            &format!("{w}-{b}-{i}"),
                            "x",
                        )
                    })
                    .collect();
                batch.push(msg(quiet, bob, &format!("q{w}-{b}"), "y"));
                for item in node.append_events(&batch).await.expect("batch") {
                    let appended = item.expect("item");
                    assert!(!appended.duplicate);
                    stored.push((appended.event.room_id, appended.event.seq));
                }
            }
            stored
        }
    });
    let stored: Vec<(i64, i64)> = join_all(writers).await.into_iter().flatten().collect();
    let mut room_seqs: Vec<i64> = stored
        .iter()
        .filter(|(r, _)| *r == room)
        .map(|(_, s)| *s)
        .collect();
    room_seqs.sort_unstable();
    assert_eq!(room_seqs, one_to(240), "acks are exactly 1..N");
    assert_eq!(
        seqs(&store, room).await,
        one_to(240),
        "stored seqs are exactly 1..N"
    );
    assert_eq!(seqs(&store, quiet).await, one_to(60));
}

pub(super) async fn same_send_from_two_nodes_is_stored_once(
    store: Arc<dyn Store>,
    backend: Backend,
) {
    let alice = user(&store, "alice").await;
    let room = group(&store, alice, &[]).await;
    let elsewhere = group(&store, alice, &[]).await;
    let nodes = [store.clone(), backend.open().await, backend.open().await];

    for round in 0..10 {
        let cmid = format!("retry-{round}");
        // Same room from every node; and (a confused client) the same id into another room,
        // which must not burn a seq there either.
        let sends = (0..6).map(|i| {
            let node = nodes[i % nodes.len()].clone();
            let target = if i == 5 { elsewhere } else { room };
            let item = msg(target, alice, &cmid, "once");
            async move {
                node.append_events(&[item])
                    .await
                    .expect("batch")
                    .remove(0)
                    .expect("item")
            }
        });
        let acks = join_all(sends).await;
        let ids: BTreeSet<i64> = acks.iter().map(|a| a.event.id).collect();
        assert_eq!(ids.len(), 1, "one event for {cmid}: {acks:?}");
        assert_eq!(acks.iter().filter(|a| !a.duplicate).count(), 1);
    }
    let total = seqs(&store, room).await.len() + seqs(&store, elsewhere).await.len();
    assert_eq!(total, 10);
    let last = store
        .room(room)
        .await
        .expect("room")
        .expect("room")
        .last_seq
        + store
            .room(elsewhere)
            .await
            .expect("room")
            .expect("room")
            .last_seq;
    assert_eq!(last, 10, "no seq burnt by a lost race");
    assert_eq!(
        seqs(&store, room).await,
        one_to(i64::try_from(seqs(&store, room).await.len()).expect("len"))
    );
}

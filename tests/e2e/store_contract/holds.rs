//! Legal holds in the store, as a property: for random histories of posts, edits, deletes,
//! retention runs, holds and releases, every text that was replaced while a hold covered its message is
//! still there (in the kept versions), and what users see is the latest text.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use switchboard::store::{Metadata, NewEvent, NewHold, Store, now_millis};

use super::{Backend, append_ok, group, send, user};

#[derive(Debug, Clone)]
enum Op {
    Post(usize),
    Edit(usize),
    Delete(usize),
    Hold(usize),
    Release(usize),
    /// A retention run two days ahead with a one-day policy: every message not held goes.
    Retention,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..2).prop_map(Op::Post),
        3 => (0usize..16).prop_map(Op::Edit),
        2 => (0usize..16).prop_map(Op::Delete),
        1 => (0usize..2).prop_map(Op::Hold),
        1 => (0usize..4).prop_map(Op::Release),
        1 => Just(Op::Retention),
    ]
}

/// One message as the oracle sees it.
struct Tracked {
    id: i64,
    room: usize,
    current: String,
    deleted: bool,
    /// Texts replaced while a hold covered the message: they must be kept.
    must_keep: Vec<String>,
}

pub(super) async fn holds_keep_what_they_cover(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let rooms = [
        group(&store, alice, &[]).await,
        group(&store, alice, &[]).await,
    ];
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let histories = proptest::collection::vec(op(), 1..40);
    let mut checked = 0;
    for history in 0..32 {
        let ops = histories.new_tree(&mut runner).expect("case").current();
        let mut messages: Vec<Tracked> = Vec::new();
        // Hold id -> room index, for the holds still active.
        let mut holds: BTreeMap<i64, usize> = BTreeMap::new();
        let mut all_holds: Vec<i64> = Vec::new();
        for (step, op) in ops.iter().enumerate() {
            let covered =
                |room: usize, holds: &BTreeMap<i64, usize>| holds.values().any(|r| *r == room);
            match *op {
                Op::Post(room) => {
                    let body = format!("h{history}-s{step}-post");
                    let id = send(
                        &store,
                        rooms[room],
                        alice,
                        &format!("c{history}-{step}"),
                        &body,
                    )
                    .await;
                    messages.push(Tracked {
                        id,
                        room,
                        current: body,
                        deleted: false,
                        must_keep: Vec::new(),
                    });
                }
                Op::Edit(i) | Op::Delete(i)
                    if messages.is_empty() || messages[i % messages.len()].deleted => {}
                Op::Edit(i) => {
                    let n = messages.len();
                    let m = &mut messages[i % n];
                    let body = format!("h{history}-s{step}-edit");
                    append_ok(
                        &store,
                        vec![NewEvent::Edit {
                            room_id: rooms[m.room],
                            sender_id: alice,
                            target: m.id,
                            body: body.clone(),
                            metadata: Metadata::new(),
                            mentions: Default::default(),
                        }],
                    )
                    .await;
                    if covered(m.room, &holds) {
                        m.must_keep.push(m.current.clone());
                    }
                    m.current = body;
                }
                Op::Delete(i) => {
                    let n = messages.len();
                    let m = &mut messages[i % n];
                    append_ok(
                        &store,
                        vec![NewEvent::Delete {
                            room_id: rooms[m.room],
                            sender_id: alice,
                            target: m.id,
                        }],
                    )
                    .await;
                    if covered(m.room, &holds) {
                        m.must_keep.push(m.current.clone());
                    }
                    m.deleted = true;
                }
                Op::Hold(room) => {
                    let hold = store
                        .create_hold(&NewHold {
                            name: format!("h{history}-{step}"),
                            rooms: vec![rooms[room]],
                            created_by: alice,
                            ..NewHold::default()
                        })
                        .await
                        .expect("hold");
                    holds.insert(hold.id, room);
                    all_holds.push(hold.id);
                }
                Op::Retention => {
                    let config = switchboard::config::ComplianceConfig {
                        retention_days: 1,
                        ..switchboard::config::ComplianceConfig::default()
                    };
                    let two_days_ahead = now_millis() + 2 * 86_400_000;
                    switchboard::retention::run_at(
                        store.as_ref(),
                        &config,
                        two_days_ahead,
                        switchboard::audit::Actor::System,
                    )
                    .await
                    .expect("retention");
                    for m in messages.iter_mut().filter(|m| !m.deleted) {
                        if !covered(m.room, &holds) {
                            // Erased for real: nothing of it needs to stay.
                            m.deleted = true;
                            m.must_keep.clear();
                        }
                    }
                }
                Op::Release(i) => {
                    if all_holds.is_empty() {
                        continue;
                    }
                    let id = all_holds[i % all_holds.len()];
                    if holds.remove(&id).is_some() {
                        // Effective at once (a confirmed release); 1 ms back so `now` in
                        // the next write is past it.
                        let now = now_millis() - 1;
                        store
                            .set_hold_release(id, alice, now, now)
                            .await
                            .expect("release");
                    }
                }
            }
        }
        for m in &messages {
            let kept: Vec<String> = store
                .message_versions(m.id)
                .await
                .expect("versions")
                .into_iter()
                .filter_map(|v| v.body)
                .collect();
            checked += m.must_keep.len();
            for text in &m.must_keep {
                assert!(
                    kept.contains(text),
                    "history {history}: {text:?} lost; kept {kept:?}; ops {ops:?}"
                );
            }
            let event = store.event(m.id).await.expect("event").expect("exists");
            assert_eq!(event.deleted, m.deleted);
            if !m.deleted {
                assert_eq!(event.body.as_deref(), Some(m.current.as_str()));
            } else {
                assert!(
                    event.body.is_none(),
                    "a deleted message shows no text to users"
                );
            }
        }
        // Release every hold still active before the next history.
        for id in std::mem::take(&mut holds).into_keys() {
            let now = now_millis() - 1;
            store
                .set_hold_release(id, alice, now, now)
                .await
                .expect("release");
        }
    }
    assert!(
        checked >= 10,
        "the histories must replace held texts to test anything: {checked}"
    );
}

//! Users and login sessions.

use super::*;

pub(super) async fn users(store: Arc<dyn Store>, _: Backend) {
    store.ping().await.expect("ping");
    assert!(
        store
            .size_bytes()
            .await
            .expect("size")
            .is_some_and(|n| n > 0)
    );
    assert_eq!(store.count_users().await.expect("count"), 0);

    let alice = store
        .create_user(NewUser {
            name: "alice".into(),
            display_name: "Alice".into(),
            password_hash: Some("$argon2id$x".into()),
            is_admin: true,
            is_bot: false,
        })
        .await
        .expect("alice");
    assert_eq!(
        (alice.name.as_str(), alice.display_name.as_str()),
        ("alice", "Alice")
    );
    assert!(alice.is_admin && !alice.is_bot && alice.active);
    assert!((now_millis() - alice.created_at).abs() < 60_000);

    let bot = store
        .create_user(NewUser {
            name: "bot".into(),
            display_name: "Bot".into(),
            password_hash: None,
            is_admin: false,
            is_bot: true,
        })
        .await
        .expect("bot");
    let again = store
        .create_user(NewUser {
            name: "alice".into(),
            display_name: "Other".into(),
            password_hash: None,
            is_admin: false,
            is_bot: false,
        })
        .await;
    assert_conflict(again, "user_exists");
    assert_eq!(store.count_users().await.expect("count"), 2);

    assert_eq!(
        store.user_by_id(alice.id).await.expect("by id"),
        Some(alice.clone())
    );
    assert_eq!(
        store.user_by_id(alice.id + 1000).await.expect("by id"),
        None
    );
    let (found, hash) = store
        .user_by_name("alice")
        .await
        .expect("by name")
        .expect("alice");
    assert_eq!(
        (found, hash.as_deref()),
        (alice.clone(), Some("$argon2id$x"))
    );
    let (_, bot_hash) = store
        .user_by_name("bot")
        .await
        .expect("by name")
        .expect("bot");
    assert_eq!(bot_hash, None);
    assert_eq!(store.user_by_name("nobody").await.expect("by name"), None);

    let names: Vec<String> = store
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bot"]);

    store
        .set_user_active(bot.id, false)
        .await
        .expect("deactivate");
    assert!(
        !store
            .user_by_id(bot.id)
            .await
            .expect("get")
            .expect("bot")
            .active
    );
    store
        .set_password_hash(alice.id, "new-hash")
        .await
        .expect("set hash");
    let (_, hash) = store
        .user_by_name("alice")
        .await
        .expect("by name")
        .expect("alice");
    assert_eq!(hash.as_deref(), Some("new-hash"));
    assert_not_found(store.set_user_active(9999, false).await);
    assert_not_found(store.set_password_hash(9999, "x").await);
}

pub(super) async fn sessions(store: Arc<dyn Store>, _: Backend) {
    let alice = user(&store, "alice").await;
    let now = now_millis();
    let session = |id: &str, expires_at| Session {
        id: id.into(),
        user_id: alice,
        refresh_hash: format!("{id}-r0"),
        created_at: now,
        expires_at,
        revoked: false,
    };
    let s1 = session("s1", now + 3_600_000);
    store.create_session(&s1).await.expect("s1");
    store
        .create_session(&session("s2", now + 3_600_000))
        .await
        .expect("s2");
    store
        .create_session(&session("old", now - 1))
        .await
        .expect("expired");
    assert_eq!(store.session("s1").await.expect("get"), Some(s1.clone()));
    assert_eq!(store.session("nope").await.expect("get"), None);

    // Rotation: the current hash works once; a replay of it is refused.
    let later = now + 7_200_000;
    assert!(
        store
            .rotate_refresh("s1", "s1-r0", "s1-r1", later)
            .await
            .expect("rotate")
    );
    assert!(
        !store
            .rotate_refresh("s1", "s1-r0", "s1-r2", later)
            .await
            .expect("replay")
    );
    let rotated = store.session("s1").await.expect("get").expect("s1");
    assert_eq!(
        (rotated.refresh_hash.as_str(), rotated.expires_at),
        ("s1-r1", later)
    );
    assert!(
        store
            .rotate_refresh("s1", "s1-r1", "s1-r2", later)
            .await
            .expect("rotate again")
    );
    // An expired session cannot be refreshed.
    assert!(
        !store
            .rotate_refresh("old", "old-r0", "old-r1", later)
            .await
            .expect("expired")
    );

    // Revocation ends refreshes.
    store.revoke_session("s1").await.expect("revoke");
    store
        .revoke_session("s1")
        .await
        .expect("revoke is idempotent");
    assert!(store.session("s1").await.expect("get").expect("s1").revoked);
    assert!(
        !store
            .rotate_refresh("s1", "s1-r2", "s1-r3", later)
            .await
            .expect("revoked")
    );

    // Revoking a user's sessions returns only those that were still live.
    let ids = store.revoke_user_sessions(alice).await.expect("revoke all");
    assert_eq!(ids, ["s2"]);
    assert!(store.session("s2").await.expect("get").expect("s2").revoked);
    assert!(
        store
            .revoke_user_sessions(alice)
            .await
            .expect("again")
            .is_empty()
    );
}

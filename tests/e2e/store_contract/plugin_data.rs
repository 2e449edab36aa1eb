//! Plugin key/value storage and the audit log.

use super::*;

pub(super) async fn plugin_kv(store: Arc<dyn Store>, _: Backend) {
    assert_eq!(store.kv_get("p", "k").await.expect("get"), None);
    store.kv_put("p", "k", b"v1").await.expect("put");
    assert_eq!(
        store.kv_get("p", "k").await.expect("get").as_deref(),
        Some(&b"v1"[..])
    );
    store
        .kv_put("p", "k", &[0, 255, 0])
        .await
        .expect("overwrite with binary");
    assert_eq!(
        store.kv_get("p", "k").await.expect("get").as_deref(),
        Some(&[0u8, 255, 0][..])
    );
    // Namespaces are per plugin.
    assert_eq!(store.kv_get("q", "k").await.expect("get"), None);

    for key in [
        "user:2", "user:10", "user:1", "users", "usex", "room:1", "user%", "user_",
    ] {
        store.kv_put("p", key, key.as_bytes()).await.expect("put");
    }
    store
        .kv_put("q", "user:99", b"other plugin")
        .await
        .expect("put");
    let keys = store.kv_keys("p", "user:", 100).await.expect("keys");
    assert_eq!(keys, ["user:1", "user:10", "user:2"]);
    assert_eq!(
        store.kv_keys("p", "user:", 2).await.expect("keys"),
        ["user:1", "user:10"]
    );
    // `%` and `_` are plain characters, not patterns.
    assert_eq!(
        store.kv_keys("p", "user%", 100).await.expect("keys"),
        ["user%"]
    );
    assert_eq!(
        store.kv_keys("p", "user_", 100).await.expect("keys"),
        ["user_"]
    );
    let all = store.kv_keys("p", "", 100).await.expect("keys");
    assert_eq!(all.len(), 9);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted: {all:?}");

    assert!(store.kv_delete("p", "user:1").await.expect("delete"));
    assert!(!store.kv_delete("p", "user:1").await.expect("delete again"));
    assert_eq!(store.kv_get("p", "user:1").await.expect("get"), None);
    assert_eq!(
        store.kv_keys("p", "user:", 100).await.expect("keys"),
        ["user:10", "user:2"]
    );
}

pub(super) async fn audit(store: Arc<dyn Store>, _: Backend) {
    assert!(store.recent_audit(10).await.expect("recent").is_empty());
    for i in 0..3 {
        store
            .append_audit(
                "plugin:dlp",
                "plugin.reject",
                &format!("room:{i}"),
                &serde_json::json!({ "rule": "card-number", "n": i, "nested": { "ok": true } }),
            )
            .await
            .expect("append");
    }
    store
        .append_audit(
            "system",
            "user.deactivate",
            "user:7",
            &serde_json::json!({}),
        )
        .await
        .expect("append");
    let recent = store.recent_audit(3).await.expect("recent");
    let subjects: Vec<&str> = recent.iter().map(|r| r.subject.as_str()).collect();
    assert_eq!(subjects, ["user:7", "room:2", "room:1"]);
    assert_eq!(
        (recent[0].actor.as_str(), recent[0].action.as_str()),
        ("system", "user.deactivate")
    );
    assert_eq!(
        recent[1].detail,
        serde_json::json!({ "rule": "card-number", "n": 2, "nested": { "ok": true } })
    );
    assert!(recent[0].id > recent[1].id);
    assert!((now_millis() - recent[0].at).abs() < 60_000);
}

/// The language model's daily token counts: per person and per room, added atomically
/// (concurrent calls lose nothing), listed heaviest first, old days pruned.
pub(super) async fn llm_usage_counts(store: Arc<dyn Store>, _: Backend) {
    assert_eq!(store.llm_usage(100, "user", 1).await.expect("read"), 0);
    let adds = (0..20).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.add_llm_usage(100, "user", 1, 7).await })
    });
    for add in adds {
        add.await.expect("task").expect("add");
    }
    store.add_llm_usage(100, "room", 1, 500).await.expect("add");
    store.add_llm_usage(99, "user", 1, 1000).await.expect("add");
    assert_eq!(store.llm_usage(100, "user", 1).await.expect("read"), 140);
    assert_eq!(store.llm_usage(100, "room", 1).await.expect("read"), 500);
    assert_eq!(store.llm_usage(100, "user", 2).await.expect("read"), 0);
    assert_eq!(
        store.llm_usage_of_day(100).await.expect("day"),
        [("room".to_string(), 1, 500), ("user".to_string(), 1, 140)]
    );
    assert_eq!(store.prune_llm_usage(100).await.expect("prune"), 1);
    assert_eq!(store.llm_usage(99, "user", 1).await.expect("read"), 0);
    assert_eq!(store.llm_usage(100, "user", 1).await.expect("read"), 140);
}

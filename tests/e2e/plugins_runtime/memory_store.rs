//! The plugin runtime's tests run on the real SQLite store, in memory: nothing on disk, and
//! no second implementation of the store to keep in step.

use std::sync::Arc;

use switchboard::store::sqlite::SqliteStore;
use switchboard::store::{Store, StoreOptions};

pub async fn memory_store() -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open("sqlite::memory:", &StoreOptions::default())
            .await
            .expect("in-memory SQLite"),
    )
}

/// A plugin's `kv` value as text.
pub async fn kv_value(store: &dyn Store, plugin: &str, key: &str) -> Option<String> {
    store
        .kv_get(plugin, key)
        .await
        .expect("kv_get")
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Every key of a plugin's `kv` namespace.
pub async fn kv_keys_of(store: &dyn Store, plugin: &str) -> Vec<String> {
    store.kv_keys(plugin, "", 100_000).await.expect("kv_keys")
}

//! The `kv` capability: one namespace per plugin, held in memory and written behind to the
//! server's `Store`.
//!
//! Why not call the `Store` from the import? Host imports run synchronously inside a wasm
//! call, on the tokio worker that is running the router's hook chain. A database round trip
//! there would block that worker on I/O (or need `block_on` inside the runtime, which
//! panics or deadlocks). Instead the namespace is loaded once when the plugin loads, reads
//! are served from memory, and every write marks its key dirty; a tokio task writes dirty
//! keys to the store (coalescing repeated writes of a key) and `PluginHost::shutdown`
//! flushes what is left. The namespace is bounded (keys, key and value size), so the memory
//! it takes is bounded too. The cost: a write made in the last moments before a crash (not
//! a clean shutdown) can be lost. Plugins use kv for counters and findings summaries, where
//! that is the right trade; anything that must be durable with the message belongs in the
//! message's metadata, which is stored in the same transaction as the message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::capabilities::CapError as HostError;
use super::manifest::Manifest;
use super::{PluginError, lock};
use crate::store::Store;

/// One plugin's namespace.
pub(crate) struct KvSpace {
    plugin: String,
    max_keys: usize,
    max_key_bytes: usize,
    max_value_bytes: usize,
    state: std::sync::Mutex<State>,
    dirty: Notify,
    closing: AtomicBool,
}

#[derive(Default)]
struct State {
    map: BTreeMap<String, Vec<u8>>,
    /// Keys changed since the writer last ran: `Some` = put, `None` = delete.
    pending: BTreeMap<String, Option<Vec<u8>>>,
}

/// The write-behind task of one namespace.
pub(crate) struct KvWriter {
    space: Arc<KvSpace>,
    task: JoinHandle<()>,
}

impl KvSpace {
    /// Load the plugin's namespace from `store` and start its writer.
    pub(crate) async fn load(
        manifest: &Manifest,
        store: Arc<dyn Store>,
    ) -> Result<(Arc<KvSpace>, KvWriter), PluginError> {
        let name = manifest.name.clone();
        let limits = &manifest.limits;
        let err = |e: crate::store::StoreError| PluginError::Kv {
            name: name.clone(),
            message: e.to_string(),
        };
        let cap = u32::try_from(limits.kv_max_keys.saturating_add(1)).unwrap_or(u32::MAX);
        let keys = store.kv_keys(&name, "", cap).await.map_err(err)?;
        if keys.len() > limits.kv_max_keys {
            tracing::warn!(
                plugin = %name,
                max_keys = limits.kv_max_keys,
                "kv namespace holds more keys than the plugin's limit; new keys will be refused"
            );
        }
        let mut map = BTreeMap::new();
        for key in keys {
            if let Some(value) = store.kv_get(&name, &key).await.map_err(err)? {
                map.insert(key, value);
            }
        }
        let space = Arc::new(KvSpace {
            plugin: name,
            max_keys: limits.kv_max_keys,
            max_key_bytes: limits.kv_max_key_bytes,
            max_value_bytes: limits.kv_max_value_bytes,
            state: std::sync::Mutex::new(State {
                map,
                pending: BTreeMap::new(),
            }),
            dirty: Notify::new(),
            closing: AtomicBool::new(false),
        });
        let task = tokio::spawn(write_behind(space.clone(), store));
        Ok((space.clone(), KvWriter { space, task }))
    }

    fn check_key(&self, key: &str) -> Result<(), HostError> {
        if key.is_empty() {
            return Err(HostError::InvalidArgument("empty key".into()));
        }
        if key.len() > self.max_key_bytes {
            return Err(HostError::TooLarge);
        }
        Ok(())
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.check_key(key)?;
        Ok(lock(&self.state).map.get(key).cloned())
    }

    pub(crate) fn set(&self, key: String, value: Vec<u8>) -> Result<(), HostError> {
        self.check_key(&key)?;
        if value.len() > self.max_value_bytes {
            return Err(HostError::TooLarge);
        }
        let mut state = lock(&self.state);
        if !state.map.contains_key(&key) && state.map.len() >= self.max_keys {
            return Err(HostError::QuotaExceeded);
        }
        state.map.insert(key.clone(), value.clone());
        state.pending.insert(key, Some(value));
        drop(state);
        self.dirty.notify_one();
        Ok(())
    }

    pub(crate) fn delete(&self, key: &str) -> Result<bool, HostError> {
        self.check_key(key)?;
        let mut state = lock(&self.state);
        let existed = state.map.remove(key).is_some();
        if existed {
            state.pending.insert(key.to_string(), None);
            drop(state);
            self.dirty.notify_one();
        }
        Ok(existed)
    }

    pub(crate) fn keys(&self, prefix: &str, limit: u32) -> Result<Vec<String>, HostError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let state = lock(&self.state);
        Ok(state
            .map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }

    pub(crate) fn increment(&self, key: String, delta: i64) -> Result<i64, HostError> {
        self.check_key(&key)?;
        let mut state = lock(&self.state);
        let current = match state.map.get(&key) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    HostError::InvalidArgument("value is not a decimal counter".into())
                })?,
        };
        if !state.map.contains_key(&key) && state.map.len() >= self.max_keys {
            return Err(HostError::QuotaExceeded);
        }
        let next = current.saturating_add(delta);
        let value = next.to_string().into_bytes();
        state.map.insert(key.clone(), value.clone());
        state.pending.insert(key, Some(value));
        drop(state);
        self.dirty.notify_one();
        Ok(next)
    }

    fn take_pending(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        std::mem::take(&mut lock(&self.state).pending)
    }

    /// Put back writes that failed, unless the key was written again meanwhile.
    fn requeue(&self, failed: BTreeMap<String, Option<Vec<u8>>>) {
        let mut state = lock(&self.state);
        for (key, value) in failed {
            state.pending.entry(key).or_insert(value);
        }
    }
}

impl KvWriter {
    /// Write everything pending and stop the writer.
    pub(crate) async fn flush_and_stop(self) {
        self.space.closing.store(true, Ordering::SeqCst);
        self.space.dirty.notify_one();
        if let Err(e) = self.task.await {
            tracing::error!(plugin = %self.space.plugin, error = %e, "kv writer task failed");
        }
    }
}

async fn write_behind(space: Arc<KvSpace>, store: Arc<dyn Store>) {
    loop {
        let closing = space.closing.load(Ordering::SeqCst);
        let batch = space.take_pending();
        if batch.is_empty() {
            if closing {
                return;
            }
            space.dirty.notified().await;
            continue;
        }
        let mut failed = BTreeMap::new();
        for (key, value) in batch {
            let result = match &value {
                Some(bytes) => store.kv_put(&space.plugin, &key, bytes).await,
                None => store.kv_delete(&space.plugin, &key).await.map(|_| ()),
            };
            if let Err(e) = result {
                tracing::error!(plugin = %space.plugin, key = %key, error = %e, "kv write failed");
                failed.insert(key, value);
            }
        }
        if !failed.is_empty() {
            if closing {
                tracing::error!(
                    plugin = %space.plugin,
                    lost = failed.len(),
                    "kv writes could not be flushed at shutdown"
                );
                return;
            }
            space.requeue(failed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

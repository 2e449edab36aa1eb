//! The `kv` capability: one namespace per plugin, held in memory and written behind to the
//! server's `Store`.
//!
//! Why not call the `Store` from the import? Host imports run synchronously inside a wasm
//! call, on the tokio worker that is running the router's hook chain. A database round trip
//! there would block that worker on I/O (or need `block_on` inside the runtime, which
//! panics or deadlocks). Instead the namespace is loaded once when the plugin loads, reads
//! are served from memory, and every write marks its key dirty; a tokio task writes dirty
//! keys to the store (coalescing repeated writes of a key) and `PluginHost::shutdown`
//! flushes what is left. The namespace is bounded in keys, key and value size **and total
//! bytes** (`kv_max_bytes`), so the memory it takes is bounded too. The cost of writing
//! behind: a write made in the last moments before a crash (not a clean shutdown) can be
//! lost. Plugins use kv for counters and findings summaries, where that is the right trade;
//! anything that must be durable with the message belongs in the message's metadata, which
//! is stored in the same transaction as the message.
//!
//! Writes are **per call**: a hook call writes into its own [`KvTxn`], which reads through
//! to the namespace and is committed only when the call succeeds. A call that traps, times
//! out or is refused leaves nothing behind, so a failure cannot half-update a plugin's
//! state (and a plugin cannot use writes that outlive its own timeout as a side channel).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::CapError as HostError;
use crate::plugins::manifest::Manifest;
use crate::plugins::{PluginError, lock};
use crate::store::Store;

/// One plugin's namespace.
pub(crate) struct KvSpace {
    plugin: String,
    max_keys: usize,
    max_key_bytes: usize,
    max_value_bytes: usize,
    max_bytes: usize,
    state: std::sync::Mutex<State>,
    dirty: Notify,
    closing: AtomicBool,
}

#[derive(Default)]
struct State {
    map: BTreeMap<String, Vec<u8>>,
    /// Key plus value bytes of everything in `map`.
    bytes: usize,
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
        let mut bytes = 0;
        for key in keys {
            if let Some(value) = store.kv_get(&name, &key).await.map_err(err)? {
                bytes += key.len() + value.len();
                map.insert(key, value);
            }
        }
        if bytes > limits.kv_max_bytes {
            tracing::warn!(
                plugin = %name,
                bytes,
                max_bytes = limits.kv_max_bytes,
                "kv namespace holds more bytes than the plugin's limit; growing writes will be refused"
            );
        }
        let space = Arc::new(KvSpace {
            plugin: name,
            max_keys: limits.kv_max_keys,
            max_key_bytes: limits.kv_max_key_bytes,
            max_value_bytes: limits.kv_max_value_bytes,
            max_bytes: limits.kv_max_bytes,
            state: std::sync::Mutex::new(State {
                map,
                bytes,
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

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.state).map.get(key).cloned()
    }

    fn value_len(&self, key: &str) -> Option<usize> {
        lock(&self.state).map.get(key).map(Vec::len)
    }

    /// Keys and bytes the namespace holds now.
    fn usage(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.map.len(), state.bytes)
    }

    /// Apply a successful call's writes, all or nothing. The quota is checked again here:
    /// calls running side by side each checked against what was committed when they wrote.
    pub(crate) fn commit(&self, txn: KvTxn) -> Result<(), HostError> {
        if txn.writes.is_empty() {
            return Ok(());
        }
        let mut state = lock(&self.state);
        let (mut keys, mut bytes) = (state.map.len(), state.bytes);
        for (key, value) in &txn.writes {
            if let Some(old) = state.map.get(key) {
                bytes -= key.len() + old.len();
                keys -= 1;
            }
            if let Some(value) = value {
                bytes += key.len() + value.len();
                keys += 1;
            }
        }
        let grows_keys = keys > state.map.len();
        let grows_bytes = bytes > state.bytes;
        if (grows_keys && keys > self.max_keys) || (grows_bytes && bytes > self.max_bytes) {
            return Err(HostError::QuotaExceeded);
        }
        let mut changed = false;
        for (key, value) in txn.writes {
            // A write of what is already there changes nothing and costs the store nothing
            // (a plugin rewriting the same 64 KiB on every message must not become a
            // database write per message).
            if state.map.get(&key) == value.as_ref() {
                continue;
            }
            match &value {
                Some(v) => {
                    state.map.insert(key.clone(), v.clone());
                }
                None => {
                    state.map.remove(&key);
                }
            }
            state.pending.insert(key, value);
            changed = true;
        }
        state.bytes = bytes;
        drop(state);
        if changed {
            self.dirty.notify_one();
        }
        Ok(())
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

/// One hook call's view of its plugin's namespace: reads see the call's own writes first,
/// writes stay here until [`KvSpace::commit`]. Quotas are checked as the call writes
/// (against what is committed plus this call's writes), so the plugin gets `TooLarge` /
/// `QuotaExceeded` at the write that crosses a limit.
#[derive(Default)]
pub(crate) struct KvTxn {
    /// Key → `Some(value)` written, `None` deleted.
    writes: BTreeMap<String, Option<Vec<u8>>>,
    keys_delta: isize,
    bytes_delta: isize,
}

impl KvTxn {
    /// The value `key` has in this call's view.
    fn current(&self, space: &KvSpace, key: &str) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(value) => value.clone(),
            None => space.get(key),
        }
    }

    /// The length of that value (without copying it).
    fn current_len(&self, space: &KvSpace, key: &str) -> Option<usize> {
        match self.writes.get(key) {
            Some(value) => value.as_ref().map(Vec::len),
            None => space.value_len(key),
        }
    }

    pub(crate) fn get(&self, space: &KvSpace, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        space.check_key(key)?;
        Ok(self.current(space, key))
    }

    pub(crate) fn set(
        &mut self,
        space: &KvSpace,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), HostError> {
        space.check_key(&key)?;
        if value.len() > space.max_value_bytes {
            return Err(HostError::TooLarge);
        }
        let old = self.current_len(space, &key);
        let keys_delta = if old.is_none() { 1 } else { 0 };
        let bytes_delta =
            signed(key.len() + value.len()) - old.map_or(0, |old| signed(key.len() + old));
        let (keys, bytes) = space.usage();
        if keys_delta > 0 && signed(keys) + self.keys_delta + keys_delta > signed(space.max_keys) {
            return Err(HostError::QuotaExceeded);
        }
        if bytes_delta > 0
            && signed(bytes) + self.bytes_delta + bytes_delta > signed(space.max_bytes)
        {
            return Err(HostError::QuotaExceeded);
        }
        self.keys_delta += keys_delta;
        self.bytes_delta += bytes_delta;
        self.writes.insert(key, Some(value));
        Ok(())
    }

    pub(crate) fn delete(&mut self, space: &KvSpace, key: &str) -> Result<bool, HostError> {
        space.check_key(key)?;
        let Some(old) = self.current_len(space, key) else {
            return Ok(false);
        };
        self.keys_delta -= 1;
        self.bytes_delta -= signed(key.len() + old);
        self.writes.insert(key.to_string(), None);
        Ok(true)
    }

    pub(crate) fn keys(
        &self,
        space: &KvSpace,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, HostError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let state = lock(&space.state);
        let committed = state
            .map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k);
        let written = self
            .writes
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k);
        let mut keys: Vec<&String> = committed
            .filter(|k| !matches!(self.writes.get(*k), Some(None)))
            .chain(written)
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys.into_iter().take(limit).cloned().collect())
    }

    pub(crate) fn increment(
        &mut self,
        space: &KvSpace,
        key: String,
        delta: i64,
    ) -> Result<i64, HostError> {
        let current = match self.get(space, &key)? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    HostError::InvalidArgument("value is not a decimal counter".into())
                })?,
        };
        let next = current.saturating_add(delta);
        self.set(space, key, next.to_string().into_bytes())?;
        Ok(next)
    }
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
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

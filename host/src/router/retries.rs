//! "Is this send a retry?", asked for many sends at once.
//!
//! With a `message-pre-send` plugin in the path, the router looks a send's
//! `(sender, client_msg_id)` up in the store before the plugins run, so that a retry is
//! answered with its original and the plugins see each message once (their counters, flags
//! and bot posts are not repeated). Asked one send at a time, that lookup was the whole
//! measured cost of a plugin in the path: not the query, but the hop to a database thread
//! and back for every message (`docs/benchmarks.md`, "Message path, third step").
//!
//! Like group commit, one task takes every lookup queued and asks the store once for all of
//! them; while that query runs, the next lookups queue up. Under load many sends share one
//! hop; alone, a send pays one extra task hop. One batch at a time is deliberate: with four
//! in flight, batches stayed small and most of the saving was lost (`docs/benchmarks.md`).
//!
//! Before any of that, the store may know without a read that the key is new (SQLite keeps
//! every stored key in a Bloom filter, `store::sqlite_sent_keys`): then there is no lookup
//! at all, which is the common case of a new message.
//!
//! Whatever goes wrong here (the queue full, the batch query failing, the task gone), the
//! send falls back to its own lookup, so it gets the store's answer or the store's own
//! error, never a different one.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Event, Store, StoreResult, UserId};

/// Most lookups one batch takes (the store splits them into statements of its own size).
const LOOKUPS_PER_BATCH: usize = 256;
/// Lookups waiting for the task; past it a send looks up on its own instead of waiting.
const QUEUE: usize = 4096;

struct Lookup {
    sender: UserId,
    client_msg_id: String,
    /// `Err(())`: the batch failed; the send asks on its own.
    reply: oneshot::Sender<Result<Option<Event>, ()>>,
}

/// The sending side of the lookup task; the task stops when this is dropped.
pub(crate) struct RetryLookups {
    store: Arc<dyn Store>,
    tx: mpsc::Sender<Lookup>,
}

impl RetryLookups {
    /// Start the task (needs a tokio runtime).
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(Arc::clone(&store), rx));
        Self { store, tx }
    }

    /// The stored event of this send, if it was stored before.
    pub(crate) async fn original(
        &self,
        sender: UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<Event>> {
        if !self.store.may_hold_client_msg_id(sender, client_msg_id) {
            // Known new without a read (SQLite's filter, `store::sqlite_sent_keys`).
            return Ok(None);
        }
        let (reply, answer) = oneshot::channel();
        let lookup = Lookup {
            sender,
            client_msg_id: client_msg_id.to_string(),
            reply,
        };
        if self.tx.try_send(lookup).is_ok()
            && let Ok(Ok(found)) = answer.await
        {
            return Ok(found);
        }
        self.store
            .event_by_client_msg_id(sender, client_msg_id)
            .await
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Lookup>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < LOOKUPS_PER_BATCH {
            match rx.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        answer(store.as_ref(), batch).await;
    }
}

async fn answer(store: &dyn Store, batch: Vec<Lookup>) {
    let keys: Vec<(UserId, &str)> = batch
        .iter()
        .map(|l| (l.sender, l.client_msg_id.as_str()))
        .collect();
    match store.events_by_client_msg_ids(&keys).await {
        Ok(found) => {
            let by_key: HashMap<(UserId, String), Event> = found
                .into_iter()
                .filter_map(|event| {
                    let key = (event.sender_id, event.client_msg_id.clone()?);
                    Some((key, event))
                })
                .collect();
            for lookup in batch {
                // `get`, not `remove`: two retries of one send may share a batch.
                let event = by_key.get(&(lookup.sender, lookup.client_msg_id)).cloned();
                let _ = lookup.reply.send(Ok(event));
            }
        }
        Err(err) => {
            tracing::debug!(error = %err, "batched retry lookup failed; each send asks on its own");
            for lookup in batch {
                let _ = lookup.reply.send(Err(()));
            }
        }
    }
}

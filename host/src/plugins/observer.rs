//! `message-delivered` observers: the router hands over an event and returns at once; each
//! observing plugin has **its own** bounded queue and task, so a slow or stuck observer
//! delays and drops only its own events. A full queue drops the event for that plugin and
//! counts it (`switchboard_plugin_observer_dropped_by_plugin_total{plugin}` and the
//! plugin's `observer_dropped` counter), never grows.
//!
//! The router hands over only the event: the room (as the observer sees it) is read by the
//! plugin's queue task, after the sender has had its ack, never on the message path.
//!
//! Each call is bounded by the plugin's `observer_timeout_ms` wall-clock budget, so even an
//! observer that waits forever frees its queue again after that; and plugin calls yield to
//! the scheduler on every epoch tick, so a runaway observer occupies a tokio worker for at
//! most a tick at a time. Events for one plugin are observed in delivery order.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::{Sender, error::TrySendError};
use tokio::task::JoinHandle;

use super::chain::ChainCell;
use super::instance::{LoadedPlugin, Request};
use super::lock;
use super::metrics::{Counters, Metrics};
use crate::router::hooks::HookKind;
use crate::store::{Event, Store};

type Delivery = (Arc<Event>, u32);

/// One observing plugin's queue and the task draining it.
struct PluginQueue {
    sender: Sender<Delivery>,
    task: JoinHandle<()>,
}

pub(crate) struct Observer {
    chain: Arc<ChainCell>,
    /// For the room of each event, read by the queue tasks.
    store: Arc<dyn Store>,
    capacity: usize,
    /// By plugin name: a reloaded plugin keeps its queue (and what is queued in it).
    queues: Mutex<HashMap<String, PluginQueue>>,
    /// Set at shutdown: no new queue is started.
    closed: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
}

impl Observer {
    pub(crate) fn new(
        chain: Arc<ChainCell>,
        store: Arc<dyn Store>,
        capacity: usize,
        metrics: &Arc<Metrics>,
    ) -> Self {
        Self {
            chain,
            store,
            capacity: capacity.max(1),
            queues: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            metrics: metrics.clone(),
        }
    }

    /// Queue an event (of bot depth `depth`) for every observer; never blocks. Must be
    /// called inside a tokio runtime (a plugin's first event starts its task).
    pub(crate) fn submit(&self, event: Event, depth: u32) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let snapshot = self.chain.snapshot();
        let delivery = Arc::new(event);
        let mut queues = lock(&self.queues);
        for plugin in snapshot.hook(HookKind::MessageDelivered) {
            // A plugin's bot does not observe its own posts.
            if plugin.bot_user() == Some(delivery.sender_id) {
                continue;
            }
            let queue = queues
                .entry(plugin.name().to_string())
                .or_insert_with(|| self.start_queue(plugin.name()));
            match queue.sender.try_send((delivery.clone(), depth)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.metrics.dropped_one(plugin.name());
                    Counters::bump(&plugin.counters.observer_dropped);
                    tracing::warn!(
                        plugin = plugin.name(),
                        "message-delivered queue of this plugin is full: event dropped for it"
                    );
                }
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }

    /// The task of one plugin's queue: it calls whatever version of the plugin is loaded
    /// when the event's turn comes (none: the plugin was disabled; the event is skipped).
    fn start_queue(&self, name: &str) -> PluginQueue {
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Delivery>(self.capacity);
        let chain = self.chain.clone();
        let store = self.store.clone();
        let name = name.to_string();
        let task = tokio::spawn(async move {
            while let Some((event, depth)) = receiver.recv().await {
                let Some(plugin) = current(&chain, &name) else {
                    continue;
                };
                let room = match store.room(event.room_id).await {
                    Ok(Some(room)) => room,
                    Ok(None) => continue,
                    Err(err) => {
                        tracing::warn!(plugin = %name, error = %err, "room lookup for message-delivered failed; event skipped");
                        continue;
                    }
                };
                // Failures are logged and counted inside `call`; an observer cannot change
                // the message, so its failure policy has nothing to decide.
                let _ = plugin.call(Request::Delivered(&room, &event), depth).await;
            }
        });
        PluginQueue { sender, task }
    }

    /// Stop accepting events and let every queue be observed, for at most `grace` in all:
    /// an observer that is still busy then has what is left of its queue abandoned (and
    /// counted as dropped), so shutdown ends whatever plugins do.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.closed.store(true, Ordering::Release);
        let queues: Vec<(String, PluginQueue)> = lock(&self.queues).drain().collect();
        let deadline = tokio::time::Instant::now() + grace;
        for (name, queue) in queues {
            let PluginQueue { sender, mut task } = queue;
            let left = sender.max_capacity() - sender.capacity();
            drop(sender);
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(plugin = %name, error = %e, "a plugin observer task ended abnormally");
                }
                Err(_) => {
                    task.abort();
                    tracing::warn!(
                        plugin = %name,
                        queued_at_shutdown = left,
                        "observer still busy at the end of the shutdown grace period: the rest \
                         of its queue is abandoned"
                    );
                }
            }
        }
    }
}

fn current(chain: &ChainCell, name: &str) -> Option<Arc<LoadedPlugin>> {
    chain
        .snapshot()
        .hook(HookKind::MessageDelivered)
        .iter()
        .find(|p| p.name() == name)
        .cloned()
}

//! `message-delivered` observers: the router hands over an event and returns at once; a
//! dedicated thread calls the observing plugins from a bounded queue. A full queue drops
//! the event and counts it (`switchboard_plugin_observer_dropped_total`), never grows.
//!
//! A plain thread rather than a tokio task because plugin calls are synchronous CPU work
//! bounded only by their deadline; they should not occupy a tokio worker that the message
//! path needs.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::bindings_v0_1::{Event, Room};
use super::chain::ChainCell;
use super::manifest::HookName;
use super::metrics::Metrics;
use super::lock;

pub(crate) struct Observer {
    sender: Mutex<Option<SyncSender<(Room, Event)>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl Observer {
    pub(crate) fn start(chain: Arc<ChainCell>, capacity: usize, metrics: &Arc<Metrics>) -> Self {
        let (sender, receiver) = std::sync::mpsc::sync_channel(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("plugin-observer".into())
            .spawn(move || run(&chain, &receiver));
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "could not start the plugin observer thread; message-delivered hooks are off");
                None
            }
        };
        Self { sender: Mutex::new(Some(sender)), thread: Mutex::new(thread), metrics: metrics.clone() }
    }

    /// Queue an event for the observers; never blocks.
    pub(crate) fn submit(&self, room: Room, event: Event) {
        let guard = lock(&self.sender);
        let Some(sender) = guard.as_ref() else { return };
        match sender.try_send((room, event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.dropped_one();
                tracing::warn!("message-delivered queue full: event dropped for plugin observers");
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Stop accepting events, let the thread observe what is queued, and wait for it.
    pub(crate) async fn shutdown(&self) {
        lock(&self.sender).take();
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the plugin observer thread ended abnormally");
            }
        }
    }
}

fn run(chain: &ChainCell, receiver: &Receiver<(Room, Event)>) {
    while let Ok((room, event)) = receiver.recv() {
        let snapshot = chain.snapshot();
        for plugin in snapshot.hook(HookName::MessageDelivered) {
            // Failures are logged and counted inside `call`; an observer cannot change the
            // message, so its failure policy has nothing to decide here.
            let _ = plugin.call(HookName::MessageDelivered, |bindings, store| {
                bindings.switchboard_plugin_hooks().call_message_delivered(store, &room, &event)
            });
        }
    }
}

//! `message-delivered` observers: the router hands over an event and returns at once; a
//! tokio task calls the observing plugins from a bounded queue. A full queue drops the
//! event and counts it (`switchboard_plugin_observer_dropped_total`), never grows.
//!
//! Plugin calls yield to the scheduler on every epoch tick, so even a runaway observer
//! occupies a tokio worker for at most a tick at a time, and for at most its deadline in
//! total.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{Sender, error::TrySendError};
use tokio::task::JoinHandle;

use super::chain::ChainCell;
use super::instance::Request;
use super::lock;
use super::manifest::HookName;
use super::metrics::Metrics;
use crate::store::{Event, Room};

pub(crate) struct Observer {
    sender: Mutex<Option<Sender<(Room, Event, u32)>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl Observer {
    /// Start the observer task; must be called inside a tokio runtime.
    pub(crate) fn start(chain: Arc<ChainCell>, capacity: usize, metrics: &Arc<Metrics>) -> Self {
        let (sender, mut receiver) =
            tokio::sync::mpsc::channel::<(Room, Event, u32)>(capacity.max(1));
        let task = tokio::spawn(async move {
            while let Some((room, event, depth)) = receiver.recv().await {
                let snapshot = chain.snapshot();
                for plugin in snapshot.hook(HookName::MessageDelivered) {
                    let request = Request::Delivered(&room, &event);
                    if plugin.is_own(&request) {
                        continue;
                    }
                    // Failures are logged and counted inside `call`; an observer cannot
                    // change the message, so its failure policy has nothing to decide.
                    let _ = plugin.call(request, depth).await;
                }
            }
        });
        Self {
            sender: Mutex::new(Some(sender)),
            task: Mutex::new(Some(task)),
            metrics: metrics.clone(),
        }
    }

    /// Queue an event (of bot depth `depth`) for the observers; never blocks.
    pub(crate) fn submit(&self, room: Room, event: Event, depth: u32) {
        let guard = lock(&self.sender);
        let Some(sender) = guard.as_ref() else { return };
        match sender.try_send((room, event, depth)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.dropped_one();
                tracing::warn!("message-delivered queue full: event dropped for plugin observers");
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Stop accepting events, let the task observe what is queued, and wait for it.
    pub(crate) async fn shutdown(&self) {
        lock(&self.sender).take();
        let task = lock(&self.task).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the plugin observer task ended abnormally");
        }
    }
}

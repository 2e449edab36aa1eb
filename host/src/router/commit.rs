//! Group commit: one writer task per node takes every queued room write, commits them in a
//! single transaction, then fans the stored events out and acknowledges each sender.
//!
//! Throughput comes from batching (while one transaction commits, the next batch queues up),
//! never from acknowledging early: a sender's `commit` resolves only after its transaction
//! committed. Because this one task publishes events in commit order, every session on this
//! node receives a room's events in `seq` order.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::{Appended, NewEvent, Store, StoreError, StoreResult};

struct Job {
    event: NewEvent,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Appended, ApiError>>,
}

/// The sending side of the writer; cheap to share.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("room", &self.event.room_id())
            .finish()
    }
}

impl Committer {
    /// Start the writer task. It drains what is queued and stops once `shutdown` is set.
    pub fn start(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        metrics: Metrics,
        batch_max: usize,
        queue: usize,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let writer = Writer {
            store,
            hub,
            metrics,
            batch_max: batch_max.max(1),
        };
        let task = tokio::spawn(writer.run(rx, shutdown));
        (Self { tx }, task)
    }

    /// Queue a write and wait until it is committed (and fanned out).
    pub async fn commit(&self, event: NewEvent) -> Result<Appended, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            event,
            enqueued: Instant::now(),
            reply,
        };
        self.tx.try_send(job).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => ApiError::TooManyRequests {
                code: "server_busy",
                message: "the server is saturated; retry shortly".into(),
                retry_after_ms: 100,
            },
            mpsc::error::TrySendError::Closed(_) => shutting_down(),
        })?;
        answer.await.map_err(|_| shutting_down())?
    }
}

fn shutting_down() -> ApiError {
    ApiError::unavailable(
        "shutting_down",
        "the server is shutting down; retry on reconnect",
    )
}

struct Writer {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    metrics: Metrics,
    batch_max: usize,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Job>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let first = tokio::select! {
                biased;
                job = rx.recv() => job,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(first) = first else { break };
            let batch = self.take_batch(first, &mut rx);
            self.commit_batch(batch).await;
        }
        // Finish every write already accepted before stopping: in-flight sends are acked.
        rx.close();
        while let Some(first) = rx.recv().await {
            let batch = self.take_batch(first, &mut rx);
            self.commit_batch(batch).await;
        }
        tracing::debug!("group-commit writer stopped");
    }

    fn take_batch(&self, first: Job, rx: &mut mpsc::Receiver<Job>) -> Vec<Job> {
        let mut batch = vec![first];
        while batch.len() < self.batch_max {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        batch
    }

    async fn commit_batch(&self, batch: Vec<Job>) {
        let started = Instant::now();
        #[allow(clippy::cast_precision_loss)] // a batch size is far below 2^52
        self.metrics.commit_batch_size.observe(batch.len() as f64);
        let (events, waiters): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|job| (job.event, (job.enqueued, job.reply)))
            .unzip();
        match self.store.append_events(&events).await {
            Ok(results) => {
                self.metrics
                    .commit_duration
                    .observe(started.elapsed().as_secs_f64());
                for (result, waiter) in results.into_iter().zip(waiters) {
                    self.answer(result, waiter).await;
                }
            }
            // The database answered, so the transaction was rolled back and nothing in it
            // was stored; but one item may be what it refused. Commit each item on its own
            // so the others' senders are not failed for it (and the one at fault gets its
            // own error). Order is kept: a later item may edit an earlier one.
            Err(err) if events.len() > 1 && is_answered_by_database(&err) => {
                tracing::warn!(error = %err, "group commit failed; retrying its items one by one");
                for (event, waiter) in events.iter().zip(waiters) {
                    let result = match self.store.append_events(std::slice::from_ref(event)).await {
                        Ok(mut results) => results.pop().unwrap_or_else(|| {
                            Err(StoreError::Corrupt("an empty answer for one item".into()))
                        }),
                        Err(err) => Err(err),
                    };
                    if let Err(err) = &result {
                        tracing::error!(error = %err, "a write failed on its own");
                    }
                    self.answer(result, waiter).await;
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "group commit failed; batch not stored");
                for (_, reply) in waiters {
                    let _ = reply.send(Err(not_committed()));
                }
            }
        }
    }

    /// Fan a stored event out and acknowledge its sender, or tell the sender why not.
    async fn answer(
        &self,
        result: StoreResult<Appended>,
        (enqueued, reply): (Instant, oneshot::Sender<Result<Appended, ApiError>>),
    ) {
        if let Ok(appended) = &result {
            if !appended.duplicate {
                crate::metrics::Metrics::count(
                    &self.metrics.events_stored,
                    appended.event.kind.as_str(),
                );
                if let Err(err) = self.hub.publish_event(&appended.event).await {
                    // Stored but not pushed live: clients still get it on resume or from
                    // history, so log rather than fail.
                    tracing::warn!(error = %err, "fan-out failed after commit");
                }
            }
            self.metrics
                .send_latency
                .observe(enqueued.elapsed().as_secs_f64());
        }
        let result = result.map_err(|err| match err {
            // A backend failure of this one item (after the batch was retried item by item)
            // is still "not stored, retry", never an internal error with details.
            StoreError::Backend(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %err, "a write could not be committed");
                not_committed()
            }
            other => ApiError::from(other),
        });
        let _ = reply.send(result);
    }
}

fn not_committed() -> ApiError {
    ApiError::unavailable(
        "store_unavailable",
        "the write could not be committed; nothing was stored, retry",
    )
}

/// Whether the database itself refused the batch (it answered with an error, so it rolled
/// the transaction back), as opposed to a lost connection, an I/O error or a pool timeout,
/// after which retrying each item would only multiply the wait, and a failed `COMMIT` may
/// even have been applied.
fn is_answered_by_database(err: &StoreError) -> bool {
    matches!(err, StoreError::Backend(sqlx::Error::Database(_)))
}

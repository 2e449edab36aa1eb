//! Group commit: one writer task per node takes every queued room write, commits them in a
//! single transaction, then fans the stored events out and acknowledges each sender.
//!
//! Throughput comes from batching (while one transaction commits, the next batch queues up),
//! never from acknowledging early: a sender's `commit` resolves only after its transaction
//! committed. Because this one task publishes events in commit order, every session on this
//! node receives a room's events in `seq` order.
//!
//! Between batches the writer also merges the search index in bounded steps
//! ([`SearchMerge`]; `store::sqlite_index_merge` says why), when no write waits for it.
//!
//! On SQLite the writer runs on a thread of its own, with a single-threaded runtime of its
//! own. There a commit is CPU and an `fsync` on the calling thread: on one of the shared
//! runtime's workers each batch first had to hand that worker's queue to another thread
//! (`block_in_place`), and what sqlx's pool spawns after each transaction (a task that takes
//! the connection back, which the next batch waits for) queued behind every session's tasks.
//! On its own thread the writer blocks no worker, and those tasks run on its runtime, right
//! when the next batch waits for them (`docs/benchmarks.md`, "eighth step", has the
//! figures). PostgreSQL's writer awaits a server over sockets the shared runtime drives: it
//! stays a task there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

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

/// The running writer, to wait for once `shutdown` was set.
#[derive(Debug)]
pub struct WriterTask {
    /// Sent when the writer returned; dropped unsent if it panicked.
    done: oneshot::Receiver<()>,
}

/// The writer ended by a panic: writes it had accepted may not have been answered.
#[derive(Debug, thiserror::Error)]
#[error("the group-commit writer panicked")]
pub struct WriterPanicked;

impl WriterTask {
    /// Wait until the writer stopped, after committing every write it had accepted.
    pub async fn stopped(self) -> Result<(), WriterPanicked> {
        self.done.await.map_err(|_| WriterPanicked)
    }
}

/// How long a stopped writer thread waits for what its store calls left running on its
/// runtime (sqlx's pool taking its connection back after the last transaction).
const SETTLE_MAX: Duration = Duration::from_secs(2);

impl Committer {
    /// Start the writer: on a thread of its own when the store writes on the calling thread
    /// (SQLite; the module's header says why), else as a task of the current runtime. It
    /// drains what is queued and stops once `shutdown` is set. Between batches it merges up
    /// to `search_merge_pages` pages of the search index per step (0: never; the store then
    /// leaves merging to the index itself). Fails only if the thread cannot be started.
    pub fn start(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        metrics: Metrics,
        batch_max: usize,
        queue: usize,
        search_merge_pages: u32,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<(Self, WriterTask)> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let own_thread = store.writes_on_calling_thread();
        let writer = Writer {
            store,
            hub,
            metrics,
            batch_max: batch_max.max(1),
            search_merge: SearchMerge::new(search_merge_pages),
        };
        let (done_tx, done) = oneshot::channel();
        if own_thread {
            // Built here so that a failure is this function's error, not the thread's panic.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name("switchboard-writer".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        writer.run(rx, shutdown).await;
                        settle().await;
                    });
                    drop(runtime);
                    let _ = done_tx.send(());
                })?;
        } else {
            tokio::spawn(async move {
                writer.run(rx, shutdown).await;
                let _ = done_tx.send(());
            });
        }
        Ok((Self { tx }, WriterTask { done }))
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

/// On the writer's own runtime, once the writer returned: let the tasks its store calls
/// spawned there finish (sqlx's pool spawns one to take a connection back after each
/// transaction), so the connection is back in its pool, and an in-memory database still
/// open, when the thread ends. Bounded by [`SETTLE_MAX`] in case one never finishes.
async fn settle() {
    let runtime = tokio::runtime::Handle::current();
    let deadline = Instant::now() + SETTLE_MAX;
    while runtime.metrics().num_alive_tasks() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
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
    search_merge: SearchMerge,
}

/// After this many commits a search index merge step is due, taken once the queue is empty.
const MERGE_AFTER_COMMITS: u32 = 8;
/// After this many commits a step is taken even with writes waiting: under a saturating
/// load the queue is never empty, and the index must still be merged at the rate it grows.
const MERGE_AT_LATEST_AFTER_COMMITS: u32 = 32;
/// Steps taken in a row while the queue stays empty before the next commit is waited for:
/// a backlog (after `search reindex`) is merged a bounded amount at a time.
const MERGE_STEPS_IN_A_ROW_MAX: u32 = 64;

/// When the writer merges the search index: a step of `pages` pages once
/// [`MERGE_AFTER_COMMITS`] batches were committed and the queue is empty, more steps while
/// it stays empty and the last one found work, and at the latest after
/// [`MERGE_AT_LATEST_AFTER_COMMITS`] batches, then with a budget grown in proportion so the
/// index is merged at the same rate as it is written.
#[derive(Debug)]
struct SearchMerge {
    /// Pages per step; 0: the writer never merges.
    pages: u32,
    /// Batches committed since the last step.
    commits: u32,
    /// The last step merged something: more may be waiting.
    more: bool,
    /// Steps since the last commit.
    in_a_row: u32,
    /// The last step failed (logged once per run of failures).
    failing: bool,
}

impl SearchMerge {
    fn new(pages: u32) -> Self {
        Self {
            pages,
            commits: 0,
            more: false,
            in_a_row: 0,
            failing: false,
        }
    }

    /// A step's budget in pages, when one is due now (`queue_empty`: no write waits).
    fn due(&self, queue_empty: bool) -> Option<u32> {
        if self.pages == 0 {
            return None;
        }
        let due = if queue_empty {
            (self.more && self.in_a_row < MERGE_STEPS_IN_A_ROW_MAX)
                || self.commits >= MERGE_AFTER_COMMITS
        } else {
            self.commits >= MERGE_AT_LATEST_AFTER_COMMITS
        };
        due.then(|| {
            self.pages
                .saturating_mul((self.commits / MERGE_AFTER_COMMITS).max(1))
        })
    }

    fn committed(&mut self) {
        self.commits = self.commits.saturating_add(1);
        self.in_a_row = 0;
    }

    fn stepped(&mut self, outcome: &StoreResult<bool>) {
        self.commits = 0;
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.more = matches!(outcome, Ok(true));
        match outcome {
            Ok(_) if self.failing => {
                tracing::info!("merging the search index works again");
                self.failing = false;
            }
            Err(err) if !self.failing => {
                tracing::warn!(error = %err, "merging the search index failed; the index merges a level inside a commit once it holds 16 segments meanwhile");
                self.failing = true;
            }
            _ => {}
        }
    }
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Some(pages) = self.search_merge.due(rx.is_empty()) {
                if *shutdown.borrow() {
                    break;
                }
                let started = Instant::now();
                let outcome = self.store.merge_search_index(pages).await;
                if matches!(outcome, Ok(true)) {
                    self.metrics
                        .search_merge_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                self.search_merge.stepped(&outcome);
                continue;
            }
            let first = tokio::select! {
                biased;
                job = rx.recv() => job,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(first) = first else { break };
            let batch = self.take_batch(first, &mut rx);
            self.commit_batch(batch).await;
            self.search_merge.committed();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_step_waits_for_an_empty_queue_until_it_is_overdue() {
        let mut merge = SearchMerge::new(16);
        assert_eq!(merge.due(true), None, "nothing committed, nothing to merge");
        for _ in 0..MERGE_AFTER_COMMITS {
            merge.committed();
        }
        assert_eq!(merge.due(false), None, "writes wait: not yet");
        assert_eq!(merge.due(true), Some(16));
        for _ in MERGE_AFTER_COMMITS..MERGE_AT_LATEST_AFTER_COMMITS {
            merge.committed();
        }
        // Overdue under load: taken with writes waiting, with the budget of four steps.
        assert_eq!(merge.due(false), Some(64));
    }

    #[test]
    fn merging_goes_on_while_idle_and_finding_work_a_bounded_number_of_steps() {
        let mut merge = SearchMerge::new(16);
        merge.stepped(&Ok(true));
        assert_eq!(merge.due(false), None, "more waits, but so do writes");
        assert_eq!(merge.due(true), Some(16));
        for _ in 1..MERGE_STEPS_IN_A_ROW_MAX {
            merge.stepped(&Ok(true));
        }
        assert_eq!(
            merge.due(true),
            None,
            "a backlog is merged a bounded run at a time"
        );
        merge.committed();
        assert_eq!(merge.due(true), Some(16));
        merge.stepped(&Ok(false));
        assert_eq!(merge.due(true), None, "nothing left");
        merge.stepped(&Err(StoreError::Corrupt("a failed step".into())));
        assert_eq!(
            merge.due(true),
            None,
            "a failed step is retried after more commits"
        );
    }

    #[test]
    fn no_pages_no_merging() {
        let mut merge = SearchMerge::new(0);
        for _ in 0..MERGE_AT_LATEST_AFTER_COMMITS {
            merge.committed();
        }
        assert_eq!(merge.due(true), None);
        assert_eq!(merge.due(false), None);
    }
}

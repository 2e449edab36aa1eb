//! SQLite's WAL checkpoints, taken off the commit path.
//!
//! In WAL mode every commit appends pages to the `-wal` file, and a checkpoint copies them
//! back into the database file. Left to SQLite, the checkpoint runs inside whichever
//! commit pushes the WAL past 1,000 pages: that commit then also writes those pages to the
//! database file and `fsync`s it, and every sender waiting on it (and on the batches queued
//! behind it) waits too. That was the slow tail of send→ack latency.
//!
//! Here a connection of its own runs a *passive* checkpoint at a fixed interval. A passive
//! checkpoint never takes the write lock and never waits: it copies what no reader still
//! needs while the writer goes on committing, and once everything is copied the writer's
//! next transaction starts the WAL over from its beginning. The writer keeps SQLite's
//! automatic checkpoint only as a backstop, at [`BACKSTOP_PAGES`], for when this task cannot
//! keep up (a reader holding an old snapshot for a long time).

use std::sync::Arc;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::StoreResult;

/// The writer's own automatic checkpoint while the background one runs: 16,000 pages
/// (62.5 MiB of WAL at SQLite's 4 KiB page). Normally never reached; it bounds the WAL if
/// the background checkpoint falls behind.
pub(super) const BACKSTOP_PAGES: u32 = 16_000;

/// The running background checkpoint. Dropping it (with the last clone of the store)
/// stops the task and closes its connection.
#[derive(Debug)]
pub(super) struct Checkpointer {
    task: JoinHandle<()>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Checkpointer {
    /// Open the checkpoint's own connection to the database `options` names (it exists:
    /// the writer created it) and start checkpointing every `every`.
    pub(super) async fn start(
        options: SqliteConnectOptions,
        every: Duration,
    ) -> StoreResult<Arc<Self>> {
        let conn = options.connect().await?;
        let task = tokio::spawn(run(conn, every));
        Ok(Arc::new(Self { task }))
    }
}

async fn run(mut conn: SqliteConnection, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Log a failure once per run of failures, not every tick.
    let mut failing = false;
    loop {
        tick.tick().await;
        // (busy, frames in the WAL, frames copied back); busy is 1 when a concurrent
        // `TRUNCATE` checkpoint (after an erasure) held the checkpoint lock.
        let result = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await;
        match result {
            Ok((_, wal_frames, copied)) => {
                if failing {
                    tracing::info!("background WAL checkpoint works again");
                    failing = false;
                }
                tracing::trace!(wal_frames, copied, "WAL checkpoint");
            }
            Err(err) if !failing => {
                tracing::warn!(error = %err, "background WAL checkpoint failed; the writer's own checkpoint bounds the WAL meanwhile");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

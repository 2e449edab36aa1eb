//! The search index's merging, taken out of the commits and done between them in bounded
//! steps.
//!
//! FTS5 writes each transaction's new index entries as a new *segment*, and merges
//! segments of one level into one of the next so that a search reads few of them. Left to
//! FTS5 (`automerge`), the merging runs inside whichever commit writes its 64th leaf page
//! since the last: that commit then also merges 64 pages per level of the index, and every
//! sender waiting on it (and on the batches queued behind it) waits too. That was the tail
//! of send→ack latency at half load (`docs/benchmarks.md`, "Message path, sixth step").
//!
//! Here FTS5's own `automerge` is off ([`configure`], at open), and the group commit asks
//! for a [`merge_step`] of `store.search_merge_pages` pages while its queue is empty
//! (`router::commit`), at the latest after a fixed number of commits. The amount of work is
//! the same; it moves to moments when nobody waits for the writer. FTS5 still merges a
//! level inside a commit once the level holds `crisismerge` (16) segments: a backstop that
//! bounds the segments when steps do not come (another process writing, `search reindex`).
//!
//! PostgreSQL's trigram index has no such work.

use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnection;

use super::sqlite_raw::{backend_error, with_rusqlite};
use super::{SqliteSync, StoreResult};

/// FTS5's own default `automerge`, kept when `store.search_merge_pages` is 0.
const FTS5_AUTOMERGE_DEFAULT: u32 = 4;

/// Turn FTS5's merging inside commits off when the group commit merges in steps
/// (`pages > 0`), or back to FTS5's default when it does not. The setting lives in the
/// database (`events_fts_config`), so it follows the configuration of the last server
/// started on it.
pub(super) async fn configure(writer: &SqlitePool, pages: u32) -> StoreResult<()> {
    let automerge = if pages > 0 { 0 } else { FTS5_AUTOMERGE_DEFAULT };
    sqlx::query("INSERT INTO events_fts (events_fts, rank) VALUES ('automerge', $1)")
        .bind(automerge)
        .execute(writer)
        .await?;
    Ok(())
}

/// Merge up to about `pages` pages of the search index's segments (FTS5's `merge` command,
/// which merges only levels holding enough segments, or finishes a merge begun earlier).
/// `Ok(true)` when it merged something, so more may be waiting; `Ok(false)` when there was
/// nothing to merge.
///
/// FTS5 stops at the first term boundary past `pages`: with positions no longer kept
/// (migration 0021), a term's list is short and a step stays near its budget.
///
/// The step is committed without waiting for the disk (`synchronous = NORMAL` for its
/// transaction, then the configured setting again). It only rewrites index segments: lost
/// to a power failure, the index is still whole as the previous commit left it (WAL keeps
/// transactions atomic either way), and the next message batch's `fsync` of the WAL makes
/// it durable anyway.
pub(super) async fn merge_step(
    conn: &mut SqliteConnection,
    pages: u32,
    synchronous: SqliteSync,
) -> StoreResult<bool> {
    with_rusqlite(conn, |db| {
        let relax = synchronous == SqliteSync::Full;
        if relax {
            db.execute_batch("PRAGMA synchronous = NORMAL")
                .map_err(backend_error)?;
        }
        let before = db.total_changes();
        let merged = db.execute(
            "INSERT INTO events_fts (events_fts, rank) VALUES ('merge', ?1)",
            [pages.max(1)],
        );
        // FTS5 documents this test: a merge that did nothing changed fewer than two rows.
        let worked = db.total_changes().saturating_sub(before) >= 2;
        // Restored whatever the merge did: every later commit must wait for the disk again.
        if relax {
            db.execute_batch("PRAGMA synchronous = FULL")
                .map_err(backend_error)?;
        }
        merged.map_err(backend_error)?;
        Ok(worked)
    })
    .await
}

//! Which `(sender, client_msg_id)` keys the SQLite file may hold, answered from memory.
//!
//! With a `message-pre-send` plugin in the path, the router asks, before the plugins run,
//! whether a send repeats a stored one (`router::retries`). Nearly every send is new, and on
//! SQLite that question was most of what a plugin added to a message's cost: a batched read
//! of index pages the last commit had just rewritten (`docs/benchmarks.md`, "Message path,
//! tenth step"). This process is the file's only writer of messages, so it can answer "new"
//! without reading: a Bloom filter of every stored key. A key the filter lacks was never
//! stored; one it holds may have been (about 1 % of new keys, and the keys of messages
//! purged since) and is looked up in the database as before.
//!
//! **Filling.** One scan of the file fills a filter, started by the first question, so a
//! process that never asks (`switchboard user …`, a backup check) never pays for it. Every
//! batch of messages adds its keys before its transaction and again after it, whatever its
//! outcome. A filter is registered before its scan reads anything, so a key committed after
//! the scan's read is added by its batch (which adds after its commit, so after the
//! registration), and a key committed before it is found by the scan: none is missed. The
//! scan reads in chunks, each its own snapshot; that holds chunk by chunk, and keeps the
//! WAL from growing behind one long read. Adding before the transaction too covers a batch
//! whose caller stops waiting: its commit may still complete on sqlx's thread.
//!
//! **The window.** A key is known from before its commit, except while a scan runs: a
//! filter registered during a batch's transaction learns the key only when the batch
//! returns. A send of that key then is a retry of a message not yet acknowledged, the race
//! of two concurrent sends that the router already settles: the plugins see both, the
//! store's unique index keeps the first.
//!
//! **Size.** A filter is sized for twice the keys the file could hold when it was made (at least
//! [`MIN_CAPACITY`]), about 1.2 bytes per key. When more keys than that have been added, a
//! filter twice the size is filled the same way while the old one goes on answering. Past
//! `store.sqlite_retry_filter_keys` keys there is no filter: every question reads the
//! database. Until a filter is filled, and if its scan fails, every key "may be held".
//!
//! **Other writers.** Another process that writes messages into the same file (none of
//! ours does) is not seen: a retry of one of its messages looks new to the plugins, and the
//! unique index still stores it once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use fastbloom::AtomicBloomFilter;
use sqlx::SqlitePool;

use super::sqlite_raw::{backend_error, with_rusqlite};
use super::{StoreResult, UserId};

/// The share of never-stored keys a filter answers "may be held" for, when full.
const FALSE_POSITIVES: f64 = 0.01;
/// The fewest keys a filter is sized for (~1.2 MiB).
const MIN_CAPACITY: u64 = 1 << 20;
/// Keys read per chunk of the scan: each chunk is one statement and one snapshot.
const SCAN_CHUNK: usize = 8192;

/// The keys of the stored messages of one SQLite file, as a Bloom filter (see the module).
pub(crate) struct SentKeys {
    filters: RwLock<Filters>,
    /// `store.sqlite_retry_filter_keys`: past it, no filter (0: never one).
    max_keys: u64,
    /// The fewest keys a filter is sized for ([`MIN_CAPACITY`]; tests make it small).
    min_capacity: u64,
    /// Where the scans read.
    reads: SqlitePool,
}

#[derive(Default)]
struct Filters {
    /// The filter that answers; `None` until the first is filled.
    answering: Option<Arc<Filter>>,
    /// The filter being filled, if any: batches add their keys to it as well.
    filling: Option<Arc<Filter>>,
    /// A scan is under way (sizing its filter or filling it).
    scanning: bool,
    /// No filter will answer again: the keys passed the limit, or a scan failed.
    given_up: bool,
}

struct Filter {
    bloom: AtomicBloomFilter,
    /// Keys it was sized for.
    capacity: u64,
    /// Keys added so far (from its scan and from batches), repeats not counted (nor the
    /// ~1 % of new keys the filter took for repeats).
    added: AtomicU64,
}

impl Filter {
    fn new(capacity: u64) -> Self {
        Self {
            bloom: AtomicBloomFilter::with_false_pos(FALSE_POSITIVES)
                .expected_items(usize::try_from(capacity).unwrap_or(usize::MAX)),
            capacity,
            added: AtomicU64::new(0),
        }
    }

    fn add(&self, sender: UserId, client_msg_id: &str) {
        let held_before = self.bloom.insert(&(sender, client_msg_id));
        if !held_before {
            self.added.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn full(&self) -> bool {
        self.added.load(Ordering::Relaxed) > self.capacity
    }
}

impl std::fmt::Debug for SentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentKeys")
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl SentKeys {
    pub(crate) fn new(reads: SqlitePool, max_keys: u64) -> Self {
        Self::sized(reads, max_keys, MIN_CAPACITY)
    }

    fn sized(reads: SqlitePool, max_keys: u64, min_capacity: u64) -> Self {
        Self {
            filters: RwLock::new(Filters {
                given_up: max_keys == 0,
                ..Filters::default()
            }),
            max_keys,
            min_capacity,
            reads,
        }
    }

    /// False only when no message with this key is stored (see the module). The first
    /// call, and the first after the filter filled up, start a scan on the current tokio
    /// runtime.
    pub(crate) fn may_hold(self: &Arc<Self>, sender: UserId, client_msg_id: &str) -> bool {
        let (answer, grow_to) = {
            let filters = self.read();
            if filters.given_up {
                return true;
            }
            let answer = filters
                .answering
                .as_ref()
                .is_none_or(|f| f.bloom.contains(&(sender, client_msg_id)));
            let grow_to = match &filters.answering {
                _ if filters.scanning => None,
                None => Some(self.min_capacity),
                Some(f) if f.full() => Some(f.capacity.saturating_mul(2)),
                Some(_) => None,
            };
            (answer, grow_to)
        };
        if let Some(capacity) = grow_to {
            self.start_fill(capacity);
        }
        answer
    }

    /// Add the keys of a batch (see `SqliteStore::append_batch` for when). A key added for
    /// nothing only costs a lookup.
    pub(crate) fn add<'a>(&self, keys: impl Iterator<Item = (UserId, &'a str)> + Clone) {
        let filters = self.read();
        for filter in [&filters.answering, &filters.filling].into_iter().flatten() {
            for (sender, client_msg_id) in keys.clone() {
                filter.add(sender, client_msg_id);
            }
        }
    }

    /// Register a new filter of at least `capacity` keys and scan the file into it in the
    /// background; it answers once the scan is done.
    fn start_fill(self: &Arc<Self>, at_least: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut filters = self.write();
            if filters.scanning || filters.given_up {
                return;
            }
            filters.scanning = true;
        }
        let keys = Arc::clone(self);
        runtime.spawn(async move {
            let started = std::time::Instant::now();
            let outcome = keys.fill(at_least).await;
            let mut filters = keys.write();
            filters.scanning = false;
            filters.filling = None;
            match outcome {
                Ok(Some(filter)) => {
                    tracing::info!(
                        keys = filter.added.load(Ordering::Relaxed),
                        capacity = filter.capacity,
                        ms = started.elapsed().as_millis(),
                        "retry filter filled"
                    );
                    filters.answering = Some(filter);
                }
                Ok(None) => {
                    tracing::info!(
                        limit = keys.max_keys,
                        "more stored messages than store.sqlite_retry_filter_keys: retry checks read the database"
                    );
                    filters.answering = None;
                    filters.given_up = true;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "filling the retry filter failed: retry checks read the database");
                    filters.answering = None;
                    filters.given_up = true;
                }
            }
        });
    }

    /// Size a filter, register it, and scan every stored key into it. `None`: the file may
    /// hold more keys than the limit.
    async fn fill(&self, at_least: u64) -> StoreResult<Option<Arc<Filter>>> {
        // Every key belongs to an event, so the highest event id bounds how many keys the
        // file holds (one index lookup, where counting would read them all).
        let (highest,): (Option<i64>,) = sqlx::query_as("SELECT max(id) FROM events")
            .fetch_one(&self.reads)
            .await?;
        let bound = u64::try_from(highest.unwrap_or(0)).unwrap_or(0);
        if bound > self.max_keys {
            return Ok(None);
        }
        let capacity = at_least.max(bound.saturating_mul(2)).min(self.max_keys);
        if capacity <= bound {
            // The limit leaves no room for new keys.
            return Ok(None);
        }
        let filter = Arc::new(Filter::new(capacity));
        // Registered before the first chunk is read (see the module).
        self.write().filling = Some(Arc::clone(&filter));
        let mut after: Option<(UserId, String)> = None;
        loop {
            let mut conn = self.reads.acquire().await?;
            let (read, last) =
                with_rusqlite(&mut conn, |db| scan_chunk(db, &filter, &after)).await?;
            if filter.added.load(Ordering::Relaxed) > self.max_keys {
                return Ok(None);
            }
            match last {
                Some(last) if read == SCAN_CHUNK => after = Some(last),
                _ => break,
            }
        }
        Ok(Some(filter))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Filters> {
        // A panic while holding the lock leaves the filters as they were: still sound.
        self.filters.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Filters> {
        self.filters.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Add the next [`SCAN_CHUNK`] stored keys after `after` (in index order) to `filter`;
/// returns how many were read and the last of them. Through rusqlite, where sqlx would
/// cross to its connection thread for every row: 5.3 µs a key, 27 s for 5 million keys
/// (`docs/benchmarks.md`, "Message path, tenth step").
fn scan_chunk(
    db: &rusqlite::Connection,
    filter: &Filter,
    after: &Option<(UserId, String)>,
) -> StoreResult<(usize, Option<(UserId, String)>)> {
    let limit = i64::try_from(SCAN_CHUNK).unwrap_or(i64::MAX);
    let mut statement = db
        .prepare(if after.is_some() {
            SCAN_AFTER
        } else {
            SCAN_FIRST
        })
        .map_err(backend_error)?;
    let mut rows = match after {
        None => statement.query(rusqlite::params![limit]),
        Some((sender, client_msg_id)) => {
            statement.query(rusqlite::params![sender, client_msg_id, limit])
        }
    }
    .map_err(backend_error)?;
    let (mut read, mut last) = (0, None);
    while let Some(row) = rows.next().map_err(backend_error)? {
        let sender: UserId = row.get(0).map_err(backend_error)?;
        let client_msg_id: String = row.get(1).map_err(backend_error)?;
        filter.add(sender, &client_msg_id);
        read += 1;
        last = Some((sender, client_msg_id));
    }
    Ok((read, last))
}

/// The scan's statements: the keys in the order of their unique index, which covers them.
const SCAN_FIRST: &str = "SELECT sender_id, client_msg_id FROM events
     WHERE client_msg_id IS NOT NULL
     ORDER BY sender_id, client_msg_id LIMIT ?1";
const SCAN_AFTER: &str = "SELECT sender_id, client_msg_id FROM events
     WHERE client_msg_id IS NOT NULL AND (sender_id, client_msg_id) > (?1, ?2)
     ORDER BY sender_id, client_msg_id LIMIT ?3";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    /// A file with what the scan reads: the events table's key columns and their index.
    async fn events_file(dir: &tempfile::TempDir) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("keys.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .unwrap();
        for ddl in [
            "CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id INTEGER NOT NULL,
                                  client_msg_id TEXT)",
            "CREATE UNIQUE INDEX events_client_msg ON events (sender_id, client_msg_id)
                 WHERE client_msg_id IS NOT NULL",
        ] {
            sqlx::query(ddl).execute(&pool).await.unwrap();
        }
        pool
    }

    /// Commit `keys` in one transaction, then add them as a batch does (after its commit).
    async fn commit(pool: &SqlitePool, sent: &SentKeys, keys: &[(UserId, String)]) {
        let mut tx = pool.begin().await.unwrap();
        for (sender, client_msg_id) in keys {
            sqlx::query("INSERT INTO events (sender_id, client_msg_id) VALUES ($1, $2)")
                .bind(sender)
                .bind(client_msg_id)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        sent.add(keys.iter().map(|(s, c)| (*s, c.as_str())));
    }

    fn keys(sender: UserId, prefix: &str, n: usize) -> Vec<(UserId, String)> {
        (0..n).map(|i| (sender, format!("{prefix}{i}"))).collect()
    }

    fn scan_done(sent: &SentKeys) -> bool {
        let filters = sent.read();
        !filters.scanning && (filters.answering.is_some() || filters.given_up)
    }

    /// Wait for the scan the first question started (a sentinel, not a timeout: the
    /// deadline only keeps a broken scan from hanging the suite).
    async fn until_scanned(sent: &SentKeys) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !scan_done(sent) {
            assert!(Instant::now() < deadline, "the scan never finished");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn count_new(sent: &Arc<SentKeys>, keys: &[(UserId, String)]) -> usize {
        keys.iter().filter(|(s, c)| !sent.may_hold(*s, c)).count()
    }

    #[tokio::test]
    async fn stored_keys_may_be_held_and_new_ones_are_known_new() {
        let dir = tempfile::tempdir().unwrap();
        let pool = events_file(&dir).await;
        let sent = Arc::new(SentKeys::new(pool.clone(), 1_000_000));
        // Three chunks of the scan, over several senders; a key-less event beside them.
        let stored: Vec<_> = (1..=4).flat_map(|s| keys(s, "m", 5_000)).collect();
        commit(&pool, &sent, &stored).await;
        sqlx::query("INSERT INTO events (sender_id) VALUES (9)")
            .execute(&pool)
            .await
            .unwrap();

        let fresh: Vec<_> = (1..=4).flat_map(|s| keys(s, "new", 2_500)).collect();
        assert_eq!(
            count_new(&sent, &fresh[..1]),
            0,
            "nothing is known before the scan"
        );
        until_scanned(&sent).await;
        assert_eq!(
            count_new(&sent, &stored),
            0,
            "a stored key was answered new"
        );
        let known_new = count_new(&sent, &fresh);
        assert!(
            known_new >= fresh.len() * 97 / 100,
            "only {known_new} of {} new keys known new",
            fresh.len()
        );

        // Committed after the scan: held from the batch's return on.
        commit(&pool, &sent, &fresh).await;
        assert_eq!(count_new(&sent, &fresh), 0);
    }

    #[tokio::test]
    async fn keys_committed_while_the_scan_runs_are_not_missed() {
        let dir = tempfile::tempdir().unwrap();
        let pool = events_file(&dir).await;
        let sent = Arc::new(SentKeys::new(pool.clone(), 1_000_000));
        commit(&pool, &sent, &keys(2, "old", 100_000)).await;

        // Sender 1's keys sort before every stored one, so once the scan has read its
        // first chunk it would never see them: only their batches can add them.
        assert!(sent.may_hold(1, "probe"));
        let mut during = Vec::new();
        let mut batches_while_scanning = 0;
        while !scan_done(&sent) {
            let batch = keys(1, &format!("b{batches_while_scanning}-"), 10);
            commit(&pool, &sent, &batch).await;
            during.extend(batch);
            batches_while_scanning += 1;
        }
        assert!(
            batches_while_scanning > 1,
            "the scan ended before any batch"
        );
        assert_eq!(
            count_new(&sent, &during),
            0,
            "a key committed during the scan was missed"
        );
    }

    #[tokio::test]
    async fn a_full_filter_is_replaced_by_a_bigger_one_that_goes_on_answering() {
        let dir = tempfile::tempdir().unwrap();
        let pool = events_file(&dir).await;
        let sent = Arc::new(SentKeys::sized(pool.clone(), 1_000_000, 1_000));
        commit(&pool, &sent, &keys(1, "a", 100)).await;
        assert!(sent.may_hold(1, "probe"));
        until_scanned(&sent).await;
        assert_eq!(sent.read().answering.as_ref().unwrap().capacity, 1_000);

        let more = keys(1, "b", 1_500);
        commit(&pool, &sent, &more).await;
        assert!(sent.read().answering.as_ref().unwrap().full());
        // The next question starts the bigger filter; the full one answers meanwhile.
        assert_eq!(count_new(&sent, &more[..1]), 0);
        until_scanned(&sent).await;
        let capacity = sent.read().answering.as_ref().unwrap().capacity;
        assert!(capacity >= 2 * 1_600, "grew to {capacity} only");
        assert_eq!(count_new(&sent, &keys(1, "a", 100)), 0);
        assert_eq!(count_new(&sent, &more), 0);
        let fresh = keys(1, "c", 1_000);
        assert!(count_new(&sent, &fresh) >= 970);
    }

    #[tokio::test]
    async fn past_the_limit_every_key_may_be_held() {
        let dir = tempfile::tempdir().unwrap();
        let pool = events_file(&dir).await;

        // More keys than the limit at the start: no filter at all.
        commit(&pool, &SentKeys::new(pool.clone(), 0), &keys(1, "a", 500)).await;
        let small = Arc::new(SentKeys::new(pool.clone(), 100));
        assert!(small.may_hold(1, "probe"));
        until_scanned(&small).await;
        assert!(small.read().given_up);
        assert_eq!(count_new(&small, &keys(1, "new", 100)), 0);

        // Room at the start, filled up to the limit later: the filter is dropped.
        let limited = Arc::new(SentKeys::sized(pool.clone(), 3_000, 1_000));
        assert!(limited.may_hold(1, "probe"));
        until_scanned(&limited).await;
        assert!(count_new(&limited, &keys(1, "new", 100)) > 90);
        commit(&pool, &limited, &keys(1, "b", 3_000)).await;
        // Starts the bigger filter; the full one answers (for a key never stored, most
        // likely "new": no assertion on it).
        limited.may_hold(1, "probe");
        until_scanned(&limited).await;
        assert!(limited.read().given_up);
        assert_eq!(count_new(&limited, &keys(1, "new", 100)), 0);

        // 0 turns the filter off: no scan is ever started.
        let off = Arc::new(SentKeys::new(pool.clone(), 0));
        assert!(off.may_hold(1, "probe"));
        assert!(!off.read().scanning && off.read().answering.is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the keys (any sender, any text, repeats), none stored before the scan
        /// or committed after it is ever answered new.
        #[test]
        fn no_stored_key_is_ever_answered_new(
            before in proptest::collection::hash_set((any::<i64>(), ".{0,40}"), 0..60),
            after in proptest::collection::hash_set((any::<i64>(), ".{0,40}"), 0..60),
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let pool = events_file(&dir).await;
                let sent = Arc::new(SentKeys::new(pool.clone(), 1_000_000));
                let before: Vec<_> = before.into_iter().collect();
                let after: Vec<_> = after.into_iter().filter(|k| !before.contains(k)).collect();
                commit(&pool, &sent, &before).await;
                sent.may_hold(0, "");
                until_scanned(&sent).await;
                commit(&pool, &sent, &after).await;
                prop_assert_eq!(count_new(&sent, &before), 0);
                prop_assert_eq!(count_new(&sent, &after), 0);
                Ok(())
            })?;
        }
    }
}

-- A run of new messages is indexed for search in one statement, not row by row (issue 17).
--
-- FTS5 writes the terms it holds in memory into a new segment of the index at every
-- statement savepoint of a transaction, not only at its commit: SQLite opens one for each
-- statement that may need undoing, as every INSERT into `events` does (its triggers).
-- The group commit inserts a run of new messages one statement per message
-- (`store::sqlite_messages`), so through the trigger below each message after a run's
-- first became a segment of its own: one segment per message, each written, and later
-- merged, apart. Indexing the run's messages in one statement at its end writes one
-- segment per commit.
--
-- While `search_index_deferred` holds its row, the insert trigger leaves new rows to the
-- writer, which indexes them before it removes the row again, in the same transaction.
-- Every other insert, and any transaction that ends without the row (a rollback removes
-- it with the rest), is indexed by the trigger as before.
CREATE TABLE search_index_deferred (
    only INTEGER PRIMARY KEY CHECK (only = 1)
);

DROP TRIGGER events_fts_insert;
CREATE TRIGGER events_fts_insert AFTER INSERT ON events
WHEN new.search_text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM search_index_deferred)
BEGIN
    INSERT INTO events_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;

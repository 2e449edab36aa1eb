-- The search index's `secure-delete` (0010) only while text leaves it (issue 17).
--
-- With FTS5's `secure-delete` on, every commit writes its new index entries entry by
-- entry instead of a term's whole list at once, and costs about three times the CPU of
-- the same inserts without it: measured, 40 against 12 µs per message in batches of 50,
-- most of the server's cost per message on SQLite. The option only matters for deletes
-- (a deleted message's entries are removed from the index at once rather than masked by
-- a tombstone until a merge), and FTS5 applies it when it writes out a transaction's
-- pending entries, at commit.
--
-- So it is off for new messages, and whatever removes text from the index turns it on
-- first, inside the same transaction, before FTS5 sees the delete: the two triggers below
-- are the only writers of FTS5 deletes. A batch of new messages only turns it off again
-- at its start (`store::sqlite_messages`), when it finds it on. A transaction that mixes
-- deletes and new messages writes all of it with the option on: slower, never less
-- erased.
INSERT INTO events_fts (events_fts, rank) VALUES ('secure-delete', 0);

DROP TRIGGER events_fts_update;
CREATE TRIGGER events_fts_update AFTER UPDATE OF search_text ON events
BEGIN
    INSERT INTO events_fts (events_fts, rank)
        SELECT 'secure-delete', 1
         WHERE old.search_text IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM events_fts_config WHERE k = 'secure-delete' AND v = 1);
    INSERT INTO events_fts (events_fts, rowid, search_text)
        SELECT 'delete', old.id, old.search_text WHERE old.search_text IS NOT NULL;
    INSERT INTO events_fts (rowid, search_text)
        SELECT new.id, new.search_text WHERE new.search_text IS NOT NULL;
END;

DROP TRIGGER events_fts_delete;
CREATE TRIGGER events_fts_delete AFTER DELETE ON events
WHEN old.search_text IS NOT NULL
BEGIN
    INSERT INTO events_fts (events_fts, rank)
        SELECT 'secure-delete', 1
         WHERE NOT EXISTS (SELECT 1 FROM events_fts_config WHERE k = 'secure-delete' AND v = 1);
    INSERT INTO events_fts (events_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
END;

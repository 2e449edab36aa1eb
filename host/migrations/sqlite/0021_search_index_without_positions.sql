-- The search index keeps which messages hold each trigram, not where (issue 17).
--
-- Migration 0010 built `events_fts` with FTS5's default `detail=full`: every trigram's
-- entry listed its positions in the text, so a search could ask FTS5 for the trigrams of a
-- word as a phrase. But the search never relied on that: every word is checked on the
-- candidate rows with `instr` (`store::sql::search_sql`). Now FTS5 is asked for the rows
-- holding *all* of a word's trigrams (`detail=none`), and `instr` confirms the word; the
-- same rows come back.
--
-- What the positions cost, measured (docs/benchmarks.md, "Message path, sixth step"):
-- - the index was about 3 times bigger for chat text (2.5× the text it indexes against
--   0.76×), and more for repetitive text;
-- - FTS5 merges a term's whole list in one go, so merging the biggest segments stalled the
--   commit that triggered it for tens of milliseconds — the tail of send→ack latency.
--
-- `columnsize=0`: FTS5 also stopped keeping each row's token count (`events_fts_docsize`,
-- one more B-tree row per message). Only its ranking functions read it, and search orders
-- by recency, never by rank.
--
-- The index is rebuilt from `events` exactly as the triggers fill it (only rows with
-- search text), once, at the first start of this version: about 5 s of CPU per million
-- messages of ~75 characters (measured with FTS5 alone), during which the server does not
-- serve yet. The triggers of 0020 name the table, not its options, and stay as they are;
-- `secure-delete` starts off, and the first removal turns it on (0020). FTS5's own
-- `automerge` is set at every start (`store::sqlite_index_merge`).
DROP TABLE events_fts;

CREATE VIRTUAL TABLE events_fts USING fts5(
    search_text,
    content = 'events',
    content_rowid = 'id',
    tokenize = 'trigram case_sensitive 1',
    detail = 'none',
    columnsize = 0
);

INSERT INTO events_fts (rowid, search_text)
    SELECT id, search_text FROM events WHERE search_text IS NOT NULL;

-- Search (issue 18). `search_text` is a message's current body folded for search (lower
-- case, accents off, compatibility forms unified; `store::search_text::fold`), written by
-- the server with the body and cleared with it; NULL for every other event kind. Rows
-- stored before this migration are filled in by the server at start (or by
-- `switchboard search reindex`).
ALTER TABLE events ADD COLUMN search_text TEXT;

-- The index: FTS5 over `search_text` with the trigram tokenizer, so any substring of three
-- or more characters is found through it (partial words, hyphenated words, addresses,
-- Chinese and Japanese). The text is folded already, hence case_sensitive 1. It keeps no
-- copy of the text (external content: `events`), and `secure-delete` removes a deleted
-- message's entries at once rather than leaving them in old index segments: erased text
-- must leave the database, the index included.
CREATE VIRTUAL TABLE events_fts USING fts5(
    search_text,
    content = 'events',
    content_rowid = 'id',
    tokenize = 'trigram case_sensitive 1'
);
INSERT INTO events_fts (events_fts, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER events_fts_insert AFTER INSERT ON events
WHEN new.search_text IS NOT NULL
BEGIN
    INSERT INTO events_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;

CREATE TRIGGER events_fts_update AFTER UPDATE OF search_text ON events
BEGIN
    INSERT INTO events_fts (events_fts, rowid, search_text)
        SELECT 'delete', old.id, old.search_text WHERE old.search_text IS NOT NULL;
    INSERT INTO events_fts (rowid, search_text)
        SELECT new.id, new.search_text WHERE new.search_text IS NOT NULL;
END;

CREATE TRIGGER events_fts_delete AFTER DELETE ON events
WHEN old.search_text IS NOT NULL
BEGIN
    INSERT INTO events_fts (events_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
END;

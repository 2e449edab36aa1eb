-- Search (issue 18). `search_text` is a message's current body folded for search (lower
-- case, accents off, compatibility forms unified; `store::search_text::fold`), written by
-- the server with the body and cleared with it; NULL for every other event kind. Rows
-- stored before this migration are filled in by the server at start (or by
-- `switchboard search reindex`).
ALTER TABLE events ADD COLUMN search_text TEXT;

-- pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Trigram GIN index: `search_text LIKE '%…%'` for any substring of three or more characters
-- is answered from it (partial words, hyphenated words, addresses, Chinese and Japanese).
CREATE INDEX events_search ON events USING gin (search_text gin_trgm_ops)
    WHERE search_text IS NOT NULL;

-- Messages whose search text is still to be written (stored before search existed, or
-- while `store.search_index` was off). Normally empty, so the server's check at start
-- ("is there anything to index?") and the backfill read this small index instead of
-- scanning every message; rows leave it as they are indexed.
CREATE INDEX events_search_backlog ON events (id)
    WHERE kind = 'message' AND deleted = 0 AND body IS NOT NULL AND search_text IS NULL;

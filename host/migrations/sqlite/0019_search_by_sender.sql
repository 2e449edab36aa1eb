-- `from:` searches (issue 18): a sender's live messages, newest first. A search naming
-- senders who wrote few messages walks them here instead of the word index, which would
-- hand back every message with the word, most of them from others
-- (`store::sql::SearchPlan::BySender`). Written as `Dialect::LIVE_MESSAGE` is, so the
-- planner may use it.
CREATE INDEX events_sender_live ON events (sender_id, id) WHERE kind = 'message' AND deleted = 0;

-- `from:` searches (issue 18): a sender's live messages, newest first, so the planner can
-- walk a sender's messages instead of the trigram index, which would hand back every
-- message with the word, most of them from others. Written as `Dialect::LIVE_MESSAGE` is,
-- so the planner may use it.
CREATE INDEX events_sender_live ON events (sender_id, id) WHERE kind = 'message' AND NOT deleted;

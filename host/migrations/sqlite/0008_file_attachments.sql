-- A file is attached to at most one message, in the same transaction that stores it.
ALTER TABLE files ADD COLUMN message_id INTEGER REFERENCES events (id);
CREATE INDEX files_message ON files (message_id);

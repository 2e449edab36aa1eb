-- Every event takes its room's next seq. Keeping `rooms.last_seq` in step inside SQLite lets
-- the common write (a new message) be a single INSERT … SELECT that reads `last_seq + 1`:
-- one statement, one round trip to the database thread, instead of a separate UPDATE.
-- For writers that bumped `last_seq` themselves first, this sets the same value again.
CREATE TRIGGER events_advance_room_seq AFTER INSERT ON events
BEGIN
    UPDATE rooms SET last_seq = NEW.seq WHERE id = NEW.room_id AND last_seq < NEW.seq;
END;

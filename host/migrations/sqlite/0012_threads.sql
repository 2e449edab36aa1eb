-- Threads (issue 19). A reply is an ordinary message of the room's log that names the
-- top-level message it answers (`thread_root`); `also_to_room` is the sender's wish that
-- clients show it in the room's timeline too. No foreign key: retention may erase a root
-- before its replies, which then stay readable in the thread view by the root's id.
ALTER TABLE events ADD COLUMN thread_root INTEGER;
ALTER TABLE events ADD COLUMN also_to_room INTEGER NOT NULL DEFAULT 0;

-- A thread's replies in order (thread view, reply counts).
CREATE INDEX events_thread ON events (thread_root, seq) WHERE thread_root IS NOT NULL;

-- How far each user has read each thread they opened (the room's read cursor is separate).
CREATE TABLE thread_reads (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    root_id INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (user_id, root_id)
) WITHOUT ROWID;

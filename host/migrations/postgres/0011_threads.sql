-- Threads (issue 19). A reply is an ordinary message of the room's log that names the
-- top-level message it answers (`thread_root`); `also_to_room` is the sender's wish that
-- clients show it in the room's timeline too. No foreign key: retention may erase a root
-- before its replies, which then stay readable in the thread view by the root's id.
ALTER TABLE events ADD COLUMN thread_root BIGINT;
ALTER TABLE events ADD COLUMN also_to_room BOOLEAN NOT NULL DEFAULT FALSE;

-- A thread's replies in order (thread view, reply counts).
CREATE INDEX events_thread ON events (thread_root, seq) WHERE thread_root IS NOT NULL;

-- How far each user has read each thread they opened (the room's read cursor is separate).
CREATE TABLE thread_reads (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    root_id BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (user_id, root_id)
);

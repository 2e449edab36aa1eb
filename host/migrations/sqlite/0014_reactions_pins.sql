-- Reactions and pins (issue 19). Each is an event of the room's log (`reaction`,
-- `reaction_removed`, `pinned`, `unpinned`: `target` is the message, a reaction's `body` its
-- emoji); the tables below hold the current state that history and the pins list read.
--
-- `events.kind` is checked by a CHECK constraint that SQLite cannot ALTER. Widening a CHECK
-- does not change how any row is stored, and no stored row can break the wider rule, so this
-- uses the in-place procedure SQLite documents for removing a CHECK (lang_altertable,
-- section 7) instead of copying the whole log into a new table: edit the table's SQL in the
-- schema, reload the schema on this connection, and let the CREATE TABLE statements that
-- follow bump the schema cookie so that every other connection reloads it too.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, '''member_left''))',
                     '''member_left'', ''reaction'', ''reaction_removed'', ''pinned'', ''unpinned''))')
 WHERE type = 'table' AND name = 'events';
PRAGMA writable_schema = RESET;
-- Stop here (CHECK fails, the migration rolls back) unless the edit took.
CREATE TEMP TABLE kind_check_widened (ok INTEGER CHECK (ok = 1));
INSERT INTO kind_check_widened
    SELECT count(*) FROM sqlite_schema
     WHERE type = 'table' AND name = 'events' AND sql LIKE '%''unpinned''))%';
DROP TABLE kind_check_widened;

-- Who reacted to which message with what: one row per (message, emoji, user), so a user
-- reacts with an emoji at most once. `event_id` is the `reaction` event that added it (a
-- repeated reaction is answered with it). No foreign key to `events`, as for threads:
-- deleting or erasing a message removes its rows here in the same transaction.
CREATE TABLE reactions (
    message_id INTEGER NOT NULL,
    emoji      TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_id   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;

-- A room's pinned messages; `event_id` is the `pinned` event.
CREATE TABLE pins (
    room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    message_id INTEGER NOT NULL,
    pinned_by  INTEGER NOT NULL REFERENCES users (id),
    event_id   INTEGER NOT NULL,
    pinned_at  INTEGER NOT NULL,
    PRIMARY KEY (room_id, message_id)
) WITHOUT ROWID;
CREATE INDEX pins_message ON pins (message_id);

-- Whether every member may pin (owners and admins always may).
ALTER TABLE rooms ADD COLUMN members_may_pin INTEGER NOT NULL DEFAULT 0;

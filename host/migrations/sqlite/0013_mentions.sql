-- Mentions (issue 19). A message keeps whom it mentions (`@name`s resolved to members,
-- comma-separated ids) and whether it says `@room`; the event carries both to clients.
-- `user_mentions` indexes the named ones per user, for per-room mention counts and the
-- mentions list; `@room` messages are found through `events_room_mentions`.
ALTER TABLE events ADD COLUMN mentions TEXT;
ALTER TABLE events ADD COLUMN mentions_room INTEGER NOT NULL DEFAULT 0;

CREATE INDEX events_room_mentions ON events (room_id, seq) WHERE mentions_room;

CREATE TABLE user_mentions (
    user_id  INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    room_id  INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (user_id, event_id)
) WITHOUT ROWID;
CREATE INDEX user_mentions_event ON user_mentions (event_id);

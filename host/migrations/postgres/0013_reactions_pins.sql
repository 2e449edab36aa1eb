-- Reactions and pins (issue 19). Each is an event of the room's log (`reaction`,
-- `reaction_removed`, `pinned`, `unpinned`: `target` is the message, a reaction's `body` its
-- emoji); the tables below hold the current state that history and the pins list read.
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check
    CHECK (kind IN ('message', 'edit', 'delete', 'member_joined', 'member_left',
                    'reaction', 'reaction_removed', 'pinned', 'unpinned'));

-- Who reacted to which message with what: one row per (message, emoji, user), so a user
-- reacts with an emoji at most once. `event_id` is the `reaction` event that added it (a
-- repeated reaction is answered with it). No foreign key to `events`, as for threads:
-- deleting or erasing a message removes its rows here in the same transaction.
CREATE TABLE reactions (
    message_id BIGINT NOT NULL,
    emoji      TEXT   NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_id   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

-- A room's pinned messages; `event_id` is the `pinned` event.
CREATE TABLE pins (
    room_id    BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    message_id BIGINT NOT NULL,
    pinned_by  BIGINT NOT NULL REFERENCES users (id),
    event_id   BIGINT NOT NULL,
    pinned_at  BIGINT NOT NULL,
    PRIMARY KEY (room_id, message_id)
);
CREATE INDEX pins_message ON pins (message_id);

-- Whether every member may pin (owners and admins always may).
ALTER TABLE rooms ADD COLUMN members_may_pin BOOLEAN NOT NULL DEFAULT FALSE;

-- Switchboard schema, SQLite flavour. Times are milliseconds since the Unix epoch (UTC);
-- booleans are 0/1 integers; JSON is stored as text.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    is_bot        INTEGER NOT NULL DEFAULT 0,
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_hash TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0
);
-- revoke_user_sessions looks up a user's live sessions.
CREATE INDEX sessions_user_live ON sessions (user_id) WHERE revoked = 0;

CREATE TABLE rooms (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('direct', 'group')),
    name       TEXT,
    topic      TEXT,
    created_by INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    -- The highest seq assigned in this room; bumped inside each append transaction.
    last_seq   INTEGER NOT NULL DEFAULT 0,
    -- '<low user id>:<high user id>' for direct rooms, NULL for groups. UNIQUE makes "one
    -- direct room per pair" a database fact, not a hope.
    direct_key TEXT    UNIQUE,
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE members (
    room_id   INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
-- rooms_for_user starts from the user's memberships.
CREATE INDEX members_user ON members (user_id);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    room_id       INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    kind          TEXT    NOT NULL
                  CHECK (kind IN ('message', 'edit', 'delete', 'member_joined', 'member_left')),
    sender_id     INTEGER NOT NULL REFERENCES users (id),
    target        INTEGER,
    body          TEXT,
    metadata      TEXT    NOT NULL DEFAULT '{}',
    client_msg_id TEXT,
    created_at    INTEGER NOT NULL,
    edited_at     INTEGER,
    deleted       INTEGER NOT NULL DEFAULT 0,
    -- Also the index for paging a room's log by seq.
    UNIQUE (room_id, seq)
);
-- Idempotent sends: one event per (sender, client_msg_id).
CREATE UNIQUE INDEX events_client_msg ON events (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
-- Deleting a message erases the bodies of its edits.
CREATE INDEX events_edits ON events (target) WHERE kind = 'edit';
-- Unread counts scan only live messages after the read cursor.
CREATE INDEX events_live_messages ON events (room_id, seq) WHERE kind = 'message' AND deleted = 0;

CREATE TABLE read_cursors (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE plugin_kv (
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (plugin, key)
);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    detail  TEXT    NOT NULL DEFAULT '{}'
);

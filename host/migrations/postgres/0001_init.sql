-- Switchboard schema, PostgreSQL flavour. Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE users (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    password_hash TEXT,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    is_bot        BOOLEAN NOT NULL DEFAULT FALSE,
    active        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE sessions (
    id           TEXT    PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_hash TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    revoked      BOOLEAN NOT NULL DEFAULT FALSE
);
-- revoke_user_sessions looks up a user's live sessions.
CREATE INDEX sessions_user_live ON sessions (user_id) WHERE NOT revoked;

CREATE TABLE rooms (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT   NOT NULL CHECK (kind IN ('direct', 'group')),
    name       TEXT,
    topic      TEXT,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    -- The highest seq assigned in this room. Appends bump it with UPDATE … RETURNING, whose
    -- row lock serialises writers from every node, so seqs stay gap-free cluster-wide.
    last_seq   BIGINT NOT NULL DEFAULT 0,
    -- '<low user id>:<high user id>' for direct rooms, NULL for groups. UNIQUE makes "one
    -- direct room per pair" hold even when two nodes create it at once.
    direct_key TEXT   UNIQUE,
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE members (
    room_id   BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
-- rooms_for_user starts from the user's memberships.
CREATE INDEX members_user ON members (user_id);

CREATE TABLE events (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id       BIGINT  NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq           BIGINT  NOT NULL,
    kind          TEXT    NOT NULL
                  CHECK (kind IN ('message', 'edit', 'delete', 'member_joined', 'member_left')),
    sender_id     BIGINT  NOT NULL REFERENCES users (id),
    target        BIGINT,
    body          TEXT,
    metadata      JSONB   NOT NULL DEFAULT '{}',
    client_msg_id TEXT,
    created_at    BIGINT  NOT NULL,
    edited_at     BIGINT,
    deleted       BOOLEAN NOT NULL DEFAULT FALSE,
    -- Also the index for paging a room's log by seq.
    UNIQUE (room_id, seq)
);
-- Idempotent sends across nodes: one event per (sender, client_msg_id).
CREATE UNIQUE INDEX events_client_msg ON events (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
-- Deleting a message erases the bodies of its edits.
CREATE INDEX events_edits ON events (target) WHERE kind = 'edit';
-- Unread counts scan only live messages after the read cursor.
CREATE INDEX events_live_messages ON events (room_id, seq) WHERE kind = 'message' AND NOT deleted;

CREATE TABLE read_cursors (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id BIGINT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE plugin_kv (
    plugin TEXT  NOT NULL,
    -- Byte order (as in SQLite), so prefix ranges and "sorted" mean the same on both backends.
    key    TEXT  COLLATE "C" NOT NULL,
    value  BYTEA NOT NULL,
    PRIMARY KEY (plugin, key)
);

CREATE TABLE audit (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT   NOT NULL,
    action  TEXT   NOT NULL,
    subject TEXT   NOT NULL,
    detail  JSONB  NOT NULL DEFAULT '{}'
);

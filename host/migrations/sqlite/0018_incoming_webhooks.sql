-- Incoming webhooks (issue 23): a secret URL that posts into one room as its own bot user.
-- Only a digest of the secret is kept (`key_hash`, SHA-256 hex): the URL is shown once.
-- A revoked hook keeps its row, so the messages its bot posted still say where they came from.
CREATE TABLE incoming_webhooks (
    id          INTEGER PRIMARY KEY,
    room_id     INTEGER NOT NULL REFERENCES rooms (id),
    bot_user_id INTEGER NOT NULL REFERENCES users (id),
    name        TEXT    NOT NULL,
    key_hash    TEXT    NOT NULL UNIQUE,
    created_by  INTEGER NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX incoming_webhooks_room ON incoming_webhooks (room_id);

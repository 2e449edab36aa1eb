-- Incoming webhooks (issue 23): a secret URL that posts into one room as its own bot user.
-- Only a digest of the secret is kept (`key_hash`, SHA-256 hex): the URL is shown once.
-- A revoked hook keeps its row, so the messages its bot posted still say where they came from.
CREATE TABLE incoming_webhooks (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id     BIGINT NOT NULL REFERENCES rooms (id),
    bot_user_id BIGINT NOT NULL REFERENCES users (id),
    name        TEXT   NOT NULL,
    key_hash    TEXT   NOT NULL UNIQUE,
    created_by  BIGINT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX incoming_webhooks_room ON incoming_webhooks (room_id);

-- Files uploaded to rooms. A row is written before the bytes (`state = 'uploading'`) and
-- becomes `ready` once the object is complete, so a crash mid-upload leaves a row that the
-- next start finds and removes together with whatever reached storage.
CREATE TABLE files (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id      INTEGER NOT NULL REFERENCES rooms (id),
    uploader_id  INTEGER NOT NULL REFERENCES users (id),
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL DEFAULT '',
    size         INTEGER NOT NULL DEFAULT 0,
    sha256       TEXT    NOT NULL DEFAULT '',
    storage_key  TEXT    NOT NULL UNIQUE,
    state        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX files_room ON files (room_id);
CREATE INDEX files_state ON files (state);

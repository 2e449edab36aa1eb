-- Legal holds: while one covers a message, its earlier text is kept when it is edited or
-- deleted (in `event_versions`), whatever users do. Criteria are JSON arrays of ids (empty:
-- any) and an optional time range; `released_at` is when the hold stops (in the future
-- while a release waits out its delay).
CREATE TABLE legal_holds (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 TEXT   NOT NULL,
    users                TEXT   NOT NULL DEFAULT '[]',
    rooms                TEXT   NOT NULL DEFAULT '[]',
    from_at              BIGINT,
    until_at             BIGINT,
    created_by           BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    release_requested_by BIGINT,
    release_requested_at BIGINT,
    released_at          BIGINT
);

-- What a message said before an edit or a delete replaced it, kept for compliance (under a
-- hold, or always with `compliance.preserve_deleted`).
CREATE TABLE event_versions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    BIGINT NOT NULL REFERENCES events (id),
    replaced_at BIGINT NOT NULL,
    cause       TEXT   NOT NULL,
    body        TEXT,
    metadata    TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX event_versions_event ON event_versions (event_id);

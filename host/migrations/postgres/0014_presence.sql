-- Presence (issue 19): a user may hide theirs (others then see them offline). Presence
-- itself is not stored: it lives in the nodes' memory, derived from live sockets.
ALTER TABLE users ADD COLUMN presence_hidden BOOLEAN NOT NULL DEFAULT FALSE;

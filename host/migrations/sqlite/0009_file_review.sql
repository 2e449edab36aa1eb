-- Files after review (a quarantine: which plugin, why), thumbnails of images, and
-- resumable uploads.
-- A file a plugin quarantined: who (the plugin) and why, shown to reviewers.
ALTER TABLE files ADD COLUMN quarantined_by TEXT;
ALTER TABLE files ADD COLUMN quarantine_reason TEXT;
-- Images get a thumbnail object beside theirs (`<storage_key>.thumb`).
ALTER TABLE files ADD COLUMN has_thumbnail INTEGER NOT NULL DEFAULT 0;
-- Resumable uploads (state `receiving`): the bytes committed so far (`size` is announced).
ALTER TABLE files ADD COLUMN received INTEGER NOT NULL DEFAULT 0;

-- The compliance role: reads the audit log (each read is itself audited) and, as they come,
-- holds, retention and exports. Separate from `is_admin`: running the server and reviewing
-- what happened on it are different duties.
ALTER TABLE users ADD COLUMN is_compliance BOOLEAN NOT NULL DEFAULT FALSE;

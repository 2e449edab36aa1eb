-- The audit log becomes a hash chain: each record names the hash of the one before it, and
-- its own hash covers that link and its content (see `store/chain.rs`). `seq` is the
-- record's position in the chain. Records written before this migration are chained by the
-- server at start, in id order (`chain_unsealed`).
ALTER TABLE audit ADD COLUMN seq INTEGER;
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_seq ON audit (seq);

-- The chain's head: one row (written by the server at start), locked by every append, so that appends from any number of
-- writers form one chain and never fork.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);

-- Signed statements of the head at a moment: after one, a truncated or rewritten chain up
-- to that point shows.
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    head_hash TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    key_id    TEXT    NOT NULL,
    signature TEXT    NOT NULL
);

-- Per-room retention: messages older than `days` are erased (held ones excepted). Rooms
-- without a row follow `compliance.retention_days`.
CREATE TABLE retention_policies (
    room_id INTEGER PRIMARY KEY REFERENCES rooms (id),
    days    INTEGER NOT NULL
);

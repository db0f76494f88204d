-- The security-event log: a hash chain (see fleetward-events) with signed
-- checkpoints. Times are Unix milliseconds (UTC); hashes are 32 bytes.

CREATE TABLE security_events (
    seq         INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    device      TEXT,
    source      TEXT,
    server_time INTEGER NOT NULL,
    device_time INTEGER,
    message     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
) STRICT;
CREATE INDEX security_events_time ON security_events (server_time);
CREATE INDEX security_events_device ON security_events (device, seq);
CREATE INDEX security_events_kind ON security_events (kind, seq);

-- Where the chain continues: one row, updated in the same transaction as
-- every append, so appends serialise on it (a row lock in PostgreSQL).
CREATE TABLE event_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB NOT NULL
) STRICT;
INSERT INTO event_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

CREATE TABLE event_checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL,
    signed_at  INTEGER NOT NULL,
    signature  BLOB NOT NULL
) STRICT;

-- The checkpoint a pruned prefix ends at; pruning may delete entries up to
-- and including its seq, and nothing else.
CREATE TABLE event_anchor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
) STRICT;

CREATE TRIGGER security_events_no_update BEFORE UPDATE ON security_events
BEGIN SELECT RAISE(ABORT, 'security_events is append-only'); END;
CREATE TRIGGER security_events_no_delete BEFORE DELETE ON security_events
WHEN OLD.seq > COALESCE((SELECT seq FROM event_anchor WHERE id = 1), 0)
BEGIN SELECT RAISE(ABORT, 'security_events is append-only beyond the retention anchor'); END;
CREATE TRIGGER event_checkpoints_no_update BEFORE UPDATE ON event_checkpoints
BEGIN SELECT RAISE(ABORT, 'event_checkpoints is append-only'); END;

-- The security-event log, the PostgreSQL twin of sqlite/0005.

CREATE TABLE security_events (
    seq         BIGINT PRIMARY KEY,
    kind        TEXT COLLATE "C" NOT NULL,
    severity    TEXT COLLATE "C" NOT NULL,
    device      TEXT COLLATE "C",
    source      TEXT,
    server_time BIGINT NOT NULL,
    device_time BIGINT,
    message     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_hash   BYTEA NOT NULL,
    hash        BYTEA NOT NULL
);
CREATE INDEX security_events_time ON security_events (server_time);
CREATE INDEX security_events_device ON security_events (device, seq);
CREATE INDEX security_events_kind ON security_events (kind, seq);

-- Where the chain continues: one row. Every write transaction that appends
-- locks it first (SELECT … FOR UPDATE), so appends from every replica
-- serialise on it and the chain never forks.
CREATE TABLE event_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO event_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE event_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       BYTEA NOT NULL,
    signed_at  BIGINT NOT NULL,
    signature  BYTEA NOT NULL
);

CREATE TABLE event_anchor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);

CREATE TRIGGER security_events_no_update BEFORE UPDATE ON security_events
    FOR EACH ROW EXECUTE FUNCTION fleetward_append_only();

-- Deleting is allowed only up to the retention anchor.
CREATE FUNCTION fleetward_events_prune_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq > COALESCE((SELECT seq FROM event_anchor WHERE id = 1), 0) THEN
        RAISE EXCEPTION 'security_events is append-only beyond the retention anchor';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER security_events_no_delete BEFORE DELETE ON security_events
    FOR EACH ROW EXECUTE FUNCTION fleetward_events_prune_only();
CREATE TRIGGER event_checkpoints_no_update BEFORE UPDATE ON event_checkpoints
    FOR EACH ROW EXECUTE FUNCTION fleetward_append_only();

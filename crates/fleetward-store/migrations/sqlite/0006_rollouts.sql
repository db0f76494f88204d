-- Rollouts: one release shipped, phase by phase, to the devices a query
-- selects; one execution per device and rollout; every execution state
-- change kept. Times are Unix milliseconds (UTC), as in 0001.

CREATE TABLE rollouts (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    release_version  TEXT NOT NULL REFERENCES releases (version),
    hardware         TEXT NOT NULL,
    target           TEXT NOT NULL,
    -- The normalised settings (JSON); parsed again by fleetward-rollout.
    settings         TEXT NOT NULL,
    state            TEXT NOT NULL,
    current_phase    INTEGER NOT NULL,
    phase_started_at INTEGER NOT NULL,
    soak_started_at  INTEGER,
    pause_reason     TEXT,
    rollback_of      TEXT REFERENCES rollouts (id),
    created_at       INTEGER NOT NULL,
    created_by       TEXT NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX rollouts_state ON rollouts (state, seq);

-- `released_at`: the rollout's limits (phase, rate, window) let this
-- execution go out; the director offers it on the device's next poll.
CREATE TABLE rollout_executions (
    seq         INTEGER PRIMARY KEY,
    rollout_seq INTEGER NOT NULL REFERENCES rollouts (seq),
    device_id   TEXT NOT NULL,
    phase       INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    state       TEXT NOT NULL,
    failure     TEXT,
    reason      TEXT,
    released_at INTEGER,
    offered_at  INTEGER,
    updated_at  INTEGER NOT NULL,
    UNIQUE (rollout_seq, device_id)
) STRICT;
CREATE INDEX rollout_executions_progress ON rollout_executions (rollout_seq, state, phase);
-- A device is in at most one unfinished execution, whatever the rollout:
-- the database itself refuses a second one (see ARCHITECTURE.md).
CREATE UNIQUE INDEX rollout_executions_one_open ON rollout_executions (device_id)
    WHERE state IN ('queued', 'offered', 'downloading', 'downloaded', 'installing', 'rebooting', 'verifying');
CREATE INDEX rollout_executions_offered ON rollout_executions (rollout_seq, offered_at)
    WHERE offered_at IS NOT NULL;

CREATE TABLE execution_transitions (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_seq INTEGER NOT NULL REFERENCES rollout_executions (seq),
    attempt       INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    from_state    TEXT,
    to_state      TEXT NOT NULL,
    failure       TEXT,
    reason        TEXT,
    actor         TEXT NOT NULL
) STRICT;
CREATE INDEX execution_transitions_execution ON execution_transitions (execution_seq, seq);

CREATE TRIGGER execution_transitions_no_update BEFORE UPDATE ON execution_transitions
BEGIN SELECT RAISE(ABORT, 'execution_transitions is append-only'); END;
CREATE TRIGGER execution_transitions_no_delete BEFORE DELETE ON execution_transitions
BEGIN SELECT RAISE(ABORT, 'execution_transitions is append-only'); END;

-- Times are Unix milliseconds (UTC).

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    created_by  TEXT NOT NULL
) STRICT;

-- `seq` is the rowid: tag rows and query plans use the integer, people use `id`.
CREATE TABLE devices (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    hardware    TEXT NOT NULL,
    version     TEXT,
    version_key TEXT,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    first_seen  INTEGER,
    last_seen   INTEGER
) STRICT;
CREATE INDEX devices_hardware ON devices (hardware);
CREATE INDEX devices_version_key ON devices (version_key);
CREATE INDEX devices_status ON devices (status);
CREATE INDEX devices_last_seen ON devices (last_seen);

CREATE TABLE device_tags (
    device_seq INTEGER NOT NULL REFERENCES devices (seq) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (device_seq, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX device_tags_key_value ON device_tags (key, value, device_seq);

CREATE TABLE audit_log (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT NOT NULL
) STRICT;

-- Append-only: the database itself refuses edits, so a bug cannot rewrite
-- history. (Someone with the file can still drop the triggers; the hash chain
-- of the security-event log is what detects that.)
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

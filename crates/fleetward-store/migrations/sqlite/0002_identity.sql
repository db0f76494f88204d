-- Device identity: the fleet CA, issued certificates, enrolment tokens, the
-- manufacturing-line allow-list and pending re-key requests.
-- Times are Unix milliseconds (UTC), as in 0001.

-- One row: the fleet CA's certificate and where its private key lives (the
-- key itself is never in the database; it may be outside the data dir).
CREATE TABLE fleet_ca (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    cert_pem    TEXT NOT NULL,
    key_path    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Every certificate ever issued. `serial` is canonical lower-case hex.
-- `revoked_at` may lie in the future: a certificate replaced by renewal is
-- revoked when its overlap ends.
CREATE TABLE certificates (
    serial     TEXT PRIMARY KEY NOT NULL,
    device_id  TEXT NOT NULL REFERENCES devices (id),
    not_before INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    key_kind   TEXT NOT NULL,
    revoked_at INTEGER,
    reason     TEXT,
    comment    TEXT
) STRICT;
CREATE INDEX certificates_device ON certificates (device_id, issued_at);
CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;

-- Enrolment tokens: like operator tokens, only the SHA-256 of the secret.
CREATE TABLE enrolment_tokens (
    id                TEXT PRIMARY KEY NOT NULL,
    name              TEXT NOT NULL,
    secret_hash       BLOB NOT NULL,
    tags              TEXT NOT NULL,
    uses_total        INTEGER NOT NULL,
    uses_left         INTEGER NOT NULL CHECK (uses_left >= 0),
    require_approval  INTEGER NOT NULL,
    allow_listed_only INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    revoked_at        INTEGER,
    created_by        TEXT NOT NULL
) STRICT;

-- Manufacturing-line allow-list: device ids (optionally with the DER
-- SubjectPublicKeyInfo the device must enrol with).
CREATE TABLE device_allow_list (
    device_id  TEXT PRIMARY KEY NOT NULL,
    public_key BLOB,
    added_at   INTEGER NOT NULL
) STRICT;

-- Devices an operator asked to re-key; cleared by the device's renewal.
CREATE TABLE device_rekey (
    device_id    TEXT PRIMARY KEY NOT NULL,
    requested_at INTEGER NOT NULL
) STRICT;

-- Device identity, the PostgreSQL twin of sqlite/0002.

CREATE TABLE fleet_ca (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    cert_pem    TEXT NOT NULL,
    key_path    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE certificates (
    serial     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL REFERENCES devices (id),
    not_before BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL,
    key_kind   TEXT NOT NULL,
    revoked_at BIGINT,
    reason     TEXT,
    comment    TEXT
);
CREATE INDEX certificates_device ON certificates (device_id, issued_at);
CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE enrolment_tokens (
    id                TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name              TEXT NOT NULL,
    secret_hash       BYTEA NOT NULL,
    tags              TEXT NOT NULL,
    uses_total        BIGINT NOT NULL,
    uses_left         BIGINT NOT NULL CHECK (uses_left >= 0),
    require_approval  BOOLEAN NOT NULL,
    allow_listed_only BOOLEAN NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    revoked_at        BIGINT,
    created_by        TEXT NOT NULL
);

CREATE TABLE device_allow_list (
    device_id  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    public_key BYTEA,
    added_at   BIGINT NOT NULL
);

CREATE TABLE device_rekey (
    device_id    TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    requested_at BIGINT NOT NULL
);

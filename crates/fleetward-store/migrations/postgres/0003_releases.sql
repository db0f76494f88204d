-- Signed releases, the PostgreSQL twin of sqlite/0003.

CREATE TABLE artifacts (
    sha256     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    sha512     TEXT NOT NULL,
    length     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE releases (
    version         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version_key     TEXT COLLATE "C" NOT NULL,
    hardware        TEXT COLLATE "C" NOT NULL,
    state           TEXT COLLATE "C" NOT NULL,
    target_name     TEXT NOT NULL UNIQUE,
    artifact_sha256 TEXT COLLATE "C" NOT NULL REFERENCES artifacts (sha256),
    sbom_sha256     TEXT COLLATE "C" REFERENCES artifacts (sha256),
    notes           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX releases_hardware_state ON releases (hardware, state, version_key);

CREATE TABLE tuf_metadata (
    role       TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    body       BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (role, version)
);

-- Signed releases: artifacts, releases, TUF metadata. Times are Unix milliseconds.

-- Content-addressed: one row per distinct content, whatever its uploads.
CREATE TABLE artifacts (
    sha256     TEXT PRIMARY KEY NOT NULL,
    sha512     TEXT NOT NULL,
    length     INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE releases (
    version         TEXT PRIMARY KEY NOT NULL,
    version_key     TEXT NOT NULL,
    hardware        TEXT NOT NULL,
    state           TEXT NOT NULL,
    target_name     TEXT NOT NULL UNIQUE,
    artifact_sha256 TEXT NOT NULL REFERENCES artifacts (sha256),
    sbom_sha256     TEXT REFERENCES artifacts (sha256),
    notes           TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX releases_hardware_state ON releases (hardware, state, version_key);

-- Every version of every role's metadata ever served, as served (canonical
-- JSON bytes). Versions never repeat for a role; clients may fetch old roots.
CREATE TABLE tuf_metadata (
    role       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    body       BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (role, version)
) STRICT;

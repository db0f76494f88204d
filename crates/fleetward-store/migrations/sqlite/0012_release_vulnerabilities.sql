-- What the vulnerability watch last found in each release's SBOM (see
-- fleetward-server's `vulns` module): the basis it scanned against (the
-- advisory index's import time and the policy's hash), the ids of the
-- vulnerabilities that break policy (a sorted JSON array), and since when
-- the release has had any. Times are Unix milliseconds.
CREATE TABLE release_vulnerabilities (
    version          TEXT PRIMARY KEY NOT NULL REFERENCES releases (version),
    basis            TEXT NOT NULL,
    advisory_ids     TEXT NOT NULL,
    vulnerable_since INTEGER,
    checked_at       INTEGER NOT NULL
) STRICT;

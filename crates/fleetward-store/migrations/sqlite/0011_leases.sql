-- Leases for background work that runs once at a time across server
-- processes (see src/lease.rs). expires_at: Unix milliseconds.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

-- Leases for background work that runs once at a time across replicas
-- (see src/lease.rs). expires_at: Unix milliseconds.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

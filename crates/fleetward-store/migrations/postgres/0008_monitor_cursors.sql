-- How far each consumer of the security-event log has got (sqlite/0008).
CREATE TABLE monitor_cursors (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL CHECK (seq >= 0)
);

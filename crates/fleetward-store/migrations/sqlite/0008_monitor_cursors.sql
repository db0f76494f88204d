-- How far each consumer of the security-event log (an alert sink, the
-- automatic-quarantine responder) has got, so that a restart neither
-- repeats nor skips events. A consumer advances only after it handled an
-- event, so delivery is at least once.
CREATE TABLE monitor_cursors (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL CHECK (seq >= 0)
) STRICT;

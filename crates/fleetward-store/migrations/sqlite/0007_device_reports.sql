-- What devices report on POST /device/v1/reports (issue 7): operating
-- conditions and errors. Security reports go to the security-event log.
-- Times are Unix milliseconds (UTC); the device's clock is kept beside the
-- server's, never instead of it. Each device keeps its newest rows only
-- (the store prunes on insert), so a chatty device cannot fill the disk.

CREATE TABLE device_telemetry (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL REFERENCES devices (id),
    server_time INTEGER NOT NULL,
    device_time INTEGER NOT NULL,
    -- The reported conditions as JSON (fleetward_wire::device::Conditions).
    conditions  TEXT NOT NULL
) STRICT;
CREATE INDEX device_telemetry_device ON device_telemetry (device, id);

CREATE TABLE device_errors (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL REFERENCES devices (id),
    server_time INTEGER NOT NULL,
    device_time INTEGER NOT NULL,
    context     TEXT NOT NULL,
    message     TEXT NOT NULL
) STRICT;
CREATE INDEX device_errors_device ON device_errors (device, id);

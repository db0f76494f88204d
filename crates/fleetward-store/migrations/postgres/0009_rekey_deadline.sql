-- A forced re-key may carry a deadline (sqlite/0009).
ALTER TABLE device_rekey ADD COLUMN deadline BIGINT;
CREATE INDEX device_rekey_deadline ON device_rekey (deadline) WHERE deadline IS NOT NULL;

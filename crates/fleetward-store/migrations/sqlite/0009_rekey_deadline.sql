-- A forced re-key may carry a deadline: a device still holding its old key
-- when the deadline passes has its certificates revoked (the server checks
-- periodically). NULL: no deadline, the old key stays valid until expiry.
ALTER TABLE device_rekey ADD COLUMN deadline INTEGER;
CREATE INDEX device_rekey_deadline ON device_rekey (deadline) WHERE deadline IS NOT NULL;

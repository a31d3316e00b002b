-- GDPR retention: a class nobody has used for two years is purged, after a warning a month before.
-- last_active_at: last time an approved member used the class (NULL: since created_at).
-- purge_warned_at: when the class backend was told of the coming purge; any use clears it.
ALTER TABLE classes ADD COLUMN last_active_at BIGINT;
ALTER TABLE classes ADD COLUMN purge_warned_at BIGINT;
UPDATE classes SET last_active_at = updated_at;

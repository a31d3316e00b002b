-- End-to-end encrypted calls (docs/e2ee.md).
-- classes.visio_allow_unencrypted: calls admit browsers that cannot encrypt (0: every call is
-- end-to-end encrypted); set by the class backend's PUT or by a teacher (visio/settings).
-- visio_sessions.e2ee: every participant admitted to the session had a key (1 until one without
-- joins). attendance.e2ee: this participant joined with a key. Rows from before were not.
ALTER TABLE classes ADD COLUMN visio_allow_unencrypted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE visio_sessions ADD COLUMN e2ee BIGINT NOT NULL DEFAULT 0;
ALTER TABLE attendance ADD COLUMN e2ee BIGINT NOT NULL DEFAULT 0;

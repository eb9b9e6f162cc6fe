-- PostgreSQL mirror of migrations/sqlite/0009_admin.sql: the admin role, checked on every admin
-- request, and the audit log of every admin action (written before the action runs, never changed).
ALTER TABLE users ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at_ms   BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    via     TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    address TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);

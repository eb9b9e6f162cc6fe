-- PostgreSQL mirror of migrations/sqlite/0001_init.sql: same tables and columns, native types
-- (BOOLEAN flags, BIGINT unix seconds, BIGSERIAL log ids).
CREATE TABLE users (
    username      TEXT PRIMARY KEY NOT NULL,
    email         TEXT,
    full_name     TEXT,
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL
);

-- One row per login: the refresh token currently valid for it. Presenting any other refresh token
-- of the family means one was stolen and replayed, and the whole family is revoked.
CREATE TABLE refresh_families (
    id          TEXT PRIMARY KEY NOT NULL,
    username    TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    current_jti TEXT NOT NULL,
    revoked     BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX refresh_families_username ON refresh_families(username);

-- Append-only log of revocations. Every node polls it (`WHERE id > last_seen ORDER BY id`), so a
-- revocation made anywhere (another node, the CLI) reaches every node's live sockets. Every
-- transaction that inserts here first takes a transaction-scoped advisory lock (see
-- src/store/postgres.rs), so ids become visible in increasing order and no follower skips one.
CREATE TABLE revocations (
    id         BIGSERIAL PRIMARY KEY,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    username   TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    username      TEXT PRIMARY KEY NOT NULL,
    email         TEXT,
    full_name     TEXT,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

-- One row per login: the refresh token currently valid for it. Presenting any other refresh token
-- of the family means one was stolen and replayed, and the whole family is revoked.
CREATE TABLE refresh_families (
    id          TEXT PRIMARY KEY NOT NULL,
    username    TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    current_jti TEXT NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX refresh_families_username ON refresh_families(username);

-- Append-only log of revocations. Every node polls it, so a revocation made anywhere (another
-- node, the CLI) reaches every node's live sockets.
CREATE TABLE revocations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    username   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

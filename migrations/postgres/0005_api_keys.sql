-- PostgreSQL mirror of migrations/sqlite/0005_api_keys.sql. Keys of the server API (`/api/*`):
-- only a key's SHA-256 is kept; every node rereads this table every second.
CREATE TABLE api_keys (
    name         TEXT PRIMARY KEY NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    -- Comma-separated: publish, disconnect, read.
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- Unix seconds, to the minute; NULL until first used.
    last_used_at BIGINT
);

-- Keys of the server API (`/api/*`), for application backends. Only a key's SHA-256 is kept: the
-- key itself is shown once, by `wsguard apikey add`. Every node rereads this table every second,
-- so deleting a row (`wsguard apikey revoke`) stops the key on every node.
CREATE TABLE api_keys (
    name         TEXT PRIMARY KEY NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    -- Comma-separated: publish, disconnect, read.
    scopes       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    -- Unix seconds, to the minute; NULL until first used.
    last_used_at INTEGER
);

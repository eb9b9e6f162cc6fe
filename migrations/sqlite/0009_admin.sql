-- The admin console (`/admin`) and its API (`/api/admin/*`).

-- The admin role, set from the command line (`wsguard user add NAME --admin`, `wsguard user admin
-- NAME --on|--off`). Read from here on every admin request, never from a token: a demotion takes
-- effect at the next request.
ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;

-- Every action taken through the console or the admin API, and every role change: who (`actor`:
-- a username, `key:<name>` or `cli`), through what (`via`: console, api, cli), what (`action`),
-- on what (`target`), when (Unix milliseconds) and from which client address. An entry is written
-- before its action runs (no entry, no action); entries are never changed or deleted.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    via     TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    address TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);

-- A publication writes as few pages as it can. Each table is kept in its key's order (WITHOUT
-- ROWID: one B-tree, where a rowid table is a table and an index), and only publications that
-- expire are indexed by expiry: those kept forever (i64::MAX), most of them, never are. The sweep
-- names the index's condition so that it can use it.
CREATE TABLE channels_by_name (
    name       TEXT PRIMARY KEY NOT NULL,
    epoch      TEXT NOT NULL,
    top_offset INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO channels_by_name (name, epoch, top_offset, expires_ms)
    SELECT name, epoch, top_offset, expires_ms FROM channels;
DROP TABLE channels;
ALTER TABLE channels_by_name RENAME TO channels;

CREATE TABLE publications_by_offset (
    channel    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    sender     TEXT,
    data       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
INSERT INTO publications_by_offset (channel, seq, sender, data, created_ms, expires_ms)
    SELECT channel, seq, sender, data, created_ms, expires_ms FROM publications;
DROP TABLE publications;
ALTER TABLE publications_by_offset RENAME TO publications;
CREATE INDEX publications_expiry ON publications(expires_ms) WHERE expires_ms < 9223372036854775807;

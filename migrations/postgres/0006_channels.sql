-- Channels number their publications from 1 without gaps. A channel's row holds its last offset
-- and its epoch: a row deleted (its history expired) and made again starts over with a new epoch,
-- which tells a client that its offsets no longer apply.
CREATE TABLE channels (
    name       TEXT PRIMARY KEY NOT NULL,
    epoch      TEXT NOT NULL,
    top_offset BIGINT NOT NULL,
    -- When the channel's newest publication expires: then the row may go too.
    expires_ms BIGINT NOT NULL
);

-- What a channel keeps of its publications (the namespace's size and TTL). `data` is JSON text,
-- stored as sent. A publication is acknowledged only after this insert commits.
CREATE TABLE publications (
    channel    TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    sender     TEXT,
    data       TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (channel, seq)
);
CREATE INDEX publications_expiry ON publications(expires_ms);

-- The chat's messages become the publications of their rooms, numbered in the order they were sent;
-- the chat keeps its history without a limit.
INSERT INTO channels (name, epoch, top_offset, expires_ms)
    SELECT room, substr(md5(random()::text || room), 1, 16), count(*), 9223372036854775807 FROM messages GROUP BY room;
INSERT INTO publications (channel, seq, sender, data, created_ms, expires_ms)
    SELECT room, row_number() OVER (PARTITION BY room ORDER BY id), sender, json_build_object('text', text)::text,
           created_ms, 9223372036854775807
    FROM messages;
DROP TABLE messages;

-- Chat history. A message is acknowledged to its sender only after this insert commits.
CREATE TABLE messages (
    id         BIGSERIAL PRIMARY KEY,
    room       TEXT NOT NULL,
    sender     TEXT NOT NULL,
    text       TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX messages_room_id ON messages(room, id);

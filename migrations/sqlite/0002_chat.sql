-- Chat history. A message is acknowledged to its sender only after this insert commits.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room       TEXT NOT NULL,
    sender     TEXT NOT NULL,
    text       TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX messages_room_id ON messages(room, id);

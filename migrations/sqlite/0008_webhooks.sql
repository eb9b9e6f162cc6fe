-- Webhooks: what the application is told, kept until it has acknowledged it (see src/webhooks/).

-- Which user has a socket in which channel on which node, for every node: a channel's first row
-- is its occupation, a user's first row in it their joining. Rows are written in the same
-- transaction as the events they cause, so each event is recorded once for the whole cluster.
CREATE TABLE webhook_members (
    channel  TEXT NOT NULL,
    username TEXT NOT NULL,
    node     TEXT NOT NULL,
    -- The channel's namespace tracks presence: its users' joining and leaving are events too.
    presence INTEGER NOT NULL,
    PRIMARY KEY (channel, username, node)
);
CREATE INDEX webhook_members_node ON webhook_members(node);

-- Nodes recording members, and when each was last seen: the rows of a node not seen for a while
-- are removed (and their users leave) by another.
CREATE TABLE webhook_nodes (
    node    TEXT PRIMARY KEY NOT NULL,
    seen_ms INTEGER NOT NULL
);

-- Events not yet acknowledged by the application, in the order they happened. `username` is
-- empty for a channel's events.
CREATE TABLE webhook_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    name     TEXT NOT NULL,
    channel  TEXT NOT NULL,
    username TEXT NOT NULL,
    time_ms  INTEGER NOT NULL
);

-- The node that delivers, until `until_ms` unless it renews: one at a time, so events go out
-- once and in order.
CREATE TABLE webhook_lease (
    name     TEXT PRIMARY KEY NOT NULL,
    node     TEXT NOT NULL,
    until_ms INTEGER NOT NULL
);
INSERT INTO webhook_lease (name, node, until_ms) VALUES ('delivery', '', 0);

-- Revoking a user: every token of theirs, from any issuer, issued before this instant (Unix
-- seconds) is refused while the entry is in force. Set for kind 'user' only; 'disconnect' entries
-- (close the user's sockets, revoke nothing) need no column of their own.
ALTER TABLE revocations ADD COLUMN issued_before BIGINT;

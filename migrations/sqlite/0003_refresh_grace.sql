-- The refresh token a login's current one replaced, and when: presented again within the grace
-- window (two tabs refreshing at once), it gets the same new pair instead of ending the login.
ALTER TABLE refresh_families ADD COLUMN previous_jti TEXT;
ALTER TABLE refresh_families ADD COLUMN rotated_at INTEGER;

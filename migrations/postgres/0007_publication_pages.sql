-- Only publications that expire are indexed by expiry: those kept forever (i64::MAX), most of
-- them, never are, so storing one writes no index page for it. The sweep names the index's
-- condition so that it can use it.
DROP INDEX publications_expiry;
CREATE INDEX publications_expiry ON publications(expires_ms) WHERE expires_ms < 9223372036854775807;

-- The expiry sweeper's work list: lots with points left, by expiry.
CREATE INDEX IF NOT EXISTS lots_expiry ON lots (expires_at) WHERE remaining > 0

-- The expiry notifier's work list: lots with points left and no notice queued yet, by expiry.
CREATE INDEX IF NOT EXISTS lots_expiry_notice ON lots (expires_at) WHERE remaining > 0 AND expiry_notified_at IS NULL

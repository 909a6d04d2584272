CREATE INDEX IF NOT EXISTS holds_status_expiry_idx ON holds (status, expires_at)

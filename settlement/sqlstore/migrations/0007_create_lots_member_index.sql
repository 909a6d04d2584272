CREATE INDEX IF NOT EXISTS lots_member_idx ON lots (member_id, expires_at, created_at, id)

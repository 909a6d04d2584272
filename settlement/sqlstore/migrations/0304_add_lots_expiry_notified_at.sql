-- When the points.expiring notice of the lot was queued; NULL = not yet (once per lot).
ALTER TABLE lots ADD COLUMN IF NOT EXISTS expiry_notified_at TIMESTAMPTZ

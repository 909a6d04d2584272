-- The resolver's work list: pending exchanges by when they are due.
CREATE INDEX IF NOT EXISTS exchanges_due ON exchanges (state, next_attempt_at)

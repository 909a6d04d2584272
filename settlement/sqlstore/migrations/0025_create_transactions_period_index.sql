-- Late items of a period are found by (period, created_at): a transaction stamped with the
-- period but created before the previous cutoff.
CREATE INDEX IF NOT EXISTS transactions_period_created_idx ON transactions (period, created_at)

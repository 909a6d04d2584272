CREATE INDEX IF NOT EXISTS transactions_created_idx ON transactions (created_at)

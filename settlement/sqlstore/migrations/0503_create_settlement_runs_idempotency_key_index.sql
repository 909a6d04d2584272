CREATE UNIQUE INDEX IF NOT EXISTS settlement_runs_idempotency_key ON settlement_runs (idempotency_key)

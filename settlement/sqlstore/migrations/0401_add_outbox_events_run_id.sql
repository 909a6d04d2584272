-- settlement.statement_ready events name the run whose statement is ready (0 for other events).
ALTER TABLE outbox_events ADD COLUMN IF NOT EXISTS run_id INT8 NOT NULL DEFAULT 0

CREATE TABLE IF NOT EXISTS settlement_runs (
    id                INT8 PRIMARY KEY,
    period            INT8 NOT NULL,
    model             TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('published', 'failed')),
    currency          TEXT NOT NULL,
    checks            JSONB NOT NULL,
    operator_revenue  DECIMAL(24, 2) NOT NULL,
    gross_total       DECIMAL(24, 2) NOT NULL,
    netted_total      DECIMAL(24, 2) NOT NULL,
    transactions      INT8 NOT NULL,
    late_transactions INT8 NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL
)

CREATE TABLE IF NOT EXISTS settlement_periods (
    period          INT8 PRIMARY KEY,
    previous_cutoff TIMESTAMPTZ NOT NULL,
    cutoff          TIMESTAMPTZ NOT NULL,
    closed_at       TIMESTAMPTZ NOT NULL
)

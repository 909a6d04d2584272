-- Sealed epochs whose transactions are summed into the rollup tables, written in the same
-- transaction as their sums: an epoch is rolled up completely or not at all, and only once.
CREATE TABLE IF NOT EXISTS rollup_epochs (
    epoch        INT8 PRIMARY KEY,
    transactions INT8 NOT NULL,
    rolled_at    TIMESTAMPTZ NOT NULL
)

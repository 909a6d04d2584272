-- The open roll-up epoch, next to the open period: every ledger transaction stamps it too.
-- Sealing an epoch updates every shard, which waits for the transactions that read it, so a
-- sealed epoch's transactions are final and can be summed once into the rollup tables.
ALTER TABLE settlement_state ADD COLUMN IF NOT EXISTS open_epoch INT8 NOT NULL DEFAULT 1

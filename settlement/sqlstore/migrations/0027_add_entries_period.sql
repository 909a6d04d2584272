-- Settlement aggregates entries by period without joining transactions: every entry carries
-- its transaction's period (written with it, in the same ledger transaction).
ALTER TABLE entries ADD COLUMN IF NOT EXISTS period INT8

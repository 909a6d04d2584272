-- The roll-up epoch a transaction was stamped with (0: written before epochs existed, or by
-- a bulk load; rolled up like any other sealed epoch).
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS epoch INT8 NOT NULL DEFAULT 0

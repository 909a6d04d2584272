-- Lineage carries what settlement needs of its redemption (period, created_at, redeemer,
-- price version), so the aggregation reads lot_consumptions alone.
ALTER TABLE lot_consumptions ADD COLUMN IF NOT EXISTS period INT8

ALTER TABLE lot_consumptions ADD COLUMN IF NOT EXISTS price_version INT8

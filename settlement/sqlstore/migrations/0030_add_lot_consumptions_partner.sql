ALTER TABLE lot_consumptions ADD COLUMN IF NOT EXISTS partner_id TEXT

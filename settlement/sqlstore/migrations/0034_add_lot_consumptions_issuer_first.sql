-- True on a redemption's first lineage row of each issuer (in seq order), so settlement counts
-- the redemptions per issuer with a plain sum instead of count(DISTINCT txn_id).
ALTER TABLE lot_consumptions ADD COLUMN IF NOT EXISTS issuer_first BOOL

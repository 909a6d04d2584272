-- Exposure limit: the most points one award may credit; NULL = no limit.
ALTER TABLE price_terms ADD COLUMN IF NOT EXISTS max_points_per_txn INT8

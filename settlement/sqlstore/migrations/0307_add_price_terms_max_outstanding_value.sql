-- Exposure limit: the most issued-and-unsettled value (points x issue price) a partner may
-- have outstanding; NULL = no limit.
ALTER TABLE price_terms ADD COLUMN IF NOT EXISTS max_outstanding_value DECIMAL(20, 8)

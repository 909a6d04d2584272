-- Exposure limit: the most points the partner may award one member per UTC day; NULL = no limit.
ALTER TABLE price_terms ADD COLUMN IF NOT EXISTS max_points_per_member_day INT8

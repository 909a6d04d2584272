-- Periods closed before the model was stamped keep the model in force now, which is the one
-- their runs used unless the setting was changed directly in the database.
UPDATE settlement_periods SET model = COALESCE((SELECT value FROM coalition_settings WHERE name = 'settlement_model'), 'hub') WHERE model IS NULL

UPDATE lot_consumptions SET period = t.period, partner_id = t.partner_id, price_version = t.price_version, created_at = t.created_at
FROM transactions t WHERE t.id = lot_consumptions.txn_id AND lot_consumptions.period IS NULL

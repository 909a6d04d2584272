UPDATE lot_consumptions SET issuer_first = NOT EXISTS (
    SELECT 1 FROM lot_consumptions p
    WHERE p.txn_id = lot_consumptions.txn_id AND p.issuer = lot_consumptions.issuer AND p.seq < lot_consumptions.seq)
WHERE issuer_first IS NULL

UPDATE entries SET period = t.period FROM transactions t WHERE t.id = entries.txn_id AND entries.period IS NULL
